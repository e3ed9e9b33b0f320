"""What the command-line tests share: run `rlhfv` in-process, check a one-line error, write a JSONL file."""

import json

from rlhfv.cli import main as rlhfv_main


def run(argv) -> int:
    return rlhfv_main([str(a) for a in argv])


def one_line_error(capsys, *needles) -> str:
    """The failure was one line on stderr (no traceback) holding every needle; returns it."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path
