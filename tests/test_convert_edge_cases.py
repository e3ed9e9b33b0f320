"""Rows that used to pass (or lose information) and now get a clear verdict: truncated images, ids of rows with
bad bytes, answers written by the user, both `question` and `prompt`, image paths leaving the image root."""

import io
import json
import os

from PIL import Image

from data_tools.convert import convert
from rlhfv.cli import main


def jpeg_bytes(size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize(size).convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def row(index, **extra):
    return {
        "id": f"r{index}",
        "question": "What is shown?",
        "response": f"A red car number {index}.",
        "corrected": f"A blue car number {index}.",
        **extra,
    }


def write_lines(path, records):
    path.write_bytes(b"".join(r if isinstance(r, bytes) else (json.dumps(r) + "\n").encode() for r in records))
    return str(path)


def rejects_by_id(result):
    return {record["id"]: (record["reason"], record["field"]) for record in result.report.rejects}


def test_truncated_jpeg_is_rejected_at_conversion(tmp_path):
    data = jpeg_bytes()
    (tmp_path / "whole.jpg").write_bytes(data)
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])  # structure intact, scan data cut short
    with Image.open(tmp_path / "cut.jpg") as image:
        image.verify()  # the check the converter used to rely on accepts it
    source = write_lines(
        tmp_path / "rows.jsonl",
        [row(0, image="whole.jpg"), row(1, image="cut.jpg"), row(2, images=[{"bytes": None, "path": "cut.jpg"}])],
    )
    result = convert([source], on_error="skip", progress=False)
    assert result.dataset["id"] == ["r0"]
    assert rejects_by_id(result) == {"r1": ("image_unreadable", "image"), "r2": ("image_unreadable", "images[0]")}
    assert "truncated" in result.report.rejects[0]["message"]


def test_rejects_entry_of_a_row_with_bad_bytes_keeps_its_id(tmp_path):
    source = write_lines(
        tmp_path / "rows.jsonl",
        [
            b'{"id": "x7", "question": "Q", "response": "caf\xe9 au lait", "corrected": "tea"}\n',
            b'{"id": "bad\xff", "question": "Q", "response": "A b.", "corrected": "A c."}\n',  # the id is the bad field
            row(1),
        ],
    )
    result = convert([source], on_error="skip", progress=False)
    assert [(r["line"], r["id"], r["reason"], r["field"]) for r in result.report.rejects] == [
        (1, "x7", "non_utf8", "response"),
        (2, None, "non_utf8", "id"),
    ]


def test_rejects_entry_keeps_the_metadata_id_of_rlaif_v_rows(tmp_path):
    bad = {"ds_name": "RLAIF-V", "idx": 17, "question": "Q", "chosen": "A b.", "rejected": 3}
    source = write_lines(tmp_path / "rows.jsonl", [bad])
    result = convert([source], format="rlaif-v", on_error="skip", progress=False)
    assert rejects_by_id(result) == {"RLAIF-V-17": ("bad_value", "rejected")}


def test_answer_written_by_the_user_is_rejected_with_the_reason(tmp_path):
    def pair(index, chosen_role):
        return {
            "id": f"p{index}",
            "prompt": [{"role": "user", "content": "Colour?"}],
            "chosen": [{"role": chosen_role, "content": "Blue."}],
            "rejected": [{"role": "assistant", "content": "Red."}],
        }

    llava = {
        "id": "l1",
        "conversations": [{"from": "human", "value": "Colour?"}],
        "output_1": {"from": "human", "value": "Blue."},
        "output_2": {"from": "gpt", "value": "Red."},
        "preference": 1,
    }
    pairs = write_lines(tmp_path / "pairs.jsonl", [pair(0, "assistant"), pair(1, "user")])
    outputs = write_lines(tmp_path / "llava.jsonl", [llava])
    result = convert([pairs], on_error="skip", progress=False)
    assert result.dataset["id"] == ["p0"]
    assert rejects_by_id(result) == {"p1": ("bad_value", "chosen[0].role")}
    assert "is 'user'; an answer must be the assistant's message" in result.report.rejects[0]["message"]
    result = convert([outputs], on_error="skip", progress=False)
    assert rejects_by_id(result) == {"l1": ("bad_value", "output_1.from")}


def test_question_wins_over_prompt_and_the_log_says_so(tmp_path):
    rows = [
        {"id": "a", "question": "The question?", "prompt": "The prompt?", "chosen": "X y.", "rejected": "X z."},
        {"id": "b", "prompt": "Only a prompt?", "chosen": "X y.", "rejected": "X z."},
    ]
    lines = []
    result = convert([write_lines(tmp_path / "rows.jsonl", rows)], progress=False, log=lines.append)
    assert [p[0]["content"] for p in result.dataset["prompt"]] == ["The question?", "Only a prompt?"]
    assert any("'question' is the prompt, 'prompt' is ignored" in line for line in lines)


def test_strict_paths_refuses_images_outside_the_root(tmp_path, capsys):
    root = tmp_path / "images"
    root.mkdir()
    data = jpeg_bytes()
    (root / "in.jpg").write_bytes(data)
    (tmp_path / "outside.jpg").write_bytes(data)
    os.symlink(tmp_path / "outside.jpg", root / "link.jpg")
    rows = [
        row(0, image="in.jpg"),
        row(1, image="../outside.jpg"),
        row(2, image=str(tmp_path / "outside.jpg")),
        row(3, image="link.jpg"),
        row(4, image=str(root / "in.jpg")),  # absolute, but inside the root
    ]
    source = write_lines(tmp_path / "rows.jsonl", rows)
    # default: paths are followed wherever they lead
    assert convert([source], image_root=str(root), progress=False).report.written == 5
    strict = convert([source], image_root=str(root), on_error="skip", strict_paths=True, progress=False)
    assert strict.dataset["id"] == ["r0", "r4"]
    assert rejects_by_id(strict) == {f"r{i}": ("image_outside_root", "image") for i in (1, 2, 3)}
    # the command line option
    args = ["convert", source, "-o", str(tmp_path / "out"), "--image-root", str(root), "--strict-paths"]
    assert main([*args, "--no-progress"]) == 1
    assert "leads outside the image root" in capsys.readouterr().err
