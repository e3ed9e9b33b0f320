"""Resuming a run: which checkpoint to continue from, and what changed since it was written.

A checkpoint is complete once `trainer_state.json` is in it: transformers writes that file last (after the weights,
optimizer, scheduler and RNG states), so a run killed while saving leaves a folder without it, which is skipped with a
warning in favour of the last complete one. Settings that change what is learned (gamma, beta, the data, ...) are
compared with the checkpoint's `training_args.bin` and `rlhfv_run.json` (written by `rlhfv train` into every
checkpoint), and each difference is named in a warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from data_tools.errors import CommandError


logger = logging.getLogger(__name__)

RUN_FILE = "rlhfv_run.json"
# Settings whose change makes a resumed run something other than a continuation of the interrupted one
COMPARED_SETTINGS = (
    "gamma",
    "beta",
    "score_average",
    "segment_source",
    "sft_weight",
    "loss_type",
    "max_length",
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "seed",
)


def checkpoints_by_step(output_dir: str | os.PathLike) -> list[Path]:
    """The `checkpoint-<step>` folders of `output_dir`, newest first."""
    folders = [path for path in Path(output_dir).glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", path.name)]
    return sorted((path for path in folders if path.is_dir()), key=lambda path: int(path.name.split("-")[1]))[::-1]


def is_complete(checkpoint: str | os.PathLike) -> bool:
    return (Path(checkpoint) / "trainer_state.json").is_file()


def resolve_checkpoint(training_args) -> str | None:
    """`resume_from_checkpoint`: true (or "true") = the last complete `checkpoint-*` in `output_dir`; a path = it."""
    value = training_args.resume_from_checkpoint
    if value is None or value is False or str(value).lower() in ("", "false", "no", "none", "0"):
        return None
    if value is True or str(value).lower() in ("true", "yes", "1", "last"):
        found = checkpoints_by_step(training_args.output_dir) if os.path.isdir(training_args.output_dir) else []
        if not found:
            raise CommandError(
                f"`resume_from_checkpoint: true` but {training_args.output_dir} (`output_dir`) holds no checkpoint-* "
                "folder: start without it, or give the checkpoint's path"
            )
        for checkpoint in found:
            if is_complete(checkpoint):
                return str(checkpoint)
            logger.warning(
                "Skipping %s: it has no trainer_state.json (the run was stopped while saving it); resuming from the "
                "last complete checkpoint instead. Delete the folder to silence this.",
                checkpoint,
            )
        raise CommandError(
            f"`resume_from_checkpoint: true` but no checkpoint in {training_args.output_dir} is complete (none has "
            "trainer_state.json): start without it"
        )
    if not os.path.isdir(value):
        raise CommandError(f"`resume_from_checkpoint`: {value} is not a checkpoint folder")
    if not is_complete(value):
        raise CommandError(
            f"`resume_from_checkpoint`: {value} has no trainer_state.json (it was not completely written): give a "
            "complete checkpoint, or `true` for the last complete one"
        )
    return str(value)


def changed_settings(checkpoint: str | os.PathLike, training_args, dataset_name: str | None) -> list[str]:
    """`name: before -> now` for each compared setting (and the dataset) that differs from the checkpoint's."""
    import torch

    changes = []
    saved_args_file = Path(checkpoint) / "training_args.bin"
    if saved_args_file.is_file():
        # Written by this project's own trainer into its own checkpoint (a pickled DenseDPOConfig)
        saved = torch.load(saved_args_file, weights_only=False)
        for name in COMPARED_SETTINGS:
            before, now = getattr(saved, name, None), getattr(training_args, name, None)
            if before != now:
                changes.append(f"{name}: {before!r} -> {now!r}")
    run_file = Path(checkpoint) / RUN_FILE
    if run_file.is_file():
        before = json.loads(run_file.read_text()).get("dataset")
        if before != dataset_name:
            changes.append(f"dataset_name: {before!r} -> {dataset_name!r}")
    return changes


def warn_on_changed_settings(checkpoint: str, training_args, dataset_name: str | None) -> list[str]:
    changes = changed_settings(checkpoint, training_args, dataset_name)
    if changes:
        logger.warning(
            "Resuming from %s with settings that differ from the run that wrote it: %s. The weights, optimizer state "
            "and schedule continue from the checkpoint, so the result is neither run. Resume with the same settings, "
            "or start a new run in another output_dir.",
            checkpoint,
            "; ".join(changes),
        )
    return changes


def write_run_file(checkpoint: str | os.PathLike, record) -> None:
    """What `changed_settings` compares beyond the training arguments: the data the run trained on."""
    payload = {"dataset": record.dataset, "dataset_format": record.dataset_format, "recipe": record.recipe}
    Path(checkpoint, RUN_FILE).write_text(json.dumps(payload, indent=2, default=str))
