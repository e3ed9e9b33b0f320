"""Benchmark generation with a tiny LLaVA saved to disk: MMHal's template filled in order, resumable, decoding
settings written next to the answers; Object HalBench's embedded base64 images."""

import base64
import io
import json
from pathlib import Path

import pytest

from rlhfv.cli import main as rlhfv_main


FIXTURES = Path(__file__).parent / "fixtures"
MMHAL, POPE, AMBER = FIXTURES / "mmhal", FIXTURES / "pope", FIXTURES / "amber"
MAX_NEW_TOKENS = 4


@pytest.fixture(scope="module")
def saved_llava_folder(saved_llava):
    return saved_llava[0]


def make_images(folder: Path, names) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        Image.new("RGB", (32, 32), (40 * k % 256, 90, 200 - 15 * k)).save(folder / name)


def generate_argv(folder, *extra):
    return ["eval", *extra, "--model", str(folder), "--batch-size", "3", "--max-new-tokens", str(MAX_NEW_TOKENS),
            "--device", "cpu", "--quiet"]  # fmt: skip


def test_mmhal_generate_fills_template_in_order_and_resumes(tmp_path, saved_llava_folder, capsys):
    template = json.loads((MMHAL / "response_template.json").read_text())
    images = tmp_path / "images"
    make_images(images, [item["image_src"].rsplit("/", 1)[1] for item in template])
    out = tmp_path / "filled.json"
    argv = generate_argv(saved_llava_folder, "mmhal", "generate", "--template", MMHAL / "response_template.json",
                         "--images", images, "--output_dir", out)  # fmt: skip
    assert rlhfv_main([str(a) for a in argv]) == 0
    filled = json.loads(out.read_text())
    # same items, same order, same fields; only model_answer changed
    assert [{k: v for k, v in f.items() if k != "model_answer"} for f in filled] == [
        {k: v for k, v in t.items() if k != "model_answer"} for t in template
    ]
    answers_file = tmp_path / "filled.answers.jsonl"
    rows = [json.loads(line) for line in answers_file.read_text().splitlines()]
    assert [r["id"] for r in rows] == [str(i) for i in range(10)]
    assert [f["model_answer"] for f in filled] == [r["answer"] for r in rows]
    assert all(r["question"] == t["question"] for r, t in zip(rows, template, strict=True))
    settings = json.loads((tmp_path / "filled.answers.settings.json").read_text())
    assert settings["decoding"] == {"max_new_tokens": MAX_NEW_TOKENS, "do_sample": False, "num_beams": 1}
    assert settings["batch_sizes"] == [3]
    assert settings["benchmark"] == "mmhal" and settings["model"] == str(saved_llava_folder)

    # a crash after item 6: the rerun generates items 6-9 only and fills the template again
    kept = rows[:6]
    answers_file.write_text("".join(json.dumps(dict(r, answer=f"KEPT {r['id']}")) + "\n" for r in kept))
    out.unlink()
    smaller_batches = [str(a) for a in argv] + ["--batch-size", "2"]  # e.g. after running out of memory
    assert rlhfv_main(smaller_batches) == 0
    assert "4 answers written" in capsys.readouterr().out
    resumed = json.loads(out.read_text())
    assert [f["model_answer"] for f in resumed[:6]] == [f"KEPT {i}" for i in range(6)]
    assert [f["model_answer"] for f in resumed[6:]] == [r["answer"] for r in rows[6:]]  # greedy: same answers
    assert json.loads((tmp_path / "filled.answers.settings.json").read_text())["batch_sizes"] == [3, 2]

    # resuming with other decoding settings is refused: one answer file, one decoding
    answers_file.write_text(answers_file.read_text().split("\n", 1)[0] + "\n")
    assert rlhfv_main([str(a) for a in argv] + ["--do-sample"]) == 1
    assert "was generated with other settings (decoding differ" in capsys.readouterr().err


def test_object_halbench_generate_with_embedded_images(tmp_path, saved_llava_folder):
    from PIL import Image

    questions = tmp_path / "questions.jsonl"
    lines = []
    for k in range(2):
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), (200, 40 * k, 60)).save(buffer, format="PNG")
        encoded = base64.b64encode(buffer.getvalue()).decode()
        lines.append(json.dumps({"image_id": 101 + k, "question": "Describe this image in detail.", "image": encoded}))
    questions.write_text("\n".join(lines) + "\n")
    out = tmp_path / "answers.jsonl"
    argv = generate_argv(
        saved_llava_folder, "object-halbench", "generate", "--questions", questions, "--output_dir", out
    )
    assert rlhfv_main([str(a) for a in argv]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["0", "1"]  # no question_id: the line's index
    assert [r["image"] for r in rows] == ["COCO_val2014_000000000101.jpg", "COCO_val2014_000000000102.jpg"]
    assert all(isinstance(r["answer"], str) for r in rows)


def test_pope_and_amber_generate(tmp_path, saved_llava_folder):
    images = tmp_path / "images"
    names = {json.loads(line)["image"] for f in POPE.glob("coco_pope_*.json") for line in f.read_text().splitlines()}
    make_images(images, sorted(names))
    out = tmp_path / "pope"
    argv = generate_argv(
        saved_llava_folder, "pope", "generate", "--pope-dir", POPE, "--images", images, "--output_dir", out
    )
    assert rlhfv_main([str(a) for a in argv]) == 0
    for split, n in [("random", 6), ("popular", 2), ("adversarial", 2)]:
        rows = [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]
        assert [r["id"] for r in rows] == [str(i) for i in range(1, n + 1)]
        # LLaVA-1.5's POPE prompt: the question and a one-word instruction
        assert rows[0]["question"].endswith("in the image?\nAnswer the question using a single word or phrase.")
        settings = json.loads((out / f"{split}.settings.json").read_text())
        assert settings["benchmark"] == f"pope-{split}" and "single word" in settings["prompt_suffix"]
    # the answers score with `pope score` as they are
    assert rlhfv_main(["eval", "pope", "score", "--pope-dir", str(POPE), "--answers", str(out)]) == 0

    queries = json.loads((AMBER / "query_all.json").read_text())
    make_images(tmp_path / "amber_images", [q["image"] for q in queries])
    out = tmp_path / "amber.jsonl"
    argv = generate_argv(saved_llava_folder, "amber", "generate", "--queries", AMBER / "query_all.json", "--images",
                         tmp_path / "amber_images", "--output_dir", out)  # fmt: skip
    assert rlhfv_main([str(a) for a in argv]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [str(q["id"]) for q in queries]
    assert [r["question"] for r in rows] == [q["query"] for q in queries]


def test_missing_image_is_reported_before_loading_the_model(tmp_path, capsys):
    out = tmp_path / "filled.json"
    argv = ["eval", "mmhal", "generate", "--model", "/nonexistent", "--template", MMHAL / "response_template.json",
            "--images", tmp_path / "no_images", "--output_dir", out]  # fmt: skip
    assert rlhfv_main([str(a) for a in argv]) == 1
    assert "response_template.json:row 0: image not found:" in capsys.readouterr().err
