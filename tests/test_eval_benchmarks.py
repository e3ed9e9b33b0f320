"""The benchmarks' metrics on fixture files in their real layouts (tests/fixtures/), against numbers worked out by
hand in the comments, plus the edge cases: a response with no object, an answer neither yes nor no, a missing item.

(Over 350 lines on purpose: the four benchmarks share the fixture readers and the hand-computed tables here.)
"""

import json
import shutil
from pathlib import Path

import pytest
from fixtures.openai_server import Server

from rlhfv.cli import main as rlhfv_main


FIXTURES = Path(__file__).parent / "fixtures"
OHB, AMBER, POPE, MMHAL = (FIXTURES / name for name in ("object_halbench", "amber", "pope", "mmhal"))


def run(argv) -> int:
    return rlhfv_main([str(a) for a in argv])


# ---- Object HalBench --------------------------------------------------------------------------------------------
# (the numbers against the official script are in tests/test_eval_official_parity.py)
def ohb_args(answers, out, *extra):
    return ["eval", "object-halbench", "score", "--questions", OHB / "obj_halbench_questions.jsonl",
            "--answers", answers, "--instances", OHB / "instances_val2014.json",
            "--captions", OHB / "captions_val2014.json", "--synonyms", OHB / "synonyms_refine.txt",
            "--language-tools", "language_standins:tools", "--output_dir", out, *extra]  # fmt: skip


def test_object_halbench_missing_answer(tmp_path, capsys):
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(OHB.joinpath("answers.jsonl").read_text().splitlines(keepends=True)[:4]))
    assert run(ohb_args(answers, tmp_path / "o.json")) == 1
    assert "7 of 11 questions have no answer (ids 4, 5, 6, 7, 8, 9, 10)" in capsys.readouterr().err
    assert run([*ohb_args(answers, tmp_path / "o.json"), "--allow-missing"]) == 0
    rep = json.loads((tmp_path / "o.json").read_text())
    # q0-q3 (rule): q0 names person, dog, frisbee, cat, bench (cat, bench hallucinated); q1 cup, laptop, dining
    # table; q2 nothing; q3 car (image 104 has none): CHAIR_s 2 of 3 naming, CHAIR_i 3 of 9
    assert rep["missing_answers"] == ["4", "5", "6", "7", "8", "9", "10"]
    assert rep["printed"]["Response Hall"] == "66.67" and rep["printed"]["Object Hall"] == "33.33"


def test_object_halbench_image_without_annotations(tmp_path, capsys):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question_id": 0, "image_id": 999, "question": "Describe."}) + "\n")
    answers = tmp_path / "a.jsonl"
    answers.write_text(json.dumps({"id": "0", "answer": "A dog."}) + "\n")
    argv = ohb_args(answers, tmp_path / "o.json")
    argv[argv.index("--questions") + 1] = questions
    assert run(argv) == 1
    assert "no COCO annotations for image id(s) [999]" in capsys.readouterr().err


# ---- POPE -------------------------------------------------------------------------------------------------------
# random ("yes" positive), read as POPE reads answers:
#   1 yes/"Yes, there is a dog." TP   2 no/"No, there is no cat." TN   3 yes/"No." FN   4 no/"Yes" FP
#   5 yes/"I cannot tell from this image." -> neither yes nor no: POPE reads it as yes -> TP (unclear)
#   6 yes/"There is a bench, not a chair." -> "not" -> no -> FN
#   acc 3/6; precision 2/3; recall 2/4; F1 = 2*(2/3)*(1/2)/(7/6) = 4/7; yes-ratio 3/6
#   --unclear-as wrong: item 5 becomes FN: acc 2/6, precision 1/2, recall 1/4, F1 1/3, yes-ratio 2/6
# popular (LLaVA's question_id/text answer layout): both right: acc 1, P 1, R 1, yes-ratio 1/2
# adversarial: 1 no/"No" TN; 2 yes/"Yes, a car." TP.
def pope_args(answers, out, *extra):
    return ["eval", "pope", "score", "--pope-dir", POPE, "--answers", answers, "--output_dir", out, *extra]


