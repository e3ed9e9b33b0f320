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
# Ground truth = COCO instances + objects named in the captions:
#   101 {dog, person, frisbee (caption)}; 102 {cup, dining table, laptop (captions)}; 103 {car}; 104 {} (none).
# Rule-based mentions of the answers:
#   q0 (101) person, dog, frisbee, cat, bench -> 2 hallucinated (cat, bench); recalls 3 of 3
#   q1 (102) cup, laptop, dining table          -> 0 hallucinated; recalls 3 of 3
#   q2 (103) nothing (a response with no object: outside CHAIR_s's denominator); recalls 0 of 1
#   q3 (104) car                                -> 1 hallucinated; recalls 0 of 0
#   q4 (101) dog                                -> 0; recalls 1 of 3
# CHAIR_s = 2 / 4 = 50%; CHAIR_i = 3 / 10 = 30%; recall = 7 / 10 = 70%.
def ohb_args(answers, out, *extra):
    return ["eval", "object-halbench", "score", "--questions", OHB / "obj_halbench_questions.jsonl",
            "--answers", answers, "--instances", OHB / "instances_val2014.json",
            "--captions", OHB / "captions_val2014.json", "--out", out, *extra]  # fmt: skip


def test_object_halbench_rule_based(tmp_path, capsys):
    out = tmp_path / "ohb.json"
    assert run([*ohb_args(OHB / "answers.jsonl", out), "--details", tmp_path / "d.jsonl"]) == 0
    rep = json.loads(out.read_text())
    assert rep["responses"] == 5 and rep["responses_mentioning_objects"] == 4
    assert rep["chair_s"] == pytest.approx(50.0)
    assert rep["chair_i"] == pytest.approx(30.0)
    assert rep["recall"] == pytest.approx(70.0)
    assert rep["extraction"] == "rule" and "NOT with the Object HalBench tables" in rep["comparable_with_papers"]
    details = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert details[0]["hallucinated"] == ["bench", "cat"] and details[2]["mentions"] == []
    assert details[0]["ground_truth"] == ["dog", "frisbee", "person"]  # frisbee from the captions only


def test_object_halbench_missing_answer(tmp_path, capsys):
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(OHB.joinpath("answers.jsonl").read_text().splitlines(keepends=True)[:4]))
    assert run(ohb_args(answers, tmp_path / "o.json")) == 1
    assert "1 of 5 questions have no answer (ids 4)" in capsys.readouterr().err
    assert run([*ohb_args(answers, tmp_path / "o.json"), "--allow-missing"]) == 0
    rep = json.loads((tmp_path / "o.json").read_text())
    # without q4: CHAIR_s 2/3, CHAIR_i 3/9, recall 6/7
    assert rep["missing_answers"] == ["4"]
    assert rep["chair_s"] == pytest.approx(200 / 3) and rep["chair_i"] == pytest.approx(100 / 3)
    assert rep["recall"] == pytest.approx(600 / 7)


def test_object_halbench_image_without_annotations(tmp_path, capsys):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question_id": 0, "image_id": 999, "question": "Describe."}) + "\n")
    answers = tmp_path / "a.jsonl"
    answers.write_text(json.dumps({"id": "0", "answer": "A dog."}) + "\n")
    argv = ohb_args(answers, tmp_path / "o.json")
    argv[argv.index("--questions") + 1] = questions
    assert run(argv) == 1
    assert "no COCO annotations for image id(s) [999]" in capsys.readouterr().err


