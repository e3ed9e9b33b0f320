"""The RLAIF-V rounds experiment on the language-prior world (`experiments.prior_rounds`): Wilson intervals
against a numeric inversion of the score test, the self-labeler's agreement counted by hand on statements whose
truth is known from how they were drawn, and a one-round run of every arm on a tiny world whose arms differ in
gamma only, then resume without retraining."""

import json
import math

import pytest
import torch
import yaml

from experiments import prior_rounds
from experiments.intervals import t_interval, wilson


def score_test_bounds(successes, n, z=1.96):
    """The Wilson interval by definition: the p0 where |p_hat - p0| / sqrt(p0 (1 - p0) / n) = z, found by bisection
    on each side of p_hat (independent of the closed form under test)."""
    p_hat = successes / n

    def excess(p0):
        return abs(p_hat - p0) / math.sqrt(p0 * (1 - p0) / n) - z

    def bisect(lo, hi):  # excess(lo) and excess(hi) have opposite signs
        for _ in range(200):
            mid = (lo + hi) / 2
            if (excess(mid) > 0) == (excess(lo) > 0):
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    eps = 1e-12
    low = 0.0 if successes == 0 else bisect(eps, p_hat)
    high = 1.0 if successes == n else bisect(max(p_hat, eps), 1 - eps)
    return low, high


@pytest.mark.parametrize("successes,n", [(81, 263), (0, 20), (20, 20), (1, 3), (2756, 3282)])
def test_wilson_interval_inverts_the_score_test(successes, n):
    p, low, high = wilson(successes, n)
    assert p == successes / n
    expected_low, expected_high = score_test_bounds(successes, n)
    assert low == pytest.approx(expected_low, abs=1e-9)
    assert high == pytest.approx(expected_high, abs=1e-9)
    assert wilson(0, 0) == (None, None, None)


