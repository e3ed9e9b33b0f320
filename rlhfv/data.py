"""Training data for a recipe: a converted dataset on disk, a Hub dataset, or raw files converted on the fly.

The result is the dense preference dataset of docs/data_format.md, split into train and (optional) eval. Raw input
is converted once: the converted dataset is saved under a folder named by the converter's fingerprint, and a later
run with the same input and options loads it instead of converting again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from data_tools.errors import CommandError


logger = logging.getLogger(__name__)

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")
SPAN_COLUMNS = ("chosen_spans", "rejected_spans")
# Written last into a cache folder: a folder without it is an interrupted conversion and is redone
COMPLETE_MARKER = "conversion_report.json"


def load_preference_data(script_args, training_args):
    """Return `(train_dataset, eval_dataset or None)` for the recipe, checked against the dataset contract."""
    if not script_args.dataset_name:
        raise CommandError(
            "no training data: set `dataset_name` in the recipe (a folder written by `rlhfv convert`, a Hub dataset "
            "id, or raw files together with `dataset_format`)"
        )
    if script_args.dataset_streaming:
        raise CommandError("`dataset_streaming: true` is not supported: Dense DPO needs a map-style dataset")

    _check_dataset_format(script_args.dataset_format)
    _check_local_path(script_args.dataset_name)
    if script_args.dataset_format:
        dataset = converted_dataset(script_args, training_args)
    else:
        dataset = _load_converted(script_args)

    dataset = _drop_token_columns(dataset, script_args.dataset_name)
    needs_spans = getattr(training_args, "segment_source", "spans") == "spans"
    for split_name, split in dataset.items() if isinstance(dataset, dict) else [(None, dataset)]:
        _check_columns(split, script_args.dataset_name, needs_spans)
        _check_rows(split, script_args.dataset_name, split_name, needs_spans)
    return _split(dataset, script_args, training_args)


def _check_dataset_format(name: str | None) -> None:
    """A `dataset_format` that names no reader fails here, with the choices and the nearest one."""
    import difflib

    from data_tools.formats import FORMAT_NAMES

    choices = ("auto", *FORMAT_NAMES)
    if name and name not in choices:
        close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise CommandError(f"`dataset_format`: unknown format {name!r}{hint}; choose from: {', '.join(choices)}")


LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet", ".arrow", ".csv")


def _check_local_path(name: str) -> None:
    """A `dataset_name` that is a path (not an `owner/name` Hub id) and does not exist fails as a missing path."""
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith(LOCAL_SUFFIXES)
    if not looks_local or os.path.exists(os.path.expanduser(name)):
        return
    from data_tools.sources import SOURCES

    made_by = [source.name for source in SOURCES.values() if name.rstrip("/").startswith(source.out)]
    hint = f"; `rlhfv data get {made_by[0]}` writes it" if made_by else ""
    where = "" if os.path.isabs(name) else f" (relative to {os.getcwd()})"
    raise CommandError(f"`dataset_name`: {name}: no such file or folder{where}{hint}")


def converted_dataset(script_args, training_args):
    """Convert the raw input named by `dataset_name` with `data_tools.convert`, or load the cached conversion.

    The main process converts while the others wait (`main_process_first`), so a multi-process launch converts once.
    """
    from datasets import load_from_disk

    from data_tools import convert as converter

    cache_root = Path(script_args.converted_dataset_dir or _default_cache_root())
    with training_args.main_process_first(desc="fetching the raw data"):
        inputs = [_raw_input_path(script_args, cache_root)]
    options = {
        "format": script_args.dataset_format,
        "image_root": script_args.image_root,
        "on_error": script_args.conversion_on_error,
    }
    if script_args.conversion_changes is not None:
        options["changes"] = script_args.conversion_changes
    try:
        fingerprint = converter.fingerprint(inputs, **options)
    except (FileNotFoundError, ValueError) as error:
        raise CommandError(f"`dataset_name`: {error}") from error
    cache_dir = cache_root / fingerprint

    with training_args.main_process_first(desc="converting the training data"):
        if (cache_dir / COMPLETE_MARKER).is_file():
            logger.info("Reusing the converted dataset in %s", cache_dir)
            return load_from_disk(str(cache_dir / "dataset"))
        return _convert_into(cache_dir, inputs, options, training_args, converter)


def _raw_input_path(script_args, cache_root: Path) -> str:
    """A local path for the converter: the input itself, or a Hub dataset's split saved to disk (once per version)."""
    name = script_args.dataset_name
    if os.path.exists(name):
        return name
    from datasets import load_dataset

    try:
        dataset = load_dataset(name, name=script_args.dataset_config, split=script_args.dataset_train_split)
    except Exception as error:  # datasets raises many kinds (offline, unknown dataset, bad split)
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise CommandError(
            f"`dataset_name`: {name} is not a local file or folder, and loading it from the Hub failed{offline}: "
            f"{error}"
        ) from error
    from rlhfv._compat import dataset_fingerprint

    # The fingerprint of a Hub dataset follows its cached files, so a new revision gets a new folder
    fingerprint = dataset_fingerprint(dataset)
    target = cache_root / "hub" / name.replace("/", "___") / f"{script_args.dataset_train_split}-{fingerprint}"
    if not (target / "dataset_info.json").is_file():
        scratch = target.with_name(target.name + f".tmp-{os.getpid()}")
        shutil.rmtree(scratch, ignore_errors=True)
        dataset.save_to_disk(str(scratch))
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)
    return str(target)