def test_object_halbench_llm_extraction(tmp_path):
    # The local server lists the objects named in LIST[...]; each name is mapped to a COCO class:
    #   q0 man, dog, frisbee, cat -> person, dog, frisbee, cat: 1 hallucinated (cat); recalls 3 of 3
    #   q1 coffee cup, unicorn -> cup ("unicorn" is no COCO class: reported, not scored); recalls 1 of 3
    #   q2 None -> nothing; recalls 0 of 1        q3 car -> 1 hallucinated        q4 dogs -> dog; recalls 1 of 3
    # CHAIR_s = 2 / 4; CHAIR_i = 2 / 7; recall = 5 / 10
    lists = ["man|dog|frisbee|cat", "coffee cup|unicorn", "None", "car", "dogs"]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps({"id": str(i), "answer": f"LIST[{x}]"}) + "\n" for i, x in enumerate(lists)))
    out = tmp_path / "ohb.json"
    with Server() as server:
        extra = ["--extract", "llm", "--base-url", server.url, "--model", "extractor", "--cache-dir",
                 tmp_path / "cache", "--quiet"]  # fmt: skip
        assert run([*ohb_args(answers, out), *extra]) == 0
        assert len(server.requests) == 5
        prompts = [r["messages"][0]["content"] for r in server.requests]
        assert any(p.endswith("Description:\nLIST[coffee cup|unicorn]") for p in prompts)
    rep = json.loads(out.read_text())
    assert rep["chair_s"] == pytest.approx(50.0)
    assert rep["chair_i"] == pytest.approx(200 / 7)
    assert rep["recall"] == pytest.approx(50.0)
    assert rep["names_not_coco"] == {"unicorn": 1} and rep["extractor_model"] == "extractor"
    assert "protocol of the RLHF-V / RLAIF-V" in rep["comparable_with_papers"]


# ---- AMBER ------------------------------------------------------------------------------------------------------
# Generative (object words = words in relation.json's vocabulary; "scene" is a safe word):
#   1 truth dog, grass; hallu cat, frisbee. "puppy"(-> dog) "lawn"(-> grass) "frisbee"(hallucinated, in hallu)
#     "scene"(safe): 4 object words, 1 hallucinated; covers 2 of 2; 1 of 2 annotated hallucinations produced
#   2 truth person, car; hallu tree. "men"(-> man -> person) "cars"(-> car) "trees"(-> tree, hallucinated, in hallu):
#     3 object words, 1 hallucinated; covers 2 of 2; 1 of 1 produced
#   3 truth bench; hallu cat. "It is a sunny day." -> no object word; covers 0 of 1; 0 of 1 produced
# CHAIR = 2/7; Cover = 4/5; Hal = 2/3 answers; Cog = 2/4.
# Discriminative ("No" positive): 4 no/"No." TP; 5 yes/"Yes, there is." correct; 6 no/"Yes" wrong;
#   7 yes/"No" wrong (predicted No); 8 no/"I am not sure." unclear -> wrong, not a No; 9 yes/"yes" correct.
#   overall acc 3/6; precision 1/2 (said No: 4, 7); recall 1/3 (truth no: 4, 6, 8); F1 = 2*.5*(1/3)/(5/6) = 40%
#   existence 4,5: all right; attribute 6,7: acc 0, P 0/1, R 0/1; relation 8,9: acc 1/2, no No said, R 0/1.
def amber_args(answers, out, *extra):
    return ["eval", "amber", "score", "--answers", answers, "--queries", AMBER / "query_all.json",
            "--annotations", AMBER / "annotations.json", "--relation", AMBER / "relation.json",
            "--safe-words", AMBER / "safe_words.txt", "--word-vectors", "off", "--out", out, *extra]  # fmt: skip


def test_amber(tmp_path, capsys):
    out = tmp_path / "amber.json"
    assert run(amber_args(AMBER / "answers.json", out)) == 0
    rep = json.loads(out.read_text())
    g, d = rep["generative"], rep["discriminative"]
    assert g["n"] == 3
    assert g["chair"] == pytest.approx(200 / 7)
    assert g["cover"] == pytest.approx(80.0)
    assert g["hal"] == pytest.approx(200 / 3)
    assert g["cog"] == pytest.approx(50.0)
    assert d["overall"]["accuracy"] == pytest.approx(50.0)
    assert d["overall"]["precision"] == pytest.approx(50.0)
    assert d["overall"]["recall"] == pytest.approx(100 / 3)
    assert d["overall"]["f1"] == pytest.approx(40.0)
    assert d["overall"]["unclear_answers"] == 1
    assert d["existence"]["accuracy"] == 100.0 and d["existence"]["f1"] == pytest.approx(100.0)
    assert d["attribute"]["accuracy"] == 0.0 and d["attribute"]["precision"] == 0.0 and d["attribute"]["f1"] == 0.0
    assert d["relation"]["accuracy"] == 50.0 and d["relation"]["precision"] is None and d["relation"]["recall"] == 0
    assert rep["amber_score"] == pytest.approx((100 - 200 / 7 + 40) / 2)
    # without word vectors the report says how it deviates from AMBER
    assert any("not spaCy en_core_web_lg vectors" in line for line in rep["deviations"])
    assert "deviation: word similarity" in capsys.readouterr().out


