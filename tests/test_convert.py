"""Error handling and accounting of `data_tools.convert.convert`: every bad row named by file, row and field."""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_tools.convert import convert, fingerprint
from data_tools.errors import ConversionError


def png_bytes(color="red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, format="PNG")
    return buffer.getvalue()


def good(index, **extra):
    return {
        "id": f"g{index}",
        "question": "What is shown?",
        "response": f"A red car number {index}.",
        "corrected": f"A blue car number {index}.",
        **extra,
    }


def line(record) -> bytes:
    return (json.dumps(record, ensure_ascii=False) + "\n").encode()


# (line bytes, expected reason, expected field): one bad row of each kind, each on its own line
BAD_LINES = [
    (b'{"id": "m1", "question": "Q", "response": "A b.",\n', "malformed_json", None),
    (line({"id": "m2", "question": "Q", "response": "A b."}), "missing_field", "corrected"),
    (line({"id": "m3", "question": "  ", "response": "A b.", "corrected": "A c."}), "empty_field", "question"),
    (line(good(90, image="missing.png")), "image_missing", "image"),
    (line(good(91, image="broken.png")), "image_unreadable", "image"),
    (line({"id": "m6", "question": "Q", "response": "Same.", "corrected": "Same."}), "unchanged", "corrected"),
    (line({"id": "m7", "question": "Q", "response": "A  b.", "corrected": "A b."}), "unchanged", "corrected"),
    (line(good(1)), "duplicate_id", "id"),
    (b'{"id": "m9", "question": "Q", "response": "caf\xe9 au lait", "corrected": "tea"}\n', "non_utf8", "response"),
    (line({"id": "m10", "question": "Q", "response": 5, "corrected": "A c."}), "bad_value", "response"),
    (line(["not", "an", "object"]), "bad_value", None),
]


@pytest.fixture
def messy_file(tmp_path):
    """Good rows on lines 1-2, then one bad row per line, a blank line, and a last good row."""
    (tmp_path / "broken.png").write_bytes(b"this is not an image")
    content = line(good(1)) + line(good(2)) + b"".join(raw for raw, _, _ in BAD_LINES) + b"\n" + line(good(3))
    path = tmp_path / "messy.jsonl"
    path.write_bytes(content)
    return str(path)


def expected_rejects():
    return [(3 + index, reason, field) for index, (_, reason, field) in enumerate(BAD_LINES)]


def test_skip_rejects_every_bad_row_with_file_line_and_field(messy_file, tmp_path):
    rejects_path = tmp_path / "rejects.jsonl"
    result = convert([messy_file], on_error="skip", rejects_path=str(rejects_path), progress=False)
    report = result.report
    assert report.read == 3 + len(BAD_LINES)  # the blank line is not a row
    assert report.written == 3
    assert report.read == report.written + report.rejected_total
    assert result.dataset["id"] == ["g1", "g2", "g3"]
    records = [json.loads(text) for text in rejects_path.read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["reason"], r["field"]) for r in records] == expected_rejects()
    assert records == report.rejects
    for record in records:
        assert record["file"] == messy_file
        assert record["message"].startswith(f"{messy_file}, line {record['line']}")
        if record["field"]:
            assert f"field '{record['field']}'" in record["message"]
    by_reason = {r["reason"]: r for r in records}
    assert "first seen at " + messy_file + ", line 1" in by_reason["duplicate_id"]["message"]
    assert by_reason["duplicate_id"]["id"] == "g1"
    assert "missing.png" in by_reason["image_missing"]["message"]
    assert "UTF-8" in by_reason["non_utf8"]["message"]
    expected_counts = {}
    for _, reason, _ in BAD_LINES:
        expected_counts[reason] = expected_counts.get(reason, 0) + 1
    assert dict(report.rejected) == expected_counts
    summary = report.summary()
    assert f"rows read:      {report.read}" in summary and "unchanged: 2" in summary


@pytest.mark.parametrize("index", range(len(BAD_LINES)))
def test_fail_stops_at_the_bad_row_naming_file_line_and_field(tmp_path, index):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    raw, reason, field = BAD_LINES[index]
    path = tmp_path / "one.jsonl"
    path.write_bytes(line(good(1)) + raw + line(good(5)))
    with pytest.raises(ConversionError) as error:
        convert([str(path)], progress=False)
    message = str(error.value)
    assert message.startswith(f"{path}, line 2")
    assert f"[{reason}]" in message
    if field:
        assert f"field '{field}'" in message


