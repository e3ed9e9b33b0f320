"""RL on TRL's RLOOTrainer: the reward model as a reward function, and one real step on tiny in-process VLMs."""

import pytest
import torch
from trl import ModelConfig
from trl.data_utils import prepare_multimodal_messages

from experiments.fact_rlhf_data import write_fact_rlhf_data
from rlhfv.reward.inputs import score_answers
from rlhfv.reward.loading import build_tiny_vlm, load_reward_model_and_processor, write_reward_settings
from rlhfv.reward.model import VisionRewardModel
from rlhfv.reward.prompts import load_rl_prompts
from rlhfv.rl.config import FactRLOOConfig, RLScriptArguments
from rlhfv.rl.reward_model import FactRewardModelFunction, split_prompt


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Synthetic RL prompts and a (random) reward model saved as `rlhfv reward` saves it."""
    root = tmp_path_factory.mktemp("fact_rl")
    write_fact_rlhf_data(root / "data", n_train=1, n_heldout=1, n_probe=1, n_rl=6, seed=0)
    vlm, processor = build_tiny_vlm("llava", seed=1)
    reward_model = VisionRewardModel.from_vlm(vlm)
    reward_model.save_pretrained(root / "rm")
    processor.save_pretrained(root / "rm")
    write_reward_settings(str(root / "rm"), "row", "FACTS:\n{facts}")
    return root


def test_rl_prompts_keep_the_answer_keys(world):
    dataset = load_rl_prompts(str(world / "data" / "rl_prompts.jsonl"))
    assert len(dataset) == 6
    assert {"prompt", "images", "facts", "yes_no_truth", "mc_answer"} <= set(dataset.column_names)
    for row in dataset:
        assert row["prompt"][0]["role"] == "user" and len(row["images"]) == 1 and row["facts"]
        assert row["yes_no_truth"] in (None, "yes", "no") and row["mc_answer"] in (None, "A", "B", "C")


def test_reward_function_scores_with_the_rows_facts(world):
    """TRL hands the reward function multimodal prompts and dataset columns; the score must equal scoring the same
    prompt, answer, image and facts directly, and change when the facts change."""
    model, processor, settings = load_reward_model_and_processor(str(world / "rm"))
    dataset = load_rl_prompts(str(world / "data" / "rl_prompts.jsonl"))
    rows = [dataset[0], dataset[1]]
    prompts = [prepare_multimodal_messages(row["prompt"], images=row["images"]) for row in rows]
    completions = [[{"role": "assistant", "content": "There is a red cup on the left."}]] * 2
    function = FactRewardModelFunction(model, processor, settings, batch_size=1)
    assert function.__name__ == "fact_reward_model"
    got = function(prompts, completions, facts=[row["facts"] for row in rows], images=[row["images"] for row in rows])
    expected = score_answers(
        model,
        processor,
        [row["prompt"] for row in rows],
        ["There is a red cup on the left."] * 2,
        [row["images"] for row in rows],
        [row["facts"] for row in rows],
        "FACTS:\n{facts}",
    )
    assert got == pytest.approx(expected, abs=1e-5)
    other = function(prompts[:1], completions[:1], facts=[["a black kite at the bottom"]], images=None)
    assert other[0] != pytest.approx(got[0], abs=1e-6)
    messages, images = split_prompt(prompts[0])
    assert messages == rows[0]["prompt"] and len(images) == 1


def test_one_rloo_step_changes_the_policy(world, tmp_path):
    from rlhfv.rl.cli import build_trainer

    script_args = RLScriptArguments(dataset_name=str(world / "data" / "rl_prompts.jsonl"))
    model_args = ModelConfig(model_name_or_path="tiny:llava")
    args = FactRLOOConfig(
        output_dir=str(tmp_path),
        reward_model_path=str(world / "rm"),
        num_generations=2,
        per_device_train_batch_size=2,
        max_completion_length=8,
        max_steps=1,
        learning_rate=1e-2,
        activation_checkpointing=False,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
    )
    trainer = build_trainer(script_args, args, model_args)
    assert trainer.beta == 0.1 and trainer.ref_model is not None  # KL to the starting policy
    names = [getattr(f, "__name__", "") for f in trainer.reward_funcs]
    assert names == [
        "fact_reward_model",
        "multiple_choice_bonus",
        "yes_no_rule",
        "length_penalty",
        "no_stop_token_penalty",
    ]
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    changed = [name for name, p in trainer.model.named_parameters() if not torch.equal(p, before[name])]
    assert changed, "one RLOO step left every parameter unchanged"
    # The reference (KL anchor) stays where it was: it is the saved starting policy
    reference = dict(trainer.ref_model.named_parameters())
    assert all(torch.equal(reference[name], before[name]) for name in reference)
    logs = trainer.state.log_history[0]
    for key in ("rewards/fact_reward_model/mean", "rewards/length_penalty/mean", "kl"):
        assert key in logs
    # Completion lengths are in [1, 8] tokens, so the length term is in [-10, -1.25]
    assert -10.0 <= logs["rewards/length_penalty/mean"] <= -1.25


def test_bad_prompt_rows_name_file_line_and_field(tmp_path):
    import json

    from data_tools.errors import CommandError

    path = tmp_path / "prompts.jsonl"
    rows = [
        {"question": "Is there a cup?", "yes_no_truth": "no"},
        {"question": "Is there a kite?", "yes_no_truth": "maybe"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(CommandError, match=r"prompts.jsonl, line 2, field 'yes_no_truth': expected yes, no or null"):
        load_rl_prompts(str(path))
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({"question": "Which? A. x B. y", "mc_answer": "B"}) + "\n")
    dataset = load_rl_prompts(str(path))
    assert dataset["id"] == ["prompts-1", "prompts-2"]  # no ids in the file: <stem>-<line>
    assert dataset["yes_no_truth"] == ["no", None] and dataset["mc_answer"] == [None, "B"]
    path.write_text(json.dumps({"question": "Q", "facts": ["f"]}) + "\n" + json.dumps({"question": "Q2"}) + "\n")
    with pytest.raises(CommandError, match="line 2, field 'facts': is missing"):
        load_rl_prompts(str(path))