def _convert_into(cache_dir: Path, inputs, options, training_args, converter):
    from datasets import load_from_disk

    # Convert into a scratch folder, then rename: an interrupted run never leaves a folder that looks complete
    scratch = cache_dir.with_name(cache_dir.name + f".tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    logger.info("Converting %s (format %s) into %s", inputs, options["format"], cache_dir)
    try:
        result = converter.convert(
            inputs,
            rejects_path=str(scratch / "rejects.jsonl") if options["on_error"] == "skip" else None,
            num_proc=training_args.dataset_num_proc or 1,
            log=logger.info,
            cache_dir=str(scratch / "work"),
            **options,
        )
    except (FileNotFoundError, ValueError, KeyError) as error:
        shutil.rmtree(scratch, ignore_errors=True)
        raise CommandError(f"converting `dataset_name` {inputs[0]}: {error}") from error
    result.dataset.save_to_disk(str(scratch / "dataset"))
    del result.dataset
    shutil.rmtree(scratch / "work", ignore_errors=True)
    report = asdict(result.report)
    report["image_folders"] = sorted(report["image_folders"])
    (scratch / COMPLETE_MARKER).write_text(json.dumps(report, indent=2, default=str))
    shutil.rmtree(cache_dir, ignore_errors=True)
    scratch.rename(cache_dir)
    logger.info("Converted %s:\n%s", inputs[0], result.report.summary().replace(str(scratch), str(cache_dir)))
    return load_from_disk(str(cache_dir / "dataset"))


def _default_cache_root() -> str:
    from datasets import config

    return os.path.join(str(config.HF_DATASETS_CACHE), "rlhfv-converted")


def _load_converted(script_args):
    """Load a dataset already in the dense format: a `save_to_disk` folder, data files, or a Hub dataset id."""
    from datasets import load_dataset, load_from_disk

    from data_tools.outputs import looks_like_saved_dataset, saved_dataset_problem

    name = script_args.dataset_name
    if looks_like_saved_dataset(name):
        # A folder `save_to_disk` was interrupted in must never be read as "whatever shards are there"
        problem = saved_dataset_problem(name)
        if problem is not None:
            raise CommandError(
                f"`dataset_name`: {name} is not a complete saved dataset: {problem}. It was probably left by an "
                "interrupted save; convert the data again (`rlhfv convert ... --output "
                f"{name} --overwrite` replaces it)"
            )
        return load_from_disk(name)
    try:
        return load_dataset(name, name=script_args.dataset_config)
    except FileNotFoundError as error:
        raise CommandError(
            f"`dataset_name`: {name} is neither a converted dataset folder nor a dataset on the Hub ({error})"
        ) from error
    except Exception as error:  # datasets raises many kinds (offline, bad config, unknown builder)
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise CommandError(f"`dataset_name`: could not load {name}{offline}: {error}") from error


# Columns a tokenizer wrote (TRL's own names and the usual others): TRL tokenizes the text again and overwrites them
TOKEN_COLUMNS = {
    "input_ids",
    "attention_mask",
    "prompt_ids",
    "chosen_ids",
    "rejected_ids",
    "prompt_input_ids",
    "chosen_input_ids",
    "rejected_input_ids",
    "prompt_attention_mask",
    "chosen_attention_mask",
    "rejected_attention_mask",
    "labels",
    "chosen_labels",
    "rejected_labels",
}


def _drop_token_columns(dataset, name: str):
    """Token columns stored with the data (perhaps by another model's tokenizer) are dropped, with a warning: the
    text is what gets trained on, tokenized by this model's processor."""
    columns = next(iter(dataset.values())).column_names if isinstance(dataset, dict) else dataset.column_names
    found = sorted(TOKEN_COLUMNS & set(columns))
    if not found:
        return dataset
    logger.warning(
        "`dataset_name`: %s holds token columns %s, written by some tokenizer (perhaps another model's): they are "
        "dropped and the text is tokenized again with this model's processor",
        name,
        found,
    )
    return dataset.remove_columns(found)


def _split(dataset, script_args, training_args):
    from datasets import DatasetDict

    if isinstance(dataset, DatasetDict):
        if script_args.dataset_train_split not in dataset:
            raise CommandError(
                f"`dataset_train_split`: {script_args.dataset_name} has no split {script_args.dataset_train_split!r} "
                f"(it has {sorted(dataset)})"
            )
        train_dataset = dataset[script_args.dataset_train_split]
        test_split = dataset.get(script_args.dataset_test_split)
    else:
        train_dataset, test_split = dataset, None

    if training_args.eval_strategy == "no":
        return train_dataset, None
    if test_split is not None:
        return train_dataset, test_split
    if script_args.dataset_test_size is None:
        raise CommandError(
            f"evaluation is on (`eval_strategy: {training_args.eval_strategy}`) but {script_args.dataset_name} has no "
            f"split {script_args.dataset_test_split!r} (`dataset_test_split`): set `dataset_test_size` to hold out "
            "part of the training data, or `eval_strategy: no`"
        )
    size = script_args.dataset_test_size
    size = int(size) if size >= 1 else size
    try:
        splits = train_dataset.train_test_split(test_size=size, seed=training_args.seed)
    except ValueError as error:
        raise CommandError(f"`dataset_test_size`: {error}") from error
    return splits["train"], splits["test"]


def _check_columns(dataset, name: str, needs_spans: bool) -> None:
    required = PREFERENCE_COLUMNS + (SPAN_COLUMNS if needs_spans else ())
    missing = [column for column in required if column not in dataset.column_names]
    if missing:
        hint = (
            "it looks like raw data: set `dataset_format` (e.g. `auto`) to convert it first"
            if not set(PREFERENCE_COLUMNS) <= set(dataset.column_names)
            else "convert it with `rlhfv convert`, or set `segment_source: rlhfv_token_diff` to weigh tokens by "
            "diffing the token ids instead of reading spans"
        )
        raise CommandError(
            f"`dataset_name`: {name} lacks the column(s) {missing} of the dense preference format "
            f"(docs/data_format.md); {hint}"
        )
    if len(dataset) == 0:
        raise CommandError(f"`dataset_name`: {name} has no rows")


def _check_rows(dataset, name: str, split: str | None, needs_spans: bool) -> None:
    """Every row against the contract of docs/data_format.md, before any model is loaded: non-empty answers that
    differ, spans inside their answer and on word boundaries. Bad rows are named by id; none is dropped silently."""
    from data_tools.contract import contract_problems

    problems, bad = contract_problems(dataset, with_spans=needs_spans)
    if bad:
        where = f"{name}" + (f" (split {split!r})" if split else "")
        more = f"; and {bad - len(problems)} more" if bad > len(problems) else ""
        raise CommandError(
            f"`dataset_name`: {where} breaks the dataset contract (docs/data_format.md) in {bad} of {len(dataset)} "
            f"rows: {' | '.join(problems)}{more}. Fix or remove these rows (`rlhfv convert` writes only valid ones)."
        )
