"""Train a fact-augmented reward model: `rlhfv reward --config RECIPE.yaml [--field value ...]`.

The recipe's keys are fields of `RewardScriptArguments` (data), `FactRewardConfig` (a `trl.RewardConfig`: every
training option, plus `facts` and `facts_template`) and `trl.ModelConfig` (model, dtype, LoRA), parsed by
`trl.TrlParser` as in TRL's own scripts; flags override the recipe. Also runs as `python -m rlhfv.reward.cli` and
under `accelerate launch -m rlhfv.reward.cli`.

`model_name_or_path` is an image-text-to-text model (Hub id or folder; its LM head is replaced by a scalar head),
a reward model saved by this command (training continues), or `tiny:llava` (built in-process).

The output folder holds the reward model (LoRA adapters merged), its processor, `fact_rlhf_reward.json` (facts mode
and template, which `rlhfv rl` and `rlhfv reward-pairs` reuse), metrics and `data_report.json`.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from data_tools.errors import CommandError
from rlhfv.recipe import parse_recipe


logger = logging.getLogger("rlhfv.reward")


def register(subparsers) -> None:
    from rlhfv.reward.passthrough import add_passthrough_parser

    add_passthrough_parser(
        subparsers, "reward", "train a (fact-augmented) vision-language reward model from a recipe", main
    )


def dataclass_types() -> tuple:
    from trl import ModelConfig

    from rlhfv.reward.config import FactRewardConfig, RewardScriptArguments

    return (RewardScriptArguments, FactRewardConfig, ModelConfig)


def main(argv: list[str] | None = None, prog: str = "python -m rlhfv.reward.cli") -> int:
    # The same recipe checks as `rlhfv train`: unknown fields and flags, value types, blamed on file or command line
    recipe = parse_recipe(list(sys.argv[1:] if argv is None else argv), prog=prog, dataclass_types=dataclass_types())
    train(recipe.script_args, recipe.training_args, recipe.model_args)
    return 0


def build_model(model_args, training_args):
    """`(reward model, processor)` from `model_name_or_path` (see the module docstring)."""
    from rlhfv.reward.loading import load_reward_model_and_processor, load_vlm
    from rlhfv.reward.model import VisionRewardModel, is_reward_model_dir

    name = model_args.model_name_or_path
    if not name:
        raise CommandError("`model_name_or_path` is not set: give a VLM (Hub id or folder) or tiny:llava")
    if os.path.isdir(name) and is_reward_model_dir(name):
        model, processor, _ = load_reward_model_and_processor(name, dtype=model_args.dtype)
        return model.train(), processor
    kwargs = {}
    if not name.startswith("tiny:"):
        kwargs = {"dtype": model_args.dtype, "attn_implementation": model_args.attn_implementation}
        kwargs = {key: value for key, value in kwargs.items() if value is not None}
    vlm, processor = load_vlm(name, seed=training_args.seed, **kwargs)
    return VisionRewardModel.from_vlm(vlm), processor


def peft_config_for_reward_model(model_args):
    """TRL's LoRA settings, with the scalar head trained in full (it starts from random) and no task wrapper.

    PEFT's task wrappers (CAUSAL_LM, SEQ_CLS) pass arguments a VLM reward model does not take; the plain wrapper
    forwards the batch as it is.
    """
    from trl import get_peft_config

    peft_config = get_peft_config(model_args)
    if peft_config is None:
        return None
    peft_config.task_type = None
    modules = list(peft_config.modules_to_save or [])
    if "score" not in modules:
        peft_config.modules_to_save = [*modules, "score"]
    return peft_config


def train(script_args, training_args, model_args):
    """Train, save (merged) and evaluate; returns the trainer."""
    import torch

    from rlhfv.reward.data import load_reward_data
    from rlhfv.reward.facts import load_template
    from rlhfv.reward.loading import write_reward_settings
    from rlhfv.reward.trainer import VisionRewardTrainer

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level="INFO")
    if not script_args.dataset_name:
        raise CommandError("no training data: set `dataset_name` (LLaVA-RLHF-style JSONL with `facts`, or a folder)")
    from data_tools.outputs import check_training_output

    inputs = [script_args.dataset_name, script_args.eval_dataset_name, script_args.image_root]
    check_training_output(
        training_args.output_dir, [*inputs, script_args.image_captions, model_args.model_name_or_path]
    )
    use_facts = training_args.facts != "none"
    try:
        template = load_template(training_args.facts_template)
    except ValueError as error:
        raise CommandError(str(error)) from error

    train_dataset, train_report = load_reward_data(
        script_args.dataset_name, use_facts, script_args.image_root, script_args.on_error, script_args.image_captions
    )
    logger.info("Training data: %s", train_report.summary())
    eval_dataset, eval_report = None, None
    if script_args.eval_dataset_name:
        eval_dataset, eval_report = load_reward_data(
            script_args.eval_dataset_name,
            use_facts,
            script_args.image_root,
            script_args.on_error,
            script_args.image_captions,
        )
        logger.info("Evaluation data: %s", eval_report.summary())

    model, processor = build_model(model_args, training_args)
    trainer = VisionRewardTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processor=processor,
        peft_config=peft_config_for_reward_model(model_args),
    )
    result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.log_metrics("train", result.metrics)
    trainer.save_metrics("train", result.metrics)
    trainer.save_state()

    if eval_dataset is not None:
        # Before merging LoRA adapters, while the trainer's model is the one it trained
        with torch.no_grad():
            metrics = trainer.evaluate()
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)

    output_dir = training_args.output_dir
    if hasattr(trainer.model, "merge_and_unload"):
        # One self-contained folder for `rlhfv rl` and `rlhfv reward-pairs`: the adapters merged into the weights
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        if trainer.is_world_process_zero():
            merged.save_pretrained(output_dir)
            processor.save_pretrained(output_dir)
    else:
        trainer.save_model(output_dir)
    if trainer.is_world_process_zero():
        write_reward_settings(output_dir, training_args.facts, template)
        reports = {"train": vars(train_report), "eval": vars(eval_report) if eval_report else None}
        with open(os.path.join(output_dir, "data_report.json"), "w") as handle:
            json.dump(reports, handle, indent=1)
    if training_args.push_to_hub:
        trainer.push_to_hub()
    return trainer


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CommandError as error:
        print(f"rlhfv reward: error: {error}", file=sys.stderr)
        sys.exit(1)
