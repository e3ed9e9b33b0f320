"""Seeded fuzzing of the converter over all five input layouts.

Each run writes rows built from a valid row of the layout, most of them damaged in one or two ways (a field
removed, replaced by a value of another type, emptied, given bad bytes; a line cut short or not an object; a
duplicate id; identical answers; a missing or broken image), then converts them. What must hold on every run:

- no traceback: only `ConversionError` (a whole input it cannot read) escapes, with a message naming the file;
- `rows read == pairs written + rows rejected`, and rows read == the non-blank lines written;
- every rejected row has a known reason and a message naming its file and line;
- every written row satisfies the dataset contract (`data_tools.contract.check_row`);
- `on_error="fail"` either converts everything or stops with a `ConversionError` naming the first bad row.
"""

import io
import json
import os
import random

import pytest
from PIL import Image

from data_tools.contract import check_row
from data_tools.convert import convert
from data_tools.errors import REASONS, ConversionError
from data_tools.formats import FORMAT_NAMES


WORDS = ["the", "cat", "sits", "on", "a", "red", "mat", "café", "naïve", "猫", "が", "👍🏽", "e\u0301", "x_1", "42"]
PUNCTUATION = [",", ".", "!", "?", "—", "'"]
# More seeds for a longer hunt: FUZZ_SEEDS=200 python -m pytest tests/test_convert_fuzz.py
SEEDS = int(os.environ.get("FUZZ_SEEDS", 4))
ODD_VALUES = [None, "", "   ", 0, 3.5, True, [], {}, ["x"], {"value": 1}, "\ud800 lone surrogate", "<image>", -1]


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "green").save(buffer, format="PNG")
    return buffer.getvalue()


def sentence(rng: random.Random) -> str:
    units = [rng.choice(WORDS if rng.random() < 0.8 else PUNCTUATION) for _ in range(rng.randint(1, 12))]
    return rng.choice([" ", "  ", "\n"]).join(units)


def answers(rng: random.Random) -> tuple[str, str]:
    rejected = sentence(rng)
    kind = rng.random()
    if kind < 0.1:
        return rejected, rejected  # nothing corrected
    if kind < 0.15:
        return rejected, rejected.replace(" ", "  ")  # whitespace only
    return rejected, sentence(rng)


def valid_row(layout: str, index: int, rng: random.Random) -> dict:
    rejected, chosen = answers(rng)
    image = rng.choice(["img.png", "missing.png", "broken.png", None])
    question = sentence(rng) + "?"
    if layout == "corrections":
        row = {"id": f"c{index}", "question": question, "response": rejected, "corrected": chosen}
        if image:
            row["image"] = image
    elif layout == "pairs":
        row = {
            "id": f"p{index}",
            "prompt": rng.choice([question, [{"role": "user", "content": question}]]),
            "chosen": rng.choice([chosen, [{"role": "assistant", "content": chosen}]]),
            "rejected": rng.choice([rejected, [{"role": "assistant", "content": rejected}]]),
        }
        if image:
            row["images"] = [image]
    elif layout == "rlhf-v":
        text = json.dumps({"question": question, "chosen": chosen, "rejected": rejected})
        row = {"ds_name": "RLHF-V", "idx": index, "text": text, "image": {"bytes": None, "path": image}}
    elif layout == "rlaif-v":
        row = {"ds_name": "RLAIF-V", "idx": f"i{index}", "question": question, "chosen": chosen, "rejected": rejected}
        if image:
            row["image_path"] = image
    else:  # llava-rlhf
        row = {
            "id": f"l{index}",
            "conversations": [{"from": "human", "value": "<image>\n" + question}],
            "output_1": {"from": "llava", "value": chosen},
            "output_2": {"from": "llava", "value": rejected},
            "preference": rng.choice([1, 2, "1"]),
        }
        if image:
            row["image"] = image
    return row


def damage(row: dict, rng: random.Random, previous_ids: list) -> dict:
    row = dict(row)
    for _ in range(rng.randint(1, 2)):
        key = rng.choice(sorted(row))
        kind = rng.random()
        if kind < 0.3:
            del row[key]
        elif kind < 0.8:
            row[key] = rng.choice(ODD_VALUES)
        elif kind < 0.9 and previous_ids:
            row[rng.choice(["id", "idx"]) if "idx" in row else "id"] = rng.choice(previous_ids)
        elif isinstance(row.get(key), dict) and row[key]:
            inner = dict(row[key])
            inner[rng.choice(sorted(inner))] = rng.choice(ODD_VALUES)
            row[key] = inner
    return row


