"""Checks of the datasets handed to `DenseDPOTrainer` that fail or narrow a run before training starts.

Span columns are validated (no image is decoded) and pairs without any changed segment are counted; tokenized text
pairs that `max_length` cuts to the same tokens carry no preference and are left out, reported by id.
"""

from __future__ import annotations

import logging

from datasets import Dataset

from .changed_tokens import scan_span_columns


# Reported under the trainer's logger: these messages are part of building a DenseDPOTrainer
logger = logging.getLogger("rlhfv.trainer")


def check_span_columns(train_dataset, eval_dataset) -> None:
    """Bad spans fail before any model work; image columns are not decoded."""
    datasets = {"train": train_dataset}
    if isinstance(eval_dataset, dict):
        datasets.update({f"eval[{k}]": v for k, v in eval_dataset.items()})
    elif eval_dataset is not None:
        datasets["eval"] = eval_dataset
    for name, dataset in datasets.items():
        if isinstance(dataset, Dataset):
            stats = scan_span_columns(dataset, name)
            if stats["pairs_without_changes"]:
                logger.warning(
                    f"{stats['pairs_without_changes']} of {stats['pairs']} pairs of the {name} dataset have no "
                    "changed segment: they train as plain DPO (logged as dense/pairs_without_changes)."
                )


def drop_pairs_identical_after_truncation(dataset: Dataset, args, dataset_name: str) -> Dataset:
    """Drop (and report) tokenized rows whose chosen and rejected sequences `max_length` cuts to the same tokens.

    Such a pair carries no preference: its loss is ln 2 with a zero gradient at every step. TRL's collator cuts
    prompt + answer per sequence (`keep_start`: the first `max_length` tokens, `keep_end`: the last).
    """
    keep = slice(None, args.max_length) if args.truncation_mode == "keep_start" else slice(-args.max_length, None)
    columns = [c for c in ("id", "prompt_ids", "chosen_ids", "rejected_ids") if c in dataset.column_names]
    identical = []
    for index, row in enumerate(dataset.select_columns(columns)):
        prompt = list(row["prompt_ids"])
        if (prompt + list(row["chosen_ids"]))[keep] == (prompt + list(row["rejected_ids"]))[keep]:
            identical.append(index)
    if not identical:
        return dataset
    ids = dataset.select(identical[:5])["id"] if "id" in dataset.column_names else identical[:5]
    shown = ", ".join(repr(i) for i in ids) + (", ..." if len(identical) > 5 else "")
    message = (
        f"max_length={args.max_length} ({args.truncation_mode}) cuts the chosen and rejected answers of "
        f"{len(identical)} of {len(dataset)} rows of the {dataset_name} dataset to the same tokens (rows {shown}): "
        "they carry no preference (loss ln 2, zero gradient). Raise max_length to keep them."
    )
    if len(identical) == len(dataset):
        raise ValueError(
            message.replace("Raise max_length to keep them.", "Nothing is left to train on: raise max_length.")
        )
    logger.warning(message + " They are left out of training.")
    dropped = set(identical)
    return dataset.select([i for i in range(len(dataset)) if i not in dropped])
