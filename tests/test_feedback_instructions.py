"""`rlhfv feedback --prompts` in every layout the converter reads: one tiny hand-written input per layout, the exact
instructions taken from it, embedded images written once by content hash, rows with the same (image, question)
merged and reported, and bad rows rejected with file, row and field."""

import base64
import hashlib
import io
import json

import pytest

from data_tools.errors import CommandError
from rlhfv.feedback.instructions import detect_instruction_format, read_instructions


def png(color) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, format="PNG")
    return buffer.getvalue()


RED, BLUE = png((255, 0, 0)), png((0, 0, 255))


def hashed(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16] + ".png"


def as_tuples(result):
    return [(i.id, i.question, i.image, i.where) for i in result.instructions]


def write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rlaif_v_parquet_with_image_structs_merges_the_pairs_of_one_instruction(tmp_path):
    meta = {"ds_name": "RLAIF-V-Dataset", "origin_dataset": "COCO", "origin_split": "{}", "image_path": "x.jpg"}
    rows = [
        {**meta, "idx": "a", "image": {"bytes": RED, "path": None}, "question": "Describe the image.",
         "chosen": "A red square.", "rejected": "A red square and a dog."},
        {**meta, "idx": "b", "image": {"bytes": RED, "path": None}, "question": "Describe the image.",
         "chosen": "Red.", "rejected": "Blue."},  # same instruction as row 0: merged
        {**meta, "idx": "c", "image": {"bytes": RED, "path": None}, "question": "What color is it?",
         "chosen": "Red.", "rejected": "Green."},  # same image, other question: its own instruction
        {**meta, "idx": "d", "image": {"bytes": BLUE, "path": None}, "question": "<image>\nDescribe the image.",
         "chosen": "Blue.", "rejected": "Red."},  # other image; the <image> placeholder is removed
        {**meta, "idx": "e", "image": {"bytes": RED, "path": None}, "question": "Describe the image.",
         "chosen": "Red.", "rejected": "Pink."},  # merged into row 0 as well
    ]  # fmt: skip
    path = write_parquet(tmp_path / "rlaif.parquet", rows)
    images = tmp_path / "out" / "images"
    result = read_instructions(path, images)
    assert result.formats[str(path)][0] == "rlaif-v"
    assert as_tuples(result) == [
        ("RLAIF-V-Dataset-a", "Describe the image.", f"images/{hashed(RED)}", f"{path}:row 0"),
        ("RLAIF-V-Dataset-c", "What color is it?", f"images/{hashed(RED)}", f"{path}:row 2"),
        ("RLAIF-V-Dataset-d", "Describe the image.", f"images/{hashed(BLUE)}", f"{path}:row 3"),
    ]
    # the merge report: which rows went into which instruction
    assert result.instructions[0].merged == [
        {"id": "RLAIF-V-Dataset-b", "where": f"{path}:row 1"},
        {"id": "RLAIF-V-Dataset-e", "where": f"{path}:row 4"},
    ]
    assert [i.merged for i in result.instructions[1:]] == [[], []]
    assert result.rows == 5 and result.merged_rows == 2 and result.rejects == []
    # each distinct picture written once, named by its content hash, with its exact bytes
    assert sorted(p.name for p in images.iterdir()) == sorted([hashed(RED), hashed(BLUE)])
    assert (images / hashed(RED)).read_bytes() == RED
    assert result.instructions[0].image_path == str((images / hashed(RED)).resolve())