def encode(row, rng: random.Random) -> bytes:
    line = json.dumps(row, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    kind = rng.random()
    if kind < 0.04:
        return line[: rng.randint(0, len(line) - 1)] + b"\n"  # cut short
    if kind < 0.08:
        position = rng.randint(1, len(line) - 2)
        return line[:position] + b"\xff\xfe" + line[position:] + b"\n"  # bytes that are not UTF-8
    if kind < 0.1:
        return rng.choice([b"[]", b"null", b"42", b'"text"']) + b"\n"
    return line + b"\n"


def fuzz_file(tmp_path, layout: str, seed: int, rows: int = 40) -> tuple[str, int]:
    rng = random.Random(seed)
    (tmp_path / "img.png").write_bytes(png_bytes())
    (tmp_path / "broken.png").write_bytes(png_bytes()[:30])
    lines, ids = [], []
    for index in range(rows):
        row = valid_row(layout, index, rng)
        if rng.random() < 0.5:
            row = damage(row, rng, ids)
        ids.append(row.get("id", row.get("idx")))
        lines.append(encode(row, rng))
        if rng.random() < 0.05:
            lines.append(b"\n")  # blank lines are not rows
    path = tmp_path / f"{layout}-{seed}.jsonl"
    path.write_bytes(b"".join(lines))
    return str(path), sum(1 for line in lines if line.strip())


@pytest.mark.parametrize("layout", FORMAT_NAMES)
@pytest.mark.parametrize("seed", range(SEEDS))
def test_fuzzed_rows_are_converted_or_rejected_never_crash(tmp_path, layout, seed):
    path, lines = fuzz_file(tmp_path, layout, seed)
    result = convert([path], format=layout, on_error="skip", progress=False)
    report = result.report
    assert report.read == lines
    assert report.read == report.written + report.rejected_total == len(result.dataset) + len(report.rejects)
    for record in report.rejects:
        assert record["reason"] in REASONS
        assert record["message"].startswith(f"{path}, line {record['line']}")
    for row in result.dataset:
        check_row(row, f"row id={row['id']!r}")
    # fail mode: all or a clear stop at the first rejected line
    try:
        strict = convert([path], format=layout, on_error="fail", progress=False)
        assert not report.rejects and strict.report.written == report.written
    except ConversionError as error:
        assert report.rejects and str(error) == report.rejects[0]["message"]


@pytest.mark.parametrize("seed", range(SEEDS + 1))
def test_fuzzed_inputs_under_auto_detection_and_other_containers(tmp_path, seed):
    """Auto-detection on damaged files (the first row may be damaged too) and the same rows as JSON and Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    layout = FORMAT_NAMES[seed % len(FORMAT_NAMES)]
    path, lines = fuzz_file(tmp_path, layout, 100 + seed)
    try:
        result = convert([path], on_error="skip", progress=False)
    except ConversionError as error:
        assert path in str(error)  # a whole-input error names the input
    else:
        assert result.report.read == lines == result.report.written + result.report.rejected_total
    records = []
    for line in open(path, "rb").read().splitlines():
        try:
            value = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        records.append(value)
    json_path = tmp_path / "rows.json"
    json_path.write_text(json.dumps(records))
    result = convert([str(json_path)], format=layout, on_error="skip", progress=False)
    assert result.report.read == len(records) == result.report.written + result.report.rejected_total

    def storable(value):  # Parquet holds only valid UTF-8
        return isinstance(value, str) and value.encode("utf-8", "surrogatepass") == value.encode("utf-8", "ignore")

    objects = [r for r in records if isinstance(r, dict) and all(map(storable, r.values()))]
    if objects:
        parquet_path = tmp_path / "rows.parquet"
        pq.write_table(pa.Table.from_pylist(objects), parquet_path)
        result = convert([str(parquet_path)], format=layout, on_error="skip", progress=False)
        assert result.report.read == len(objects) == result.report.written + result.report.rejected_total