def test_pope(tmp_path):
    out = tmp_path / "pope.json"
    assert run(pope_args(POPE / "answers", out)) == 0
    splits = json.loads(out.read_text())["splits"]
    r = splits["random"]
    assert (r["tp"], r["tn"], r["fp"], r["fn"]) == (2, 1, 1, 2)
    assert r["accuracy"] == pytest.approx(50.0) and r["precision"] == pytest.approx(200 / 3)
    assert r["recall"] == pytest.approx(50.0) and r["f1"] == pytest.approx(400 / 7)
    assert r["yes_ratio"] == pytest.approx(50.0) and r["unclear_answers"] == ["5"]
    p = splits["popular"]
    assert (p["accuracy"], p["precision"], p["recall"], p["f1"], p["yes_ratio"]) == (100, 100, 100, 100, 50)
    assert splits["adversarial"]["accuracy"] == 100
    assert list(splits) == ["random", "popular", "adversarial"]

    assert run(pope_args(POPE / "answers", out, "--unclear-as", "wrong", "--overwrite")) == 0
    rep = json.loads(out.read_text())
    r = rep["splits"]["random"]
    assert (r["accuracy"], r["precision"], r["recall"]) == pytest.approx((100 / 3, 50.0, 25.0))
    assert (r["f1"], r["yes_ratio"]) == pytest.approx((100 / 3, 100 / 3))
    assert "compare only with rlhfv runs" in rep["comparable_with_papers"]


def test_pope_missing_answer(tmp_path, capsys):
    answers = tmp_path / "answers"
    shutil.copytree(POPE / "answers", answers)
    (answers / "adversarial.jsonl").write_text(json.dumps({"id": "1", "answer": "No"}) + "\n")
    assert run(pope_args(answers, tmp_path / "p.json")) == 1
    assert "1 of 2 adversarial questions have no answer (ids 2)" in capsys.readouterr().err
    assert run(pope_args(answers, tmp_path / "p.json", "--allow-missing")) == 0
    rep = json.loads((tmp_path / "p.json").read_text())
    assert rep["missing_answers"]["adversarial"] == ["2"] and rep["splits"]["adversarial"]["n"] == 1


# ---- MMHal-Bench judging ----------------------------------------------------------------------------------------
RATINGS = [6, 2, 4, 0, 5, 3, 1, 6, 2, 5]  # item i is rated RATINGS[i]; its type is i mod 8


def filled_mmhal(tmp_path, answers) -> Path:
    items = json.loads((MMHAL / "response_template.json").read_text())
    for item, answer in zip(items, answers, strict=True):
        item["model_answer"] = answer
    path = tmp_path / "filled.json"
    path.write_text(json.dumps(items))
    return path


def test_mmhal_judge(tmp_path, capsys):
    path = filled_mmhal(tmp_path, [f"RATE-{r} answer {i}" for i, r in enumerate(RATINGS)])
    out = tmp_path / "mmhal.json"
    with Server() as server:
        argv = ["eval", "mmhal", "judge", "--responses", path, "--base-url", server.url, "--model", "judge",
                "--cache-dir", tmp_path / "cache", "--output_dir", out, "--quiet"]  # fmt: skip
        assert run(argv) == 0
    rep = json.loads(out.read_text())
    assert rep["items"] == 10
    assert rep["average_score"] == pytest.approx(3.4)  # 34 / 10
    assert rep["hallucination_rate"] == pytest.approx(40.0)  # ratings 2, 0, 1, 2 are below 3
    # per type (index mod 8): attribute items 0, 8 -> (6 + 2) / 2; adversarial items 1, 9 -> (2 + 5) / 2; ...
    assert rep["per_type_score"] == {"attribute": 4.0, "adversarial": 3.5, "comparison": 4.0, "counting": 0.0,
                                     "relation": 5.0, "environment": 3.0, "holistic": 1.0, "other": 6.0}  # fmt: skip
    assert rep["headline"] == {"MMHal score": pytest.approx(3.4), "MMHal hallucination %": pytest.approx(40.0)}
    assert "rlhfv's own rubric" in rep["comparable_with_papers"]


def test_mmhal_judge_unanswered_items(tmp_path, capsys):
    answers = [f"RATE-{r} answer {i}" for i, r in enumerate(RATINGS)]
    answers[1] = ""  # item 1 (adversarial) was never answered
    path = filled_mmhal(tmp_path, answers)
    out = tmp_path / "mmhal.json"
    with Server() as server:
        argv = ["eval", "mmhal", "judge", "--responses", path, "--base-url", server.url, "--model", "judge",
                "--no-cache", "--output_dir", out, "--quiet"]  # fmt: skip
        assert run(argv) == 1
        assert "1 of 10 items have no model_answer (items 1)" in capsys.readouterr().err
        assert run([*argv, "--allow-missing"]) == 0
        assert len(server.requests) == 9
    rep = json.loads(out.read_text())
    # without item 1: 32 / 9; below 3: ratings 0, 1, 2 of items 3, 6, 8; adversarial is item 9 alone
    assert rep["items"] == 9 and rep["missing_answers"] == ["1"]
    assert rep["average_score"] == pytest.approx(32 / 9) and rep["hallucination_rate"] == pytest.approx(300 / 9)
    assert rep["per_type_score"]["adversarial"] == 5.0 and rep["per_type_score"]["attribute"] == 4.0


