"""RL with the fact-augmented reward: `rlhfv rl --config RECIPE.yaml [--field value ...]`, on TRL's `RLOOTrainer`.

The recipe's keys are fields of `RLScriptArguments` (prompts), `FactRLOOConfig` (a `trl.RLOOConfig`: generation,
`num_generations`, `beta`, ... plus the reward model and the symbolic rewards) and `trl.ModelConfig` (policy, dtype,
LoRA), parsed by `trl.TrlParser` as in TRL's scripts. Also runs as `python -m rlhfv.rl.cli` and under
`accelerate launch -m rlhfv.rl.cli`.

Why RLOO rather than GRPO: LLaVA-RLHF's PPO puts the KL to the SFT model into the reward (coefficient 0.1), and TRL's
`RLOOTrainer` does the same (`beta` x the sequence's KL is subtracted from the reward before the leave-one-out
baseline), whereas `GRPOTrainer` adds KL to the loss and defaults to none. RLOO's baseline (the mean reward of the
other samples of the same prompt) is unbiased and needs no value model, which PPO's critic did.

The reward of a completion is the reward model's score (`reward_model_path`) plus the symbolic rules that apply to
its row: multiple-choice bonus, the yes/no rule, the length term and the no-stop-token penalty (rlhfv/rl/symbolic.py).
A rule set to 0 is left out.
"""

from __future__ import annotations

import logging
import os
import sys

from data_tools.errors import CommandError
from rlhfv.recipe import parse_recipe


logger = logging.getLogger("rlhfv.rl")


def register(subparsers) -> None:
    from rlhfv.reward.passthrough import add_passthrough_parser

    add_passthrough_parser(
        subparsers, "rl", "RL (TRL's RLOO) with a fact-augmented reward model and symbolic rewards", main
    )


def dataclass_types() -> tuple:
    from trl import ModelConfig

    from rlhfv.rl.config import FactRLOOConfig, RLScriptArguments

    return (RLScriptArguments, FactRLOOConfig, ModelConfig)


def main(argv: list[str] | None = None, prog: str = "python -m rlhfv.rl.cli") -> int:
    # The same recipe checks as `rlhfv train`: unknown fields and flags, value types, blamed on file or command line
    recipe = parse_recipe(list(sys.argv[1:] if argv is None else argv), prog=prog, dataclass_types=dataclass_types())
    train(recipe.script_args, recipe.training_args, recipe.model_args)
    return 0


def build_reward_funcs(training_args, eos_token_ids: list[int]) -> list:
    """The reward model (when `reward_model_path` is set) and every symbolic rule whose weight is not 0."""
    from rlhfv.reward.loading import load_reward_model_and_processor
    from rlhfv.rl.reward_model import FactRewardModelFunction
    from rlhfv.rl.symbolic import LengthPenalty, MultipleChoiceBonus, NoStopTokenPenalty, YesNoRule

    funcs = []
    if training_args.reward_model_path:
        model, processor, settings = load_reward_model_and_processor(training_args.reward_model_path)
        funcs.append(FactRewardModelFunction(model, processor, settings, training_args.reward_model_batch_size))
    if training_args.multiple_choice_bonus:
        funcs.append(MultipleChoiceBonus(bonus=training_args.multiple_choice_bonus))
    if training_args.yes_no_reward and training_args.yes_no_scale:
        funcs.append(
            YesNoRule(
                no_reward=training_args.yes_no_reward,
                yes_reward=-training_args.yes_no_reward,
                scale=training_args.yes_no_scale,
            )
        )
    if training_args.length_penalty:
        funcs.append(LengthPenalty(training_args.max_completion_length, score=training_args.length_penalty))
    if training_args.no_stop_token_penalty:
        funcs.append(NoStopTokenPenalty(eos_token_ids, penalty=training_args.no_stop_token_penalty))
    if not funcs:
        raise CommandError("no reward: set `reward_model_path` or leave at least one symbolic reward non-zero")
    return funcs


def policy_and_processor(model_args, training_args):
    """`(model name or path, processor)`. A `tiny:` policy is built, saved under `output_dir/initial_policy` and
    named by that path, so that RLOO loads its reference (the KL anchor) from the same weights."""
    from rlhfv.reward.loading import TINY_PREFIX, build_tiny_vlm

    name = model_args.model_name_or_path
    if not name:
        raise CommandError("`model_name_or_path` is not set: give the SFT model (Hub id or folder) or tiny:llava")
    if name.startswith(TINY_PREFIX):
        model, processor = build_tiny_vlm(name[len(TINY_PREFIX) :], training_args.seed)
        path = os.path.join(training_args.output_dir, "initial_policy")
        model.save_pretrained(path)
        processor.save_pretrained(path)
        training_args.model_init_kwargs = None
        return path, processor
    from transformers import AutoProcessor

    kwargs = {"dtype": model_args.dtype, "attn_implementation": model_args.attn_implementation}
    training_args.model_init_kwargs = {
        **{key: value for key, value in kwargs.items() if value is not None},
        **(training_args.model_init_kwargs or {}),
    }
    try:
        processor = AutoProcessor.from_pretrained(name, padding_side="left")
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot load the processor of {name}: {error}") from error
    return name, processor


def build_trainer(script_args, training_args, model_args, callbacks=None):
    from trl import RLOOTrainer, get_peft_config

    from rlhfv.reward.prompts import load_rl_prompts
    from rlhfv.rl.reward_model import FactRewardModelFunction
    from rlhfv.rl.symbolic import NoStopTokenPenalty

    if not script_args.dataset_name:
        raise CommandError("no prompts: set `dataset_name` (a JSONL of {image, question, facts, ...})")
    from data_tools.outputs import check_training_output

    inputs = [script_args.dataset_name, script_args.image_root, model_args.model_name_or_path]
    check_training_output(training_args.output_dir, [*inputs, training_args.reward_model_path])
    dataset = load_rl_prompts(script_args.dataset_name, script_args.image_root)
    logger.info("RL prompts: %d", len(dataset))
    policy, processor = policy_and_processor(model_args, training_args)
    tokenizer = getattr(processor, "tokenizer", processor)
    reward_funcs = build_reward_funcs(training_args, [tokenizer.eos_token_id])
    trainer = RLOOTrainer(
        model=policy,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=get_peft_config(model_args),
        callbacks=callbacks,
    )
    for func in reward_funcs:
        if isinstance(func, NoStopTokenPenalty):
            # Every id that ends a completion for the trainer (the model may declare an end-of-turn token too)
            func.eos_token_ids = list(trainer.eos_token_ids)
        if isinstance(func, FactRewardModelFunction):
            func.model.to(trainer.accelerator.device)
    return trainer


def train(script_args, training_args, model_args, callbacks=None):
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level="INFO")
    trainer = build_trainer(script_args, training_args, model_args, callbacks)
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub()
    return trainer


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CommandError as error:
        print(f"rlhfv rl: error: {error}", file=sys.stderr)
        sys.exit(1)
