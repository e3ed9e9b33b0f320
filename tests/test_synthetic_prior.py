"""The language-prior world: the prior is in the SFT captions at the configured rate, the annotator removes exactly
the companion claim, and the companion metrics match hand-computed values."""

import json
import re

import pytest

from experiments.synthetic.prior import COMPANIONS, PriorWorld, anchor_of, companion_case, make_prior_item
from experiments.synthetic.world import POSITIONS, Scene, SceneObject


def _sentences(text: str) -> list[str]:
    return re.findall(r"[^.]+\.", text)


def _kinds_said(text: str) -> set[str]:
    kinds = ["stop sign", "umbrella", "kite", "ball", "book", "clock", "cup"]
    return {k for k in kinds if re.search(rf"\b{k}\b", text)}


def _case(objects: list[dict]) -> str | None:
    kinds = {o["kind"] for o in objects}
    anchors = [k for k in kinds if k in COMPANIONS]
    if not anchors:
        return None
    assert len(anchors) == 1  # the world draws at most one anchor per scene
    return "present" if COMPANIONS[anchors[0]] in kinds else "absent"


def test_sft_captions_carry_the_prior_at_the_configured_rate(tmp_path):
    from experiments.synthetic.prior_writers import write_prior_sft

    world = PriorWorld(together=0.65, prior_rate=0.6, anchor_rate=0.9)
    write_prior_sft(tmp_path, n=800, seed=3, world=world)
    scenes = json.loads((tmp_path / "scenes.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    counts = {"absent": 0, "present": 0, None: 0}
    claimed, anchors = 0, 0
    for row in rows:
        objects = scenes[row["images"][0]]
        caption = row["messages"][1]["content"][0]["text"]
        case = _case(objects)
        counts[case] += 1
        drawn = {o["kind"] for o in objects}
        said = _kinds_said(caption)
        # every drawn object is described, with its colour
        for obj in objects:
            assert f"{obj['colour']} {obj['kind']}" in caption
        extra = said - drawn
        if case == "absent":
            anchor = next(k for k in drawn if k in COMPANIONS)
            assert extra <= {COMPANIONS[anchor]}  # the only false claim is the companion
            claimed += bool(extra)
            assert row["companion_claim"] == bool(extra)
        else:
            assert not extra and not row["companion_claim"]
        anchors += case is not None
    absent = counts["absent"]
    assert absent > 150
    # binomial: 0.6 +- 4 standard deviations
    assert abs(claimed / absent - 0.6) < 4 * (0.6 * 0.4 / absent) ** 0.5
    assert abs(anchors / len(rows) - 0.9) < 4 * (0.9 * 0.1 / len(rows)) ** 0.5
    together = counts["present"] / anchors
    assert abs(together - 0.65) < 4 * (0.65 * 0.35 / anchors) ** 0.5


def test_companion_claim_sits_at_an_empty_slot_in_reading_order_early_or_late():
    from experiments.synthetic.world import POSITIONS

    order = ["top", "left", "center", "right", "bottom"]  # reading order of the plus-shaped slots
    world = PriorWorld(prior_rate=1.0)
    places = []
    for index in range(300):
        item = make_prior_item("t", 0, index, world, 24)
        if item.companion_claim is None:
            continue
        claim = item.sentences[item.companion_claim]
        anchor = next(o.kind for o in item.scene.objects if o.kind in COMPANIONS)
        assert claim.kind == COMPANIONS[anchor]
        assert item.scene.at(claim.position) is None and POSITIONS[claim.position] in claim.text.lower()
        said = [s.position for s in item.sentences if s.position is not None]
        assert said == sorted(said, key=order.index)
        objects = len(item.sentences) - 3  # opener, closing, the claim
        places.append((item.companion_claim - 1) / objects)  # 0: before every true object; 1: after them all
    assert min(places) == 0 and max(places) == 1  # the claim comes first in some answers and last in others


def test_annotator_removes_exactly_the_companion_claim(tmp_path):
    from experiments.synthetic.prior_writers import write_prior_corrections

    write_prior_corrections(tmp_path, n=60, seed=1)
    scenes = json.loads((tmp_path / "scenes.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "corrections.jsonl").read_text().splitlines()]
    assert len(rows) == 60
    for row in rows:
        objects = scenes[row["image"]]
        assert _case(objects) == "absent"
        anchor = next(o["kind"] for o in objects if o["kind"] in COMPANIONS)
        companion = COMPANIONS[anchor]
        sentences = _sentences(row["response"])
        claims = [s for s in sentences if companion in s]
        assert len(claims) == 1
        expected = " ".join(s.strip() for s in sentences if s not in claims)
        assert row["corrected"] == expected
        assert companion not in row["corrected"]


def test_true_captions_are_left_alone_by_the_annotator():
    from experiments.synthetic.annotator import correct

    world = PriorWorld(prior_rate=0.0)
    for index in range(100):
        item = make_prior_item("t", 2, index, world, 24)
        assert item.companion_claim is None
        assert correct(item.description, item.scene).text == item.description


def _obj(kind, colour="red", position="left"):
    return SceneObject(kind, colour, position, (0, 0, 7, 7))


def _hand_made():
    """Three scenes and answers; expected metrics worked out by hand below."""
    scenes = {
        # kite without its umbrella; the answer names a green umbrella: a companion hallucination
        "a.png": Scene((_obj("kite"), _obj("cup", "blue", "right"))),
        # ball with its book; the answer forgets the book
        "b.png": Scene((_obj("ball"), _obj("book", "green", "right"))),
        # clock with its stop sign; the answer names both
        "c.png": Scene((_obj("clock", "black"), _obj("stop sign", "red", "top"))),
    }
    rows = [
        {"image": "a.png", "answer": "There is a red kite on the left. There is a green umbrella at the top. "
         "There is a blue cup on the right."},
        {"image": "b.png", "answer": "There is a red ball on the left."},
        # the stop sign is red, not blue: a false claim that is not a companion hallucination
        {"image": "c.png", "answer": "There is a black clock on the left. There is a blue stop sign at the top."},
    ]  # fmt: skip
    return scenes, rows


def test_companion_metrics_on_hand_made_answers():
    from experiments.companion import image_records, summarize

    scenes, rows = _hand_made()
    records = image_records(rows, scenes)
    assert records["a.png"]["case"] == "absent" and records["a.png"]["companion_named"]
    assert records["b.png"]["case"] == "present" and not records["b.png"]["companion_named"]
    summary = summarize(list(records.values()))
    assert summary["companion_hallucination"] == pytest.approx(1 / 1)  # a: named while absent
    assert summary["companion_recall"] == pytest.approx(1 / 2)  # b: not named, c: named
    assert summary["chair_s"] == pytest.approx(1 / 3)  # only a has a false mention
    assert summary["chair_i"] == pytest.approx(1 / 6)  # mentions: 3 + 1 + 2, one false (umbrella)
    assert summary["recall"] == pytest.approx(5 / 6)  # true objects named: 2 + 1 + 2 of 6
    assert summary["length_words"] == pytest.approx((24 + 8 + 17) / 3)
    assert summary["other_false_claims"] == pytest.approx(1 / 6)  # 6 object sentences; the blue stop sign


def test_paired_bootstrap_sees_a_consistent_improvement_and_no_difference():
    from experiments.companion import paired_bootstrap

    scenes = {f"{i}.png": Scene((_obj("kite"), _obj("cup", "blue", "right"))) for i in range(40)}
    with_claim = {"answer": "There is a red kite on the left. There is a green umbrella at the top."}
    without = {"answer": "There is a red kite on the left."}
    from experiments.companion import image_records

    # SFT names the absent umbrella on 30 of 40 images; the trained model on 10 (a subset of those 30)
    before = image_records([{"image": k, **(with_claim if i < 30 else without)} for i, k in enumerate(scenes)], scenes)
    after = image_records([{"image": k, **(with_claim if i < 10 else without)} for i, k in enumerate(scenes)], scenes)
    result = paired_bootstrap(before, after, samples=300, seed=0)["companion_hallucination"]
    assert result["diff"] == pytest.approx(10 / 40 - 30 / 40)
    assert result["high"] < 0 and result["low"] <= result["diff"] <= result["high"]
    same = paired_bootstrap(before, before, samples=100, seed=0)["companion_hallucination"]
    assert same == {"diff": 0.0, "low": 0.0, "high": 0.0}


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_demo_recipe_reports_companion_metrics_before_and_after(tmp_path):
    """The demo recipe's callback measures the bundled SFT model on the held-out images before training and the trained
    model after, and the numbers reach TRL's eval metrics; the 'before' numbers are those of the SFT model itself."""
    from pathlib import Path

    from experiments.demo_eval import DEFAULT_HELDOUT, evaluate_in_memory
    from rlhfv.train import parse_recipe, run

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "demo"
    argv = ["--config", str(repo / "recipes/demo/config_demo.yaml"), "--output_dir", str(out), "--max_steps", "2",
            "--converted_dataset_dir", str(tmp_path / "conv"), "--eval_strategy", "no"]  # fmt: skip
    run(parse_recipe(argv), command="pytest")
    report = json.loads((out / "companion_eval.json").read_text())
    before, after = report["before"], report["after"]
    assert before["images"] == after["images"] == 100
    assert before["absent_images"] > 10 and before["present_images"] > 10
    # the bundled SFT model has the habit the demo removes
    assert before["companion_hallucination"] > 0.15
    from transformers import AutoModelForImageTextToText, AutoProcessor

    sft = repo / "recipes/demo/prior/sft"
    again = evaluate_in_memory(
        AutoModelForImageTextToText.from_pretrained(sft), AutoProcessor.from_pretrained(sft), DEFAULT_HELDOUT
    )
    assert again["companion_hallucination"] == pytest.approx(before["companion_hallucination"])
    assert again["recall"] == pytest.approx(before["recall"])


def test_a_callback_that_cannot_be_built_is_a_one_line_error(tmp_path):
    from data_tools.errors import CommandError
    from rlhfv.callbacks import import_callback

    with pytest.raises(CommandError, match="`callbacks`: cannot build 'experiments.demo_eval:Nope'"):
        import_callback("experiments.demo_eval:Nope")
    with pytest.raises(CommandError, match="expected `module:Class`"):
        import_callback("no_such_module_here:Thing")


def test_cli_writes_the_prior_world(tmp_path):
    from experiments.synthetic.__main__ import main

    assert main(["sft", "--world", "prior", "--n", "40", "--seed", "1", "--canvas", "24", "--out", str(tmp_path / "s"),
                 "--prior-rate", "1.0"]) == 0  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "s" / "sft.jsonl").read_text().splitlines()]
    scenes = json.loads((tmp_path / "s" / "scenes.json").read_text())
    assert len(rows) == 40
    # with prior rate 1, every caption of an anchor without its companion names the companion
    absent = [r for r in rows if _case(scenes[r["images"][0]]) == "absent"]
    assert absent and all(r["companion_claim"] for r in absent)
    assert main(["corrections", "--world", "prior", "--n", "5", "--out", str(tmp_path / "c")]) == 0
    assert len((tmp_path / "c" / "corrections.jsonl").read_text().splitlines()) == 5
    assert main(["sft", "--world", "prior", "--n", "2", "--prior-rate", "2", "--out", str(tmp_path / "x")]) == 2


def test_verification_questions_answer_from_the_scene_not_the_habit(tmp_path):
    """Each verification answer agrees with the truth labeler's verdict on the same statement, every kind of false
    statement occurs, an absent-companion statement names the anchor's companion at an empty slot, and the question
    is the one `rlhfv feedback` asks."""
    from experiments.synthetic.prior_writers import VERIFICATION_TEMPLATE, write_prior_sft
    from experiments.synthetic.writers import load_scenes
    from rlhfv.feedback.labeling import LabelRequest, TruthLabeler
    from rlhfv.feedback.prompts import QUESTION_TEMPLATE

    assert VERIFICATION_TEMPLATE == QUESTION_TEMPLATE
    path = write_prior_sft(tmp_path, n=5, seed=3, verification_items=200)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    checks = [r for r in rows if r.get("verification")]
    assert len(rows) == 205 and len(checks) == 200
    scenes = load_scenes(tmp_path / "scenes.json")
    truth = TruthLabeler(scenes)
    prefix, suffix = VERIFICATION_TEMPLATE.split("{claim}")
    kinds = {}
    for row in checks:
        question = row["messages"][0]["content"][1]["text"]
        assert question.startswith(prefix) and question.endswith(suffix)
        statement = question[len(prefix) : -len(suffix)]
        assert not statement.endswith(".")
        label = truth.label_many([LabelRequest(question, None, row["images"][0], statement)])[0]
        answer = row["messages"][1]["content"][0]["text"]
        assert answer == ("Yes." if label.verdict else "No."), (statement, answer)
        assert (row["verification"] == "true") == label.verdict
        kinds[row["verification"]] = kinds.get(row["verification"], 0) + 1
        if row["verification"] == "absent_companion":
            scene = scenes[row["images"][0]]
            companion = COMPANIONS[anchor_of(scene)]
            assert companion_case(scene) == "absent" and companion in statement
            said = [p for p in POSITIONS if POSITIONS[p] in statement.lower()]
            assert said and all(scene.at(p) is None for p in said)
    assert set(kinds) == {"true", "absent_companion", "wrong_kind", "wrong_colour"}
    assert 0.4 < kinds["true"] / 200 < 0.6