def test_rlhf_v_json_text_column_and_a_row_without_image(tmp_path):
    text = json.dumps({"question": "What is the man holding?", "chosen": "A kite.", "rejected": "An umbrella."})
    rows = [
        {"ds_name": "RLHF-V-Dataset", "idx": 17, "image": {"bytes": base64.b64encode(BLUE).decode(), "path": None},
         "text": text},  # a struct exported to JSON: its bytes are base64 text
        {"ds_name": "RLHF-V-Dataset", "idx": 18, "text": text},  # no image, no image_path: RLHF-V needs one
    ]  # fmt: skip
    path = tmp_path / "rlhf.json"
    path.write_text(json.dumps(rows))
    result = read_instructions(path, tmp_path / "images")
    assert result.formats[str(path)][0] == "rlhf-v"
    assert as_tuples(result) == [
        ("RLHF-V-Dataset-17", "What is the man holding?", f"images/{hashed(BLUE)}", f"{path}:row 0")
    ]
    assert result.rejects == [
        {"reason": "missing_field", "where": f"{path}:row 1", "field": "image",
         "detail": "is missing: every rlhf-v row is about an image"}
    ]  # fmt: skip
    # under on_error=fail the same row stops the read, naming file, row and field
    with pytest.raises(CommandError, match=rf"{path}:row 1, field 'image'.*missing_field"):
        read_instructions(path, tmp_path / "images", fail=fail_at_once)


def fail_at_once(reject):
    raise CommandError(f"{reject['where']}, field '{reject['field']}': {reject['detail']} [{reject['reason']}]")


def test_llava_rlhf_multi_turn_takes_the_last_user_turn_and_keeps_image_paths(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "cat.png").write_bytes(RED)
    turn = {"from": "gpt", "value": "A cat."}
    rows = [
        {"id": "GQA_1", "image": "imgs/cat.png", "preference": 1, "output_1": turn, "output_2": turn,
         "conversations": [{"from": "human", "value": "<image>\nWhat is this?"}, turn,
                           {"from": "human", "value": "What color is it?"}]},
        {"id": "GQA_2", "image": "imgs/cat.png", "preference": 2, "output_1": turn, "output_2": turn,
         "conversations": [{"from": "human", "value": "<image>\nWhat is this?"}]},
        {"id": "GQA_4", "image": "imgs/cat.png", "preference": 2, "output_1": turn, "output_2": turn,
         # ends with the model's turn, as every row of LLaVA-RLHF's files does (its reward code replaces that turn)
         "conversations": [{"from": "human", "value": "What animal is this?"}, turn]},
        {"id": "GQA_3", "image": "imgs/cat.png", "preference": 2, "output_1": turn, "output_2": turn,
         "conversations": [{"from": "human", "value": "<image>\nWhat is this?"},
                           {"from": "human", "value": "   "}]},  # an empty question
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "llava.jsonl", rows)
    result = read_instructions(path, tmp_path / "images")
    assert result.formats[str(path)][0] == "llava-rlhf"
    assert as_tuples(result) == [
        ("GQA_1", "What color is it?", "imgs/cat.png", f"{path}:line 1"),
        ("GQA_2", "What is this?", "imgs/cat.png", f"{path}:line 2"),
        ("GQA_4", "What animal is this?", "imgs/cat.png", f"{path}:line 3"),
    ]
    assert result.instructions[0].image_path == str(tmp_path / "imgs" / "cat.png")
    assert [(r["reason"], r["where"], r["field"]) for r in result.rejects] == [
        ("empty_field", f"{path}:line 4", "conversations[1].value"),
    ]
    assert not (tmp_path / "images").exists()  # nothing embedded, nothing written


