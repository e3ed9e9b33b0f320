"""`rlhfv feedback` end to end on a tiny in-process LLaVA giving itself feedback: every intermediate file, the pair
rules and spans checked against the files, the dataset trained on by `rlhfv train`, resume after a stop and after a
crash mid-labeling, and bad input counted with its reason or stopping the run."""

import json

import pytest

from rlhfv.cli import main as rlhfv_main
from rlhfv.feedback.claims import split_claims
from rlhfv.feedback.spans import merge_spans


SAMPLES = 4


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A saved tiny LLaVA whose weights are large enough (init std 0.3) that its yes/no answers depend on the
    question (with the default 0.02 it says "yes" to everything), and 4 synthetic prompts."""
    import torch

    from experiments.synthetic import write_prompts
    from rlhfv.tiny_models import build_llava, build_tokenizer

    root = tmp_path_factory.mktemp("feedback")
    model, processor = build_llava(build_tokenizer(), seed=3)
    model.config.text_config.initializer_range = 0.3
    torch.manual_seed(3)
    model = type(model)(model.config)
    model.save_pretrained(root / "policy")
    processor.save_pretrained(root / "policy")
    prompts = write_prompts(root / "prompts", n=4, seed=0)
    return root, prompts


def feedback_argv(world, out, *extra):
    root, prompts = world
    return ["feedback", "--prompts", str(prompts), "--policy", str(root / "policy"), "--output_dir", str(out),
            "--num-samples", str(SAMPLES), "--max-new-tokens", "12", "--labeler", "self", "--device", "cpu",
            "--min-answer-probability", "0", "--on-error", "skip", "--no-progress", "--label-batch-size", "2",
            *extra]  # fmt: skip


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def finished(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "fb"
    assert rlhfv_main(feedback_argv(world, out)) == 0
    return out


def test_every_stage_is_saved_and_consistent(finished):
    out = finished
    answers = read(out / "answers.jsonl")
    assert len(answers) == 4 and all(len(r["answers"]) == SAMPLES for r in answers)
    claims = {(r["id"], r["answer_index"]): r for r in read(out / "claims.jsonl")}
    assert len(claims) == 4 * SAMPLES
    for r in answers:
        for k, answer in enumerate(r["answers"]):
            record = claims[(r["id"], k)]
            assert record["answer"] == answer
            assert [(c["text"], c["start"], c["end"]) for c in record["claims"]] == [
                (c.text, c.start, c.end) for c in split_claims(answer)
            ]
            assert all(c["question"].endswith("Please answer yes or no.") for c in record["claims"])
    labels = {(r["id"], r["answer_index"]): r["labels"] for r in read(out / "labels.jsonl")}
    assert labels.keys() == claims.keys()
    scores = {(r["id"], r["answer_index"]): r for r in read(out / "scores.jsonl")}
    false_total = labeled = 0
    for key, record in claims.items():
        got = labels[key]
        assert len(got) == len(record["claims"])
        for label in got:
            assert label["verdict"] == (label["p_yes"] > label["p_no"])  # min_answer_probability 0: always a verdict
        false = sum(label["verdict"] is False for label in got)
        false_total += false
        labeled += len(got)
        expected = -false if got else None
        assert scores[key]["score"] == expected
    assert 0 < false_total < labeled, "the test model should judge some claims false and some true"

    pairs = read(out / "pairs.jsonl")
    assert pairs, "this seed gives pairs; a change that loses them is a bug to look at"
    per_instruction = {}
    for p in pairs:
        per_instruction[p["id"]] = per_instruction.get(p["id"], 0) + 1
        chosen, rejected = (p["id"], p["chosen_index"]), (p["id"], p["rejected_index"])
        assert p["chosen_score"] - p["rejected_score"] >= 1
        assert (p["chosen_score"], p["rejected_score"]) == (scores[chosen]["score"], scores[rejected]["score"])
        assert p["chosen"] != p["rejected"]
        # rejected spans: exactly the characters of the rejected answer's claims judged false
        false_claims = [
            (c["start"], c["end"]) for c, label in zip(claims[rejected]["claims"], labels[rejected], strict=True)
            if label["verdict"] is False
        ]  # fmt: skip
        assert p["rejected_spans"] == merge_spans(p["rejected"], false_claims) and p["rejected_spans"]
        assert p["chosen_spans"] == []  # the default: the chosen answer keeps weight 1 everywhere
    assert max(per_instruction.values()) <= 2

    summary = json.loads((out / "summary.json").read_text())
    assert summary["answers"] == 4 * SAMPLES
    assert summary["claims"] == labeled and summary["claims_false"] == false_total
    assert summary["false_claim_rate"] == pytest.approx(false_total / labeled)
    assert summary["pairs"] == len(pairs)
    assert sum(summary["rejects"].values()) == len(read(out / "rejects.jsonl"))


def test_the_dataset_trains_with_rlhfv_train(finished, world, tmp_path):
    from datasets import load_from_disk

    from rlhfv.changed_tokens import scan_span_columns
    from rlhfv.train import parse_recipe, run

    root, _ = world
    dataset = load_from_disk(str(finished / "dataset"))
    pairs = read(finished / "pairs.jsonl")
    assert len(dataset) == len(pairs)
    assert scan_span_columns(dataset, "train")["pairs_without_changes"] == 0
    assert [row["rejected"][0]["content"] for row in dataset] == [p["rejected"] for p in pairs]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model_name_or_path: {root / 'policy'}\ndataset_name: {finished / 'dataset'}\ngamma: 5.0\nbeta: 0.1\n"
        "learning_rate: 1.0e-3\nper_device_train_batch_size: 2\nmax_steps: 2\nmax_length: 256\nuse_cpu: true\n"
        f"bf16: false\neval_strategy: 'no'\nsave_strategy: 'no'\nreport_to: none\noutput_dir: {tmp_path / 'trained'}\n"
        "logging_steps: 1\nactivation_checkpointing: false\n"
    )
    trainer = run(parse_recipe(["--config", str(recipe)]), command="pytest")
    assert trainer.state.global_step == 2
    assert any(key.startswith("dense/") for entry in trainer.state.log_history for key in entry)


def test_a_stopped_or_crashed_run_resumes_without_redoing_finished_work(world, finished, tmp_path, monkeypatch):
    from rlhfv.feedback import labeling
    from rlhfv.generation import generate

    out = tmp_path / "fb"
    assert rlhfv_main(feedback_argv(world, out, "--stop-after", "claims")) == 0
    assert not (out / "labels.jsonl").exists()
    answers_before = (out / "answers.jsonl").read_text()

    calls = {"generate": 0, "labeled": 0, "label_calls": 0}
    real_generate, real_label = generate.generate_batch, labeling.TransformersLabeler.label_many

    def counting_generate(*args, **kwargs):
        calls["generate"] += 1
        return real_generate(*args, **kwargs)

    def crashing_label(self, requests, progress=True):
        calls["label_calls"] += 1
        if calls["label_calls"] == 2:
            raise KeyboardInterrupt  # a kill in the middle of labeling
        calls["labeled"] += len(requests)
        return real_label(self, requests, progress)

    monkeypatch.setattr(generate, "generate_batch", counting_generate)
    monkeypatch.setattr(labeling.TransformersLabeler, "label_many", crashing_label)
    assert rlhfv_main(feedback_argv(world, out)) == 130  # interrupted
    assert calls["generate"] == 0 and (out / "answers.jsonl").read_text() == answers_before
    labeled_before = calls["labeled"]
    lines_before = len(read(out / "labels.part0.jsonl"))
    assert 0 < lines_before < 4 * SAMPLES

    # a kill in the middle of writing a line leaves it cut short: it is redone, and later lines start on their own
    with (out / "labels.part0.jsonl").open("a") as f:
        f.write('{"id": "eval-s0-000')
    total_claims = sum(len(r["claims"]) for r in read(out / "claims.jsonl"))
    calls["labeled"] = 0
    assert rlhfv_main(feedback_argv(world, out)) == 0
    assert calls["generate"] == 0
    assert labeled_before + calls["labeled"] == total_claims  # nothing labeled twice
    # the resumed run ends exactly where the uninterrupted one did
    for name in ("answers.jsonl", "claims.jsonl", "scores.jsonl", "pairs.jsonl"):
        assert (out / name).read_text() == (finished / name).read_text(), name
    assert sorted(read(out / "labels.jsonl"), key=lambda r: (r["id"], r["answer_index"])) == sorted(
        read(finished / "labels.jsonl"), key=lambda r: (r["id"], r["answer_index"])
    )
    # a third run redoes nothing
    calls["labeled"] = calls["generate"] = 0
    assert rlhfv_main(feedback_argv(world, out)) == 0
    assert calls == {"generate": 0, "labeled": 0, "label_calls": calls["label_calls"]}


def test_bad_input_is_counted_with_its_reason_or_stops_the_run(world, tmp_path, capsys):
    root, prompts = world
    rows = read(prompts)[:2]
    (tmp_path / "broken.png").write_bytes(b"not an image")
    rows.append({"id": "broken", "image": "broken.png", "question": "Describe the image."})
    rows.append({"id": "missing", "image": "nowhere.png", "question": "Describe the image."})
    for row in rows[:2]:
        row["image"] = str(prompts.parent / row["image"])
    bad_prompts = tmp_path / "prompts.jsonl"
    bad_prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = feedback_argv((root, bad_prompts), tmp_path / "skip")
    assert rlhfv_main(argv) == 0
    rejects = read(tmp_path / "skip" / "rejects.jsonl")
    by_id = {r["id"]: r for r in rejects if r["stage"] == "sample"}
    assert by_id["broken"]["reason"] == "image_unreadable" and by_id["broken"]["field"] == "image"
    assert by_id["missing"]["reason"] == "image_missing"
    summary = json.loads((tmp_path / "skip" / "summary.json").read_text())
    assert summary["instructions"] == 4 and summary["instructions_answered"] == 2
    assert summary["rejects"]["image_unreadable"] == 1 and summary["rejects"]["image_missing"] == 1

    # --on-error fail: the first bad row stops the run, named by file, line and field
    capsys.readouterr()
    assert rlhfv_main([*feedback_argv((root, bad_prompts), tmp_path / "fail"), "--on-error", "fail"]) == 1
    err = capsys.readouterr().err
    assert f"{bad_prompts}:line 3, field 'image'" in err and "[image_unreadable]" in err

    # a labeler that does not answer yes/no (a random model puts ~1% on yes/no): counted per claim under skip,
    # and it stops the run under fail
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    argv = [*feedback_argv((root, good), tmp_path / "noyes"), "--min-answer-probability", "0.5"]
    assert rlhfv_main(argv) == 0
    summary = json.loads((tmp_path / "noyes" / "summary.json").read_text())
    assert summary["claims_labeled"] == 0 and summary["rejects"]["labeler_not_yes_no"] == summary["claims"] > 0
    assert summary["pairs"] == 0
    capsys.readouterr()
    argv = [
        *feedback_argv((root, good), tmp_path / "noyes-fail"),
        "--min-answer-probability",
        "0.5",
        "--on-error",
        "fail",
    ]
    assert rlhfv_main(argv) == 1
    err = capsys.readouterr().err
    assert "[labeler_not_yes_no]" in err and "claim 0" in err
