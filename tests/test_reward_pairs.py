"""Reward-ranked pairs: best vs worst of N scored samples -> dense preference rows that `rlhfv train` reads."""

import argparse
import json

import pytest
import yaml

from data_tools.contract import check_row
from data_tools.convert import dataset_features
from rlhfv.reward.pairs import PairReport, best_and_worst, build_pair, pairs_dataset


PROMPT = [{"role": "user", "content": "Describe the image."}]


def test_best_and_worst_with_ties():
    assert best_and_worst([0.5, -1.0, 2.0]) == (2, 1)
    assert best_and_worst([1.0, 1.0, 0.0, 0.0]) == (0, 2)  # the first one on ties


def test_pair_is_best_vs_worst_with_word_spans():
    report = PairReport()
    samples = ["There is a red cup.", "There is a blue cup.", "There is a red cup at the top."]
    pair = build_pair({"id": "p1", "prompt": PROMPT, "facts": ["a red cup"]}, samples, [0.5, -1.0, 2.0], 1.0, report)
    assert pair["chosen"] == [{"role": "assistant", "content": "There is a red cup at the top."}]
    assert pair["rejected"] == [{"role": "assistant", "content": "There is a blue cup."}]
    # By hand: "red" replaces "blue" (chars 11-14 / 11-15), "at the top" is inserted (chars 19-29 of the chosen)
    assert pair["chosen_spans"] == [[11, 14], [19, 29]]
    assert pair["rejected_spans"] == [[11, 15]]
    assert (pair["chosen_score"], pair["rejected_score"]) == (2.0, -1.0)
    assert pair["facts"] == ["a red cup"] and pair["prompt"] == PROMPT
    assert (report.prompts, report.pairs, report.skipped) == (1, 1, {})


def test_prompts_without_a_pair_are_reported():
    report = PairReport()
    assert build_pair({"id": "a", "prompt": PROMPT}, ["A cup.", "A kite."], [1.0, 0.5], 1.0, report) is None
    assert build_pair({"id": "b", "prompt": PROMPT}, ["A cup.", "A  cup."], [3.0, 0.0], 1.0, report) is None
    assert build_pair({"id": "c", "prompt": PROMPT}, ["A cup."], [3.0], 1.0, report) is None
    assert report.skipped == {"below_margin": 1, "same_answer": 1, "fewer_than_two_samples": 1}
    assert report.skipped_ids == {"below_margin": ["a"], "same_answer": ["b"], "fewer_than_two_samples": ["c"]}
    assert report.summary() == "3 prompts -> 0 pairs; skipped: 1 below_margin, 1 fewer_than_two_samples, 1 same_answer"
    with pytest.raises(ValueError, match="2 samples but 1 scores"):
        build_pair({"id": "d", "prompt": PROMPT}, ["x", "y"], [1.0], 0.0, report)


def test_dataset_has_the_dense_format(tmp_path):
    from datasets import load_from_disk

    report = PairReport()
    pair = build_pair({"id": "p", "prompt": PROMPT}, ["A red cup.", "A blue cup."], [1.0, -1.0], 0.5, report)
    pairs_dataset([pair]).save_to_disk(str(tmp_path))
    dataset = load_from_disk(str(tmp_path))
    assert set(dataset_features(with_images=False)) <= set(dataset.column_names)
    check_row(dataset[0], "row 0", with_spans=True)  # the contract `rlhfv train` checks


def test_command_with_given_samples_feeds_dense_dpo(tmp_path):
    """`rlhfv reward-pairs` on rows that carry samples, then one Dense DPO step on its output with `rlhfv train`."""
    from experiments.fact_rlhf_data import write_fact_rlhf_data
    from rlhfv.cli import main
    from rlhfv.reward.loading import build_tiny_vlm, write_reward_settings
    from rlhfv.reward.model import VisionRewardModel

    data = tmp_path / "data"
    write_fact_rlhf_data(data, n_train=1, n_heldout=1, n_probe=1, n_rl=4)
    rows = [json.loads(line) for line in (data / "rl_prompts.jsonl").read_text().splitlines()]
    for row in rows:
        row["samples"] = ["There is a red cup on the left.", "There is a blue kite on the left.", "A cup."]
    prompts = data / "with_samples.jsonl"
    prompts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    vlm, processor = build_tiny_vlm("llava", seed=2)
    VisionRewardModel.from_vlm(vlm).save_pretrained(tmp_path / "rm")
    processor.save_pretrained(tmp_path / "rm")
    write_reward_settings(str(tmp_path / "rm"), "row", "F: {facts}")

    out = tmp_path / "pairs"
    argv = [
        "reward-pairs",
        "--prompts",
        str(prompts),
        "--reward-model",
        str(tmp_path / "rm"),
        "--output_dir",
        str(out),
    ]
    assert main([*argv, "--margin", "0"]) == 0
    report = json.loads((out / "pair_report.json").read_text())
    assert (report["prompts"], report["pairs"]) == (4, 4)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and all(len(s["scores"]) == 3 and s["paired"] for s in samples)

    recipe = tmp_path / "dpo.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": "tiny:llava",
                "dataset_name": str(out),
                "per_device_train_batch_size": 2,
                "max_steps": 1,
                "max_length": 512,
                "activation_checkpointing": False,
                "use_cpu": True,
                "bf16": False,
                "eval_strategy": "no",
                "save_strategy": "no",
                "report_to": "none",
                "output_dir": str(tmp_path / "dpo"),
            }
        )
    )
    assert main(["train", "--config", str(recipe)]) == 0
    assert (tmp_path / "dpo" / "model.safetensors").is_file()

    # No samples and no policy: a one-line error
    from data_tools.errors import CommandError
    from rlhfv.reward.pairs_cli import run

    args = argparse.Namespace(
        prompts=str(data / "rl_prompts.jsonl"), reward_model=str(tmp_path / "rm"), n=4, out=str(tmp_path / "none")
    )
    with pytest.raises(CommandError, match="4 rows have no `samples`; give --policy"):
        run(args)
