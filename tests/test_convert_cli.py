"""`rlhfv convert` end to end through `rlhfv.cli.main`: exit codes, files on disk, and TRL accepting the output."""

import copy
import io
import json

import pytest
from PIL import Image

from rlhfv.cli import main


def png_bytes(color) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


ROWS = [
    {
        "id": "a",
        "image": "red.png",
        "question": "What colour is the car?",
        "response": "The car is red.",
        "corrected": "The car is blue.",
    },
    {
        "id": "b",
        "question": "Where is Paris?",
        "response": "Paris is in Spain, near Rome.",
        "corrected": "Paris is in France.",
    },
    {
        "id": "c",
        "image": "red.png",
        "question": "Count the cats.",
        "response": "There are three cats.",
        "corrected": "There are two cats.",
    },
    {"id": "d", "question": "Describe.", "response": "A dog sits on a mat.", "corrected": "A dog sits on a blue mat."},
]


@pytest.fixture
def corrections(tmp_path):
    (tmp_path / "red.png").write_bytes(png_bytes("red"))
    path = tmp_path / "corrections.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS), encoding="utf-8")
    return path


def expected_spans(rejected, chosen):
    """Spans from a plain word diff written here (an independent check for these simple space-separated rows)."""
    import difflib
    import re

    def words(text):
        return [(m.group(), m.start(), m.end()) for m in re.finditer(r"\w+|[^\w\s]", text)]

    r, c = words(rejected), words(chosen)
    chosen_spans, rejected_spans = [], []
    matcher = difflib.SequenceMatcher(None, [w for w, *_ in r], [w for w, *_ in c], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            if i2 > i1:
                rejected_spans.append([r[i1][1], r[i2 - 1][2]])
            if j2 > j1:
                chosen_spans.append([c[j1][1], c[j2 - 1][2]])
    return chosen_spans, rejected_spans


def test_convert_writes_the_contract_dataset(corrections, tmp_path, capsys):
    from datasets import load_from_disk
    from trl.data_utils import is_conversational

    output = tmp_path / "dense"
    assert main(["convert", str(corrections), "--output", str(output), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "format: " in out and "corrections" in out and "'response' and 'corrected'" in out
    assert "rows read:      4" in out and "pairs written:  4 (2 with images)" in out and "rows rejected:  0" in out
    dataset = load_from_disk(str(output))
    assert set(dataset.column_names) == {
        "id",
        "source",
        "prompt",
        "chosen",
        "rejected",
        "images",
        "chosen_spans",
        "rejected_spans",
    }
    assert dataset["id"] == ["a", "b", "c", "d"]
    for row, raw in zip(dataset, ROWS, strict=True):
        assert is_conversational(row)
        assert row["prompt"] == [{"role": "user", "content": raw["question"]}]
        assert row["chosen"] == [{"role": "assistant", "content": raw["corrected"]}]
        assert row["rejected"] == [{"role": "assistant", "content": raw["response"]}]
        assert (row["chosen_spans"], row["rejected_spans"]) == expected_spans(raw["response"], raw["corrected"])
        assert len(row["images"]) == (1 if "image" in raw else 0)
    assert dataset[0]["images"][0].getpixel((0, 0)) == (255, 0, 0)
    # the saved dataset carries the image bytes: it survives the source image being deleted
    (corrections.parent / "red.png").unlink()
    reloaded = load_from_disk(str(output))
    assert reloaded.with_format("arrow")[0:1].column("images").to_pylist()[0][0]["bytes"] == png_bytes("red")


def test_exit_code_1_at_the_first_bad_row(corrections, tmp_path, capsys):
    with open(corrections, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "e", "question": "Q", "response": "Same.", "corrected": "Same."}) + "\n")
    assert main(["convert", str(corrections), "-o", str(tmp_path / "out"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"rlhfv convert: error: {corrections}, line 5, field 'corrected'" in err
    assert not (tmp_path / "out").exists()


def test_exit_code_2_for_usage_errors(corrections, tmp_path):
    with pytest.raises(SystemExit) as error:
        main(["convert", str(corrections), "-o", str(tmp_path / "o"), "--format", "sharegpt"])
    assert error.value.code == 2
    with pytest.raises(SystemExit) as error:
        main(["convert", str(corrections)])  # no --output
    assert error.value.code == 2


def test_skip_writes_rejects_next_to_the_output(corrections, tmp_path, capsys):
    with open(corrections, "a", encoding="utf-8") as handle:
        handle.write('{"id": "broken"\n')
        handle.write(json.dumps({"id": "a", "question": "Q", "response": "X y.", "corrected": "X z."}) + "\n")
    output = tmp_path / "out"
    assert main(["convert", str(corrections), "-o", str(output), "--on-error", "skip", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "rows read:      6" in out and "pairs written:  4" in out and "rows rejected:  2" in out
    rejects = [json.loads(text) for text in (tmp_path / "out.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"], r["field"]) for r in rejects] == [
        (5, "malformed_json", None),
        (6, "duplicate_id", "id"),
    ]


def test_all_rows_rejected_is_a_failure(tmp_path, capsys):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"question": "Q", "response": "Same.", "corrected": "Same."}) + "\n")
    assert main(["convert", str(path), "-o", str(tmp_path / "out"), "--on-error", "skip", "--no-progress"]) == 1
    assert "no pair written" in capsys.readouterr().err


def test_existing_output_needs_overwrite(corrections, tmp_path, capsys):
    output = str(tmp_path / "out")
    assert main(["convert", str(corrections), "-o", output, "--no-progress"]) == 0
    assert main(["convert", str(corrections), "-o", output, "--no-progress"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (
        main(["convert", str(corrections), "-o", output, "--no-progress", "--overwrite", "--changes", "replace-only"])
        == 0
    )
    from datasets import load_from_disk

    replaced_only = load_from_disk(output)
    assert replaced_only[3]["chosen_spans"] == []  # "blue" was a pure insertion
    assert replaced_only[1]["rejected_spans"] == [[12, 28]]  # "Spain, near Rome" -> "France" is a replacement
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("x")
    assert main(["convert", str(corrections), "-o", str(tmp_path / "notes"), "--overwrite", "--no-progress"]) == 1
    assert (tmp_path / "notes" / "keep.txt").exists()


def test_exports_to_parquet_and_jsonl(corrections, tmp_path):
    from datasets import load_dataset, load_from_disk

    output = tmp_path / "dense"
    assert (
        main(["convert", str(corrections), "-o", str(output), "--to", "parquet", "--to", "jsonl", "--no-progress"])
        == 0
    )
    saved = load_from_disk(str(output))
    parquet = load_dataset("parquet", data_files=str(tmp_path / "dense.parquet"), split="train")
    assert parquet.features == saved.features
    raw = parquet.with_format("arrow")[0:1].column("images").to_pylist()[0][0]
    assert raw["bytes"] == png_bytes("red")  # embedded, not a path
    records = [json.loads(text) for text in (tmp_path / "dense.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == saved["id"]
    assert records[0]["images"] == ["dense_images/0000000-0.png"]
    assert (tmp_path / records[0]["images"][0]).read_bytes() == png_bytes("red")
    assert records[1]["images"] == []
    assert [r["rejected_spans"] for r in records] == saved["rejected_spans"]
    # the JSONL export reads back as `pairs` and gives the same pairs and spans
    again = tmp_path / "again"
    assert main(["convert", str(tmp_path / "dense.jsonl"), "-o", str(again), "--no-progress"]) == 0
    reread = load_from_disk(str(again))
    for column in ("id", "prompt", "chosen", "rejected", "chosen_spans", "rejected_spans"):
        assert reread[column] == saved[column]


def _dpo_config(tmp_path):
    from trl import DPOConfig

    return DPOConfig(
        output_dir=str(tmp_path / "dpo"),
        max_steps=1,
        per_device_train_batch_size=4,
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        max_length=128,
    )


def test_trl_dpo_trainer_trains_on_the_saved_text_dataset(tmp_path):
    from datasets import load_from_disk
    from trl import DPOTrainer

    from rlhfv.tiny_models import build_text_model, build_tokenizer

    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({k: v for k, v in row.items() if k != "image"}) + "\n" for row in ROWS))
    assert main(["convert", str(path), "-o", str(tmp_path / "text"), "--no-progress"]) == 0
    dataset = load_from_disk(str(tmp_path / "text"))
    assert "images" not in dataset.column_names
    tokenizer = build_tokenizer()
    model = build_text_model(tokenizer)
    trainer = DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        args=_dpo_config(tmp_path),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    result = trainer.train()
    assert result.global_step == 1 and result.training_loss == pytest.approx(0.6931, abs=1e-3)


def test_trl_dpo_trainer_trains_a_vlm_on_the_saved_image_dataset(corrections, tmp_path):
    from datasets import load_from_disk
    from trl import DPOTrainer

    from rlhfv.tiny_models import build_llava

    assert main(["convert", str(corrections), "-o", str(tmp_path / "vl"), "--no-progress"]) == 0
    dataset = load_from_disk(str(tmp_path / "vl"))  # two rows with an image, two text-only
    model, processor = build_llava()
    trainer = DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        args=_dpo_config(tmp_path),
        train_dataset=dataset,
        processing_class=processor,
    )
    assert trainer.train().global_step == 1