def test_parquet_rows_are_counted_from_zero(tmp_path):
    table = pa.table(
        {
            "question": ["Q", "Q", "Q"],
            "response": ["A red b.", "", "A red c."],
            "corrected": ["A blue b.", "A c.", "A blue c."],
            "image": pa.array([png_bytes(), b"garbage", None], pa.binary()),
        }
    )
    pq.write_table(table, tmp_path / "d.parquet")
    result = convert([str(tmp_path / "d.parquet")], on_error="skip", progress=False)
    assert [(r["row"], r["field"], r["reason"]) for r in result.report.rejects] == [
        (1, "response", "empty_field"),
    ]
    # row 1 failed before its image was looked at; make the image the only problem
    table = table.set_column(1, "response", pa.array(["A red b.", "A red d.", "A red c."]))
    pq.write_table(table, tmp_path / "d.parquet")
    with pytest.raises(ConversionError, match=r"d\.parquet, row 1, field 'image': PIL cannot read"):
        convert([str(tmp_path / "d.parquet")], progress=False)


def test_malformed_json_file_is_fatal_with_its_position(tmp_path):
    (tmp_path / "bad.json").write_text('[{"question": "Q", "response": "A", "corrected": "B"},\n {"question": ]')
    with pytest.raises(ConversionError) as error:
        convert([str(tmp_path / "bad.json")], format="corrections", progress=False)
    assert "bad.json: malformed JSON at line 2" in str(error.value)


def test_missing_input_and_bad_options(tmp_path):
    with pytest.raises(ConversionError, match="no such file"):
        convert([str(tmp_path / "nope.jsonl")], progress=False)
    with pytest.raises(ConversionError, match="on_error"):
        convert([str(tmp_path / "nope.jsonl")], on_error="ignore", progress=False)
    with pytest.raises(ConversionError, match="changes"):
        convert([str(tmp_path / "nope.jsonl")], changes="some", progress=False)


def test_changes_option_reaches_the_spans(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(line({"question": "Q", "response": "A man and a dog.", "corrected": "A man."}))
    assert convert([str(path)], progress=False).dataset[0]["rejected_spans"] == [[6, 15]]
    assert convert([str(path)], changes="replace-only", progress=False).dataset[0]["rejected_spans"] == []


def test_two_processes_give_the_same_dataset_and_report(messy_file):
    single = convert([messy_file], on_error="skip", progress=False)
    double = convert([messy_file], on_error="skip", num_proc=2, progress=False)
    assert double.dataset.to_list() == single.dataset.to_list()
    assert double.report.rejects == single.report.rejects
    assert double.report.read == double.report.written + double.report.rejected_total


def test_fingerprint_follows_content_and_options(tmp_path, messy_file):
    base = fingerprint([messy_file])
    assert base == fingerprint([messy_file]) and len(base) == 64
    assert fingerprint([messy_file], changes="replace-only") != base
    assert fingerprint([messy_file], on_error="skip") != base
    with open(messy_file, "ab") as handle:
        handle.write(line(good(4)))
    assert fingerprint([messy_file]) != base
    folder = tmp_path / "ds"
    convert([str(tmp_path / "messy.jsonl")], on_error="skip", progress=False).dataset.save_to_disk(str(folder))
    assert fingerprint([str(folder)]) == fingerprint([str(folder)])


def test_byte_order_mark_and_inputs_sharing_a_file_name(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    row = {"question": "Q", "response": "A red b.", "corrected": "A blue b."}
    (tmp_path / "a" / "train.jsonl").write_bytes(b"\xef\xbb\xbf" + line(row))
    (tmp_path / "b" / "train.jsonl").write_bytes(line(row))
    result = convert([str(tmp_path / "a" / "train.jsonl"), str(tmp_path / "b" / "train.jsonl")], progress=False)
    # generated ids stay unique: the second file's stem is prefixed with its folder
    assert result.dataset["id"] == ["train-1", "b-train-1"]