def test_pairs_and_corrections_jsonl_with_data_uris_and_text_only_rows(tmp_path):
    uri = "data:image/png;base64," + base64.b64encode(RED).decode()
    pairs = [
        {"id": "p1", "images": [uri], "prompt": [{"role": "user", "content": "How many?"}], "chosen": "One.",
         "rejected": "Two."},
        {"images": [uri], "prompt": "How many?", "chosen": "1", "rejected": "2"},  # no id, merged into p1
        {"id": "p3", "prompt": "Say hi.", "chosen": "Hi.", "rejected": "Bye."},  # text-only is allowed here
        {"id": "p4", "chosen": "Hi.", "rejected": "Bye.", "question": None},  # no question
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    result = read_instructions(path, tmp_path / "images")
    assert result.formats[str(path)][0] == "pairs"
    assert as_tuples(result) == [
        ("p1", "How many?", f"images/{hashed(RED)}", f"{path}:line 1"),
        ("p3", "Say hi.", None, f"{path}:line 3"),
    ]
    assert result.instructions[0].merged == [{"id": "pairs-2", "where": f"{path}:line 2"}]
    assert [(r["reason"], r["field"]) for r in result.rejects] == [("missing_field", "question")]

    corrections = [{"id": "c1", "image": uri, "question": "Describe.", "response": "A.", "corrected": "B."}]
    path = write_jsonl(tmp_path / "corrections.jsonl", corrections)
    result = read_instructions(path, tmp_path / "images")
    assert result.formats[str(path)][0] == "corrections"
    assert as_tuples(result) == [("c1", "Describe.", f"images/{hashed(RED)}", f"{path}:line 1")]


def test_prompts_files_read_as_before_and_a_reused_id_is_a_reject(tmp_path):
    (tmp_path / "a.png").write_bytes(RED)
    rows = [
        {"id": 1, "image": "a.png", "question": "Describe."},
        {"id": "2", "image": "a.png", "question": "Describe."},  # same instruction: merged, not an id clash
        {"id": "1", "image": "a.png", "question": "Count."},  # id 1 again, another instruction
        {"id": "4", "image": "a.png", "question": "Count.", "extra": {"bytes": "not read"}},
    ]
    path = write_jsonl(tmp_path / "prompts.jsonl", rows)
    result = read_instructions(path, tmp_path / "images")
    assert result.formats[str(path)][0] == "prompts"
    assert as_tuples(result) == [
        ("1", "Describe.", "a.png", f"{path}:line 1"),
        ("4", "Count.", "a.png", f"{path}:line 4"),
    ]
    assert result.instructions[0].merged == [{"id": "2", "where": f"{path}:line 2"}]
    assert [(r["reason"], r["where"], r["field"]) for r in result.rejects] == [
        ("duplicate_id", f"{path}:line 3", "id")
    ]


def test_detection_and_a_forced_format(tmp_path):
    assert detect_instruction_format({"id", "question", "image"})[0] == "prompts"
    assert detect_instruction_format({"question", "chosen", "rejected", "idx"})[0] == "rlaif-v"
    assert detect_instruction_format({"id", "image"}) is None
    path = write_jsonl(tmp_path / "odd.jsonl", [{"id": "x", "caption": "hi"}])
    with pytest.raises(CommandError, match="cannot detect the layout.*--prompts-format"):
        read_instructions(path, tmp_path / "images")
    # a pairs file read as plain prompts (chosen / rejected are never needed)
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "x", "question": "Q?", "chosen": "a", "rejected": "b"}])
    result = read_instructions(path, tmp_path / "images", format="prompts")
    assert as_tuples(result) == [("x", "Q?", None, f"{path}:line 1")]
    with pytest.raises(CommandError, match="unknown prompts format 'nope'"):
        read_instructions(path, tmp_path / "images", format="nope")


def test_an_embedded_image_pil_cannot_read_is_a_reject(tmp_path):
    rows = [{"ds_name": "D", "idx": 1, "image": {"bytes": b"not an image", "path": None}, "question": "Q?",
             "chosen": "a", "rejected": "b"}]  # fmt: skip
    path = write_parquet(tmp_path / "bad.parquet", rows)
    result = read_instructions(path, tmp_path / "images")
    assert result.instructions == []
    assert [(r["reason"], r["where"], r["field"]) for r in result.rejects] == [
        ("image_unreadable", f"{path}:row 0", "image")
    ]


