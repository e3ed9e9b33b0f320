"""The end-to-end proof: its grounding questions are true, and the pipeline runs on a miniature configuration."""

import json
import re
from pathlib import Path

import pytest

from experiments.synthetic import COLOURS, KINDS, POSITIONS


def _question_answer_is_true(question: str, answer: str, objects: list[dict]) -> bool:
    """The test's own reading of a short visual question and its answer against the scene's objects."""
    phrases = {phrase: position for position, phrase in POSITIONS.items()}
    by_position = {o["position"]: o for o in objects}
    asked_position = re.fullmatch(r"What is (.+)\?", question)
    if asked_position:
        obj = by_position.get(phrases[asked_position.group(1)])
        if obj is None:
            return answer == f"There is nothing {asked_position.group(1)}."
        said_position = next(pos for phrase, pos in phrases.items() if phrase in answer.lower())
        return f"{obj['colour']} {obj['kind']}" in answer and said_position == obj["position"]
    asked_colour = re.fullmatch(r"What colour is the (.+)\?", question)
    if asked_colour:
        obj = next(o for o in objects if o["kind"] == asked_colour.group(1))
        return answer == f"The {obj['kind']} is {obj['colour']}."
    asked_kind = re.fullmatch(r"Is there an? (.+) in the image\?", question)
    assert asked_kind, question
    kind = asked_kind.group(1)
    present = [o for o in objects if o["kind"] == kind]
    if not present:
        return answer == f"No, there is no {kind}."
    return answer == f"Yes, there is a {present[0]['colour']} {kind} {POSITIONS[present[0]['position']]}."


def test_visual_questions_are_true_and_mixed_in_at_the_share_asked(tmp_path):
    from experiments.synthetic import write_sft

    write_sft(tmp_path / "mixed", n=300, seed=2, canvas=24, visual_questions=0.4)
    write_sft(tmp_path / "plain", n=300, seed=2, canvas=24)
    scenes = json.loads((tmp_path / "mixed" / "scenes.json").read_text())
    mixed = [json.loads(line) for line in (tmp_path / "mixed" / "sft.jsonl").read_text().splitlines()]
    plain = [json.loads(line) for line in (tmp_path / "plain" / "sft.jsonl").read_text().splitlines()]
    short = 0
    for row, base in zip(mixed, plain, strict=True):
        question = row["messages"][0]["content"][1]["text"]
        answer = row["messages"][1]["content"][0]["text"]
        if row == base:
            continue  # a description, the same as without the option
        short += 1
        assert _question_answer_is_true(question, answer, scenes[row["images"][0]]), (question, answer)
        assert any(k in question for k in KINDS) or "What is" in question
        assert not any(c in question for c in COLOURS)  # the question never gives the answer away
    assert 0.3 * 300 < short < 0.5 * 300
    # the images are the same: only some conversations change
    assert (tmp_path / "mixed" / "scenes.json").read_text() == (tmp_path / "plain" / "scenes.json").read_text()
    with pytest.raises(ValueError, match="visual_questions"):
        write_sft(tmp_path / "bad", n=2, visual_questions=1.5)


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_proof_pipeline_miniature(tmp_path):
    import yaml

    from experiments.proof import METHODS, METRICS, main

    config = tmp_path / "proof.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "seeds": [0],
                "out": str(tmp_path / "out"),
                "canvas": 24,
                "image_size": 24,
                "text_init_std": 0.1,
                "sft_items": 128,
                "sft_steps": 10,
                "sft_batch_size": 8,
                "sft_visual_questions": 0.5,
                "sft_grounding_steps": 3,
                "preference_items": 24,
                "eval_items": 12,
                "max_new_tokens": 24,
                "preference_overrides": {"learning_rate": 1.0e-4, "num_train_epochs": 1},
            }
        )
    )
    assert main(["--config", str(config)]) == 0
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    seed = results["seeds"][0]
    feedback = seed["feedback"]
    assert feedback["answers"] == 24
    assert feedback["pairs"] == 24 - feedback["answers_already_correct"] - feedback["answers_with_nothing_true"]
    for method in METHODS:
        metrics = seed["metrics"][method]
        assert metrics["responses"] == 12
        assert set(METRICS) <= set(results["summary"][method])
        # the reported length is the mean word count of the answers written to disk
        answers = [json.loads(line)["answer"] for line in (out / "seed0" / f"eval_answers_{method}.jsonl").open()]
        assert metrics["mean_length_words"] == pytest.approx(sum(len(a.split()) for a in answers) / len(answers))
    # both preference arms ran with the shared override
    for method in ("dpo", "dense_dpo"):
        assert Path(out / "seed0" / method / "config.json").is_file()
    assert (out / "results.png").stat().st_size > 0
    assert "Dense DPO" in (out / "results.md").read_text()
