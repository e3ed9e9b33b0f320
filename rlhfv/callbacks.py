"""Callbacks `rlhfv train` adds to the trainer."""

from __future__ import annotations

import os
from dataclasses import asdict

from rlhfv.recipe import plain_value


def recipe_to_wandb_callback(record, script_args, model_args):
    """A callback that adds the recipe to the W&B run's config (transformers' WandbCallback logs the rest)."""
    from transformers import TrainerCallback

    config = {
        "recipe": record.recipe,
        "recipe_file": record.recipe_file,
        "command": record.command,
        "script_args": plain_value(asdict(script_args)),
        "model_args": plain_value(asdict(model_args)),
    }

    class RecipeToWandbCallback(TrainerCallback):
        # Runs after WandbCallback.on_train_begin (reporting callbacks come first), when `wandb.run` exists
        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            import wandb

            if wandb.run is not None:
                wandb.config.update(config, allow_val_change=True)

    return RecipeToWandbCallback()


def run_file_callback(record):
    """A callback that writes the run's data and recipe into every checkpoint (`rlhfv.resume` compares them)."""
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    from rlhfv.resume import write_run_file

    class RunFileInCheckpoints(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            checkpoint = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
            if state.is_world_process_zero and os.path.isdir(checkpoint):
                write_run_file(checkpoint, record)

    return RunFileInCheckpoints()


def import_callback(spec: str):
    """`module:Class` -> an instance of that TrainerCallback (the recipe's `callbacks`)."""
    from data_tools.errors import CommandError
    from rlhfv.extensions import import_object, moved_to

    new = moved_to(spec.partition(":")[0])
    if new is not None:  # a recipe written before the research code left the package
        raise CommandError(f"`callbacks`: {spec} moved to {new}:{spec.partition(':')[2]}; name that in the recipe")
    try:
        return import_object(spec, what="`callbacks`")()
    except (CommandError, ImportError, AttributeError, ValueError, TypeError, FileNotFoundError) as error:
        raise CommandError(f"`callbacks`: cannot build {spec!r} (expected `module:Class`): {error}") from error