def test_mmhal_judge_refuses_reordered_file(tmp_path, capsys):
    items = json.loads(filled_mmhal(tmp_path, ["RATE-1 x"] * 10).read_text())
    items[0], items[1] = items[1], items[0]
    path = tmp_path / "reordered.json"
    path.write_text(json.dumps(items))
    argv = ["eval", "mmhal", "judge", "--responses", path, "--base-url", "http://127.0.0.1:9/v1", "--model", "j"]
    assert run(argv) == 1
    assert "row 0: question_type 'adversarial' but item 0 must be 'attribute'" in capsys.readouterr().err


# ---- report -----------------------------------------------------------------------------------------------------
def test_report_table_and_plot(tmp_path, capsys):
    for model, answers in [("sft", "answers.jsonl"), ("dpo", "answers.jsonl")]:
        assert run(ohb_args(OHB / answers, tmp_path / f"{model}_ohb.json")) == 0
    assert run(pope_args(POPE / "answers", tmp_path / "sft_pope.json")) == 0
    md, png = tmp_path / "report.md", tmp_path / "report.png"
    argv = ["eval", "report", "--result", f"sft={tmp_path / 'sft_ohb.json'}", "--result",
            f"sft={tmp_path / 'sft_pope.json'}", "--result", f"dpo={tmp_path / 'dpo_ohb.json'}", "--output_dir", md,
            "--plot", png]  # fmt: skip
    assert run(argv) == 0
    lines = md.read_text().splitlines()
    assert lines[0].startswith(
        "| model | ObjHal CHAIR_s (rule) ↓ | ObjHal CHAIR_i (rule) ↓ | ObjHal recall (rule) ↑ | POPE random acc ↑ |"
    )
    assert "| POPE random F1 ↑ | POPE random yes% ≈50 |" in lines[0]
    # Object HalBench (rule, official): Response Hall 77.78, Object Hall 43.33, Object Recall 73.68
    assert lines[2].startswith("| sft | 77.8 | 43.3 | 73.7 | 50.0 | 57.1 | 50.0 |")
    assert lines[3].startswith("| dpo | 77.8 | 43.3 | 73.7 | – |")  # dpo has no POPE result
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same headline number twice for one model is an error
    assert run(["eval", "report", "--result", f"a={tmp_path / 'sft_ohb.json'}", "--result",
                f"a={tmp_path / 'dpo_ohb.json'}"]) == 1  # fmt: skip
    assert "already has 'ObjHal CHAIR_s (rule)'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "column, expected",
    [("MMHal score", "↑"), ("MMHal hallucination %", "↓"), ("ObjHal CHAIR_s (llm)", "↓"),
     ("ObjHal recall (llm)", "↑"), ("AMBER CHAIR", "↓"), ("AMBER Cover", "↑"), ("AMBER Hal", "↓"),
     ("AMBER Cog", "↓"), ("AMBER F1", "↑"), ("POPE adversarial F1", "↑"), ("POPE random yes%", "≈50")],
)  # fmt: skip
def test_report_directions(column, expected):
    from rlhfv.eval.report import direction

    assert direction(column) == expected


def test_object_halbench_image_sources(tmp_path):
    import base64

    from rlhfv.eval.object_halbench import read_questions

    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "COCO_val2014_000000000007.jpg").write_bytes(b"jpeg")
    payload = bytes(range(256)) * 2  # 684 characters of base64, too long a name for most file systems
    rows = [
        {"image_id": 5, "question": "Describe.", "image": base64.b64encode(payload).decode()},  # embedded
        {"image_id": "COCO_val2014_000000000007.jpg", "question": "Describe."},  # by id, in --images
    ]
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first, second = read_questions(path, tmp_path / "coco")
    assert first["_image"] == payload and first["image_id"] == 5 and first["id"] == "0"
    assert second["_image"] == tmp_path / "coco" / "COCO_val2014_000000000007.jpg" and second["image_id"] == 7