class TinyVectors:
    """Stands in for spaCy's en_core_web_lg (not installable here): similarity from a fixed table."""

    SIMILAR = {frozenset(("sofa", "couch")): 0.9, frozenset(("stool", "chair")): 0.85}

    def __call__(self, word):
        return _Doc(word)


class _Doc:
    def __init__(self, word):
        self.word = word

    def similarity(self, other):
        return TinyVectors.SIMILAR.get(frozenset((self.word, other.word)), 0.1)


def test_amber_word_vector_matching():
    from rlhfv.eval.amber import WordMatcher, score_generative

    association = {"couch": [], "chair": [], "sofa": [], "stool": []}
    vocabulary = set(association)
    annotation = {"id": 1, "truth": ["couch"], "hallu": ["chair"]}
    answer = "A sofa next to a stool."
    exact = WordMatcher("off")
    counts = score_generative(annotation, answer, association, set(), vocabulary, exact)
    # exact match: "sofa" is not the couch and "stool" is not the chair: both hallucinated, nothing covered
    assert (counts["hallucinated_words"], counts["covered"], counts["produced"]) == (["sofa", "stool"], 0, 0)
    vectors = WordMatcher("off")
    vectors.nlp, vectors.deviation = TinyVectors(), None
    counts = score_generative(annotation, answer, association, set(), vocabulary, vectors)
    # AMBER's rule (similarity > 0.8): "sofa" covers the couch; "stool" is the annotated hallucination "chair"
    assert (counts["hallucinated_words"], counts["covered"], counts["produced"]) == (["stool"], 1, 1)


def test_amber_missing_and_unknown_items(tmp_path, capsys):
    rows = json.loads((AMBER / "answers.json").read_text())
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps([r for r in rows if r["id"] != 2]))
    assert run(amber_args(partial, tmp_path / "a.json")) == 1
    assert "1 of 9 queries have no answer (ids 2)" in capsys.readouterr().err
    assert run(amber_args(partial, tmp_path / "a.json", "--allow-missing")) == 0
    g = json.loads((tmp_path / "a.json").read_text())["generative"]
    # items 1 and 3 only: CHAIR 1/4, Cover 2/3, Hal 1/2, Cog 1/3
    assert (g["chair"], g["cover"], g["hal"], g["cog"]) == pytest.approx((25.0, 200 / 3, 50.0, 100 / 3))
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps([*rows, {"id": 99, "response": "A cat."}]))
    assert run(amber_args(extra, tmp_path / "a2.json")) == 1
    assert "id '99' is not in" in capsys.readouterr().err


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
    return ["eval", "pope", "score", "--pope-dir", POPE, "--answers", answers, "--out", out, *extra]


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
                "--cache-dir", tmp_path / "cache", "--out", out, "--quiet"]  # fmt: skip
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
                "--no-cache", "--out", out, "--quiet"]  # fmt: skip
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
            f"sft={tmp_path / 'sft_pope.json'}", "--result", f"dpo={tmp_path / 'dpo_ohb.json'}", "--out", md,
            "--plot", png]  # fmt: skip
    assert run(argv) == 0
    lines = md.read_text().splitlines()
    assert lines[0].startswith(
        "| model | ObjHal CHAIR_s (rule) ↓ | ObjHal CHAIR_i (rule) ↓ | ObjHal recall (rule) ↑ | POPE random acc ↑ |"
    )
    assert "| POPE random F1 ↑ | POPE random yes% ≈50 |" in lines[0]
    assert lines[2].startswith("| sft | 50.0 | 30.0 | 70.0 | 50.0 | 57.1 | 50.0 |")
    assert lines[3].startswith("| dpo | 50.0 | 30.0 | 70.0 | – |")  # dpo has no POPE result
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