def test_feedback_run_on_rlaif_v_rows_reports_the_merge(tmp_path):
    """End to end through `rlhfv feedback` (sampling only): the merge is in the summary and its own file, the
    prompt rejects are in rejects.jsonl, and sampling reads the written images."""
    from rlhfv.cli import main as rlhfv_main
    from rlhfv.tiny_models import build_llava, build_tokenizer

    model, processor = build_llava(build_tokenizer(), seed=0)
    model.save_pretrained(tmp_path / "policy")
    processor.save_pretrained(tmp_path / "policy")
    meta = {"ds_name": "R", "origin_dataset": "COCO"}
    rows = [
        {**meta, "idx": "a", "image": {"bytes": RED, "path": None}, "question": "Describe.", "chosen": "x",
         "rejected": "y"},
        {**meta, "idx": "b", "image": {"bytes": RED, "path": None}, "question": "Describe.", "chosen": "x",
         "rejected": "z"},
        {**meta, "idx": "c", "question": "Describe.", "chosen": "x", "rejected": "z"},  # no image
    ]  # fmt: skip
    prompts = write_parquet(tmp_path / "rlaif.parquet", rows)
    out = tmp_path / "fb"
    argv = ["feedback", "--prompts", str(prompts), "--policy", str(tmp_path / "policy"), "--output_dir", str(out),
            "--num-samples", "2", "--max-new-tokens", "4", "--device", "cpu", "--on-error", "skip",
            "--no-progress", "--stop-after", "sample"]  # fmt: skip
    assert rlhfv_main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompt_rows"] == 3 and summary["prompt_formats"] == {str(prompts): "rlaif-v"}
    assert summary["prompt_rows_merged"] == 1 and summary["instructions_with_merged_rows"] == 1
    assert summary["instructions"] == summary["instructions_answered"] == 1
    merges = [json.loads(line) for line in (out / "instruction_merges.jsonl").read_text().splitlines()]
    assert [(m["id"], m["merged"]) for m in merges] == [("R-a", [{"id": "R-b", "where": f"{prompts}:row 1"}])]
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["reason"], r["where"], r["field"]) for r in rejects] == [
        ("prompts", "missing_field", f"{prompts}:row 2", "image")
    ]
    (answer,) = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert answer["image_path"] == str((out / "images" / hashed(RED)).resolve()) and len(answer["answers"]) == 2


def test_rlaif_v_as_a_datasets_folder_with_an_image_feature_and_images_decoded_once(tmp_path, monkeypatch):
    """RLAIF-V as `load_dataset(...).save_to_disk(...)` leaves it (an Image feature); each picture is checked by PIL
    once: a second row with it, and a rerun that finds its file, only hash it."""
    import PIL.Image
    from datasets import Dataset, Features, Image, Value

    features = Features({"ds_name": Value("string"), "idx": Value("string"), "image": Image(),
                         "question": Value("string"), "chosen": Value("string"), "rejected": Value("string")})  # fmt: skip
    rows = [
        {"ds_name": "RLAIF-V-Dataset", "idx": str(i), "image": {"bytes": data, "path": None}, "question": question,
         "chosen": "a", "rejected": "b"}
        for i, (data, question) in enumerate([(RED, "Describe."), (RED, "Describe."), (BLUE, "Describe.")])
    ]  # fmt: skip
    folder = tmp_path / "rlaif_v_disk"
    Dataset.from_list(rows, features=features).save_to_disk(str(folder))
    opened = []
    real_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    result = read_instructions(folder, tmp_path / "images")
    assert result.formats[str(folder)][0] == "rlaif-v"
    assert as_tuples(result) == [
        ("RLAIF-V-Dataset-0", "Describe.", f"images/{hashed(RED)}", f"{folder}:row 0"),
        ("RLAIF-V-Dataset-2", "Describe.", f"images/{hashed(BLUE)}", f"{folder}:row 2"),
    ]
    assert result.instructions[0].merged == [{"id": "RLAIF-V-Dataset-1", "where": f"{folder}:row 1"}]
    assert len(opened) == 2  # RED once, BLUE once
    again = read_instructions(folder, tmp_path / "images")
    assert as_tuples(again) == as_tuples(result) and len(opened) == 2  # the rerun decodes nothing