def test_label_agreement_counts_match_a_hand_count_on_statements_of_known_truth(tmp_path):
    from experiments.synthetic.prior import COMPANIONS, PriorWorld, anchor_of, companion_case
    from experiments.synthetic.prior_writers import iter_prior_items, verification_statement, write_prior_prompts

    world = PriorWorld()
    write_prior_prompts(tmp_path / "data", n=40, seed=3, world=world, split="preference")
    items = list(iter_prior_items("preference", 40, 3, world, 24))
    answers, claims, labels = [], [], []
    expected = dict(claims=0, correct=0, answered=0, true=0, true_kept=0, false=0, false_caught=0, companion=0,
                    companion_caught=0, other=0, other_caught=0)  # fmt: skip
    kinds = set()
    for number, item in enumerate(items):
        statements = [verification_statement(item) for _ in range(4)]
        # a self-labeler that says "true" to the first two statements of an image and "false" to the others, with
        # half of its verdicts given with little mass on yes/no
        verdicts = [k < 2 for k in range(len(statements))]
        masses = [(0.7, 0.2) if (number + k) % 2 else (0.2, 0.1) for k in range(len(statements))]
        answers.append({"id": item.id, "image": item.image, "answers": ["..."]})
        claims.append({"id": item.id, "answer_index": 0,
                       "claims": [{"text": s.rstrip("."), "question": f"Is it true that {s}"} for s, _, _ in statements]})  # fmt: skip
        labels.append({"id": item.id, "answer_index": 0,
                       "labels": [{"verdict": v, "p_yes": m[0] if v else m[1], "p_no": m[1] if v else m[0]}
                                  for v, m in zip(verdicts, masses, strict=True)]})  # fmt: skip
        absent = COMPANIONS[anchor_of(item.scene)] if companion_case(item.scene) == "absent" else None
        for (statement, true, kind), verdict, mass in zip(statements, verdicts, masses, strict=True):
            kinds.add(kind)
            expected["claims"] += 1
            expected["correct"] += verdict == true
            expected["answered"] += sum(mass) >= 0.5
            if true:
                expected["true"] += 1
                expected["true_kept"] += verdict
                continue
            expected["false"] += 1
            expected["false_caught"] += not verdict
            # a claim names the prior's hallucination when it names the scene's absent companion (the
            # "absent_companion" statements, and a "wrong_kind" one that happens to draw the companion)
            group = "companion" if absent and absent in statement.lower() else "other"
            assert (kind == "absent_companion") <= (group == "companion")
            expected[group] += 1
            expected[f"{group}_caught"] += not verdict
    assert kinds == {"true", "absent_companion", "wrong_kind", "wrong_colour"}  # every case is exercised
    feedback = tmp_path / "feedback"
    feedback.mkdir()
    for name, rows in (("answers", answers), ("claims", claims), ("labels", labels)):
        (feedback / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    result = prior_rounds.label_agreement(feedback, tmp_path / "data" / "scenes.json")
    assert {k: result[k] for k in expected} == expected
    assert result["unlabeled"] == 0
    assert result["accuracy"][0] == expected["correct"] / expected["claims"]
    assert result["majority_baseline"] == max(expected["true"], expected["false"]) / expected["claims"]
    assert result["companion_claims_caught"][0] == expected["companion_caught"] / expected["companion"]


TINY = {
    "seeds": [0], "jobs": 1, "threads": 1, "rounds": 1, "labelers": ["truth", "self"],
    "canvas": 24, "image_size": 24, "hidden_size": 64, "num_layers": 1, "vocab_size": 600, "text_init_std": 0.1,
    "sft_items": 40, "verification_items": 20, "sft_steps": 10, "sft_batch_size": 16, "sft_learning_rate": 2e-3,
    "preference_items": 4, "val_items": 4, "eval_items": 6, "self_check_samples": 2, "bootstrap_samples": 20,
    "generation_batch_size": 16, "max_new_tokens": 64, "select_metric": "chair_i",
    "feedback": {"num_samples": 3, "max_new_tokens": 64, "claim_splitter": "rule", "question_writer": "rule",
                 "device": "cpu", "progress": False, "on_error": "skip", "sample_batch_size": 16,
                 "label_batch_size": 32},
    "train": {"beta": 0.1, "learning_rate": 3e-5, "num_train_epochs": 1, "per_device_train_batch_size": 8,
              "max_length": 256, "use_cpu": True, "bf16": False, "eval_strategy": "no", "save_strategy": "epoch",
              "save_only_model": True, "report_to": "none", "activation_checkpointing": False, "logging_steps": 1},
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("prior_rounds")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(TINY))
    threads = torch.get_num_threads()
    try:
        assert prior_rounds.main(["--config", str(config), "--out", str(root / "out")]) == 0
    finally:
        torch.set_num_threads(threads)  # the experiment sets its own thread count for the process
    return config, root / "out"


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_every_arm_runs_and_the_arms_differ_in_gamma_only(tiny_run):
    _, out = tiny_run
    seed = out / "seed0"
    results = json.loads((out / "results.json").read_text())
    assert set(results["seeds"][0]["rounds"]) == {"truth_dense", "truth_plain", "self_dense", "self_plain"}
    for labeler in ("truth", "self"):
        dense, plain = seed / f"{labeler}_dense" / "round_1", seed / f"{labeler}_plain" / "round_1"
        # round 1 of both arms starts from the same SFT model with the same seed: the same answers, labels and pairs
        for name in ("answers.jsonl", "labels.jsonl", "pairs.jsonl"):
            assert (dense / "feedback" / name).read_text() == (plain / "feedback" / name).read_text(), name
        if labeler == "self" and not (dense / "train_recipe.yaml").exists():
            # a tiny SFT model may judge every answer alike: no pairs, no training (the truth arms always train)
            for arm in (dense, plain):
                selected = json.loads((arm / "selected.json").read_text())
                assert (selected["pairs"], selected["selected"]) == (0, "no pairs")
            continue
        recipes = [yaml.safe_load((d / "train_recipe.yaml").read_text()) for d in (dense, plain)]
        assert (recipes[0].pop("gamma"), recipes[1].pop("gamma")) == (5.0, 1.0)
        # the rest differs only where each arm keeps its own files
        differing = {k for k in recipes[0] if recipes[0][k] != recipes[1].get(k)}
        assert all(f"{labeler}_dense" in str(recipes[0][k]) for k in differing), differing
        assert recipes[0].keys() == recipes[1].keys()
    # the self-labeler check: its counts partition the claims
    agreement = json.loads((seed / "self_check" / "agreement.json").read_text())
    assert agreement["claims"] > 0
    assert agreement["claims"] == agreement["true"] + agreement["false"]
    assert agreement["false"] == agreement["companion"] + agreement["other"]
    assert agreement["correct"] == agreement["true_kept"] + agreement["false_caught"]
    # each arm's per-round table shows the prior world's metrics, not the glyph world's
    from experiments.companion import METRICS

    header, _, *rows = (seed / "truth_dense" / "rounds.md").read_text().splitlines()
    assert header == "| " + " | ".join(["round", "pairs", "feedback_false_claim_rate", *METRICS, "seconds"]) + " |"
    round_1 = dict(zip(header.strip("|").split(" | "), rows[1].strip("|").split(" | "), strict=True))
    assert round_1["companion_hallucination"].strip() not in ("", "-")
    report = (out / "results.md").read_text()
    assert "| truth_dense | 1 | " in report and "self_dense/round1 - truth_dense/round1" in report


def test_a_rerun_resumes_from_the_saved_stages(tiny_run):
    config, out = tiny_run
    seed = out / "seed0"
    stamps = {p: p.stat().st_mtime_ns for p in (seed / "sft" / "config.json", seed / "self_check" / "agreement.json")}
    before = json.loads((out / "results.json").read_text())["seeds"][0]
    threads = torch.get_num_threads()
    try:
        assert prior_rounds.main(["--config", str(config), "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    after = json.loads((out / "results.json").read_text())["seeds"][0]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing retrained or relabeled
    assert after["metrics"] == before["metrics"] and after["rounds"] == before["rounds"]


def _seed_result(seed, dense_minus_plain, dense_minus_sft):
    """A seed's results.json entry with the given paired differences (intervals +-0.05 around them)."""

    def entry(diff):
        return {"diff": diff, "low": diff - 0.05, "high": diff + 0.05}

    metrics = ("companion_hallucination", "companion_recall", "recall")
    dense_plain = {m: entry(dense_minus_plain if m == "companion_hallucination" else 0.0) for m in metrics}
    return {
        "seed": seed,
        "paired": {
            "truth_dense/round3 - truth_plain/round3": dense_plain,
            "truth_dense/round3 - sft": {m: entry(dense_minus_sft) for m in metrics},
            "truth_dense/round2 - sft": {m: entry(1.0) for m in metrics},  # another round: left out
        },
    }


def test_combine_runs_on_different_seeds(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"config": {"rounds": 3}, "seeds": [_seed_result(0, -0.10, -0.2),
                                                                     _seed_result(1, -0.02, -0.1)]}))  # fmt: skip
    second.write_text(json.dumps({"config": {"rounds": 3}, "seeds": [_seed_result(3, 0.0, -0.3),
                                                                      _seed_result(4, -0.06, 0.1)]}))  # fmt: skip
    combined = prior_rounds.combine([first, second], 3)
    assert combined["seeds"] == [0, 1, 3, 4]
    assert set(combined["contrasts"]) == {"truth_dense/round3 - truth_plain/round3", "truth_dense/round3 - sft"}
    dense_plain = combined["contrasts"]["truth_dense/round3 - truth_plain/round3"]["companion_hallucination"]
    mean, low, high = t_interval([-0.10, -0.02, 0.0, -0.06])
    assert (dense_plain["mean"], dense_plain["low"], dense_plain["high"]) == pytest.approx((mean, low, high))
    # seed 3's exact tie is left out of the sign test: 3 of 3 below 0
    assert (dense_plain["below_zero"], dense_plain["nonzero"], dense_plain["sign_test_p"]) == (3, 3, 0.25)
    assert dense_plain["per_seed"][4]["diff"] == -0.06
    dense_sft = combined["contrasts"]["truth_dense/round3 - sft"]["recall"]
    assert (dense_sft["below_zero"], dense_sft["nonzero"]) == (3, 4)
    report = prior_rounds.combined_report(combined)
    assert "| truth_dense/round3 - truth_plain/round3 | -10.0 [-15.0, -5.0] |" in report
    assert "3 of 3 (p = 0.250)" in report
    with pytest.raises(SystemExit, match="appears twice"):
        prior_rounds.combine([first, first], 3)
