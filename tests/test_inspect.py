"""`rlhfv inspect`: marked spans in the terminal (colour or not), statistics, and the HTML page."""

import html
import io
import json
import re

import pytest
from datasets import load_from_disk
from PIL import Image

from data_tools.inspect import GREEN, RED, RESET
from rlhfv.cli import main


def png_bytes(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


QUESTION = "Is <b>this</b> a cat & a dog?"
ROWS = [
    # rejected: 6 units (A, red, car, is, parked, .), 1 changed; chosen: 6 units, 1 changed
    {
        "id": "p0",
        "image": "red.png",
        "question": QUESTION,
        "response": "A red car is parked.",
        "corrected": "A blue car is parked.",
    },
    # rejected: 6 units (Two, cats, and, a, <, .), 3 changed; chosen: 3 units, none changed
    {"id": "p1", "question": "Q?", "response": "Two cats and a <.", "corrected": "Two cats."},
]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inspect")
    (folder / "red.png").write_bytes(png_bytes("red"))
    path = folder / "c.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS), encoding="utf-8")
    output = folder / "dense"
    assert main(["convert", str(path), "-o", str(output), "--to", "parquet", "--to", "jsonl", "--no-progress"]) == 0
    return output


@pytest.mark.parametrize("suffix", ["", ".parquet", ".jsonl"])
def test_terminal_colours_the_spanned_words(converted, capsys, monkeypatch, suffix):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert main(["inspect", f"{converted}{suffix}", "--rows", "2"]) == 0
    out = capsys.readouterr().out
    assert f"A {RED}red{RESET} car is parked." in out
    assert f"A {GREEN}blue{RESET} car is parked." in out
    assert f"Two cats {RED}and a <{RESET}." in out
    assert "images:   8x8 PNG" in out
    assert "pairs: 2" in out and "pairs with images: 1" in out
    assert "changed words, rejected answers: 4 / 12 (33.3%)" in out
    assert "changed words, chosen answers: 1 / 9 (11.1%)" in out


def test_no_colour_marks_with_brackets(converted, capsys, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert main(["inspect", str(converted), "--index", "1", "0", "--no-color", "--no-stats"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out
    assert "A [-red-] car is parked." in out and "A {+blue+} car is parked." in out
    assert out.index("row 1") < out.index("row 0")  # the order asked for
    assert "pairs:" not in out


def test_no_colour_when_stdout_is_not_a_terminal(converted, capsys, monkeypatch):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    assert main(["inspect", str(converted)]) == 0  # capsys' stdout is not a TTY
    assert "\x1b[" not in capsys.readouterr().out


def test_html_page(converted, tmp_path, capsys):
    page = tmp_path / "pairs.html"
    assert main(["inspect", str(converted), "--html", str(page), "--rows", "2"]) == 0
    text = page.read_text(encoding="utf-8")
    assert html.escape(QUESTION) in text and "<b>this</b>" not in text
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    import base64

    assert [base64.b64decode(data) for data in images] == [png_bytes("red")]
    assert "A <del>red</del> car is parked." in text
    assert "A <ins>blue</ins> car is parked." in text
    assert "Two cats <del>and a &lt;</del>." in text
    assert 'src="http' not in text  # self-contained
    # the page and the terminal say how many of the pairs they show
    assert len(load_from_disk(str(converted))) == 2
    assert "Showing all 2 pairs." in text and "Showing all 2 pairs." in capsys.readouterr().out
    assert main(["inspect", str(converted), "--html", str(page), "--rows", "1", "--no-stats"]) == 0
    note = "Showing 1 of 2 pairs (rows 0); --rows N or --index I ... shows others."
    assert note in page.read_text(encoding="utf-8") and note in capsys.readouterr().out


def test_bad_arguments(converted, tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nothing")]) == 1
    assert main(["inspect", str(converted), "--index", "5"]) == 1
    assert "out of range" in capsys.readouterr().err
    (tmp_path / "other.jsonl").write_text(json.dumps({"text": "hi"}) + "\n")
    assert main(["inspect", str(tmp_path / "other.jsonl")]) == 1
    assert "not a converted dataset" in capsys.readouterr().err
