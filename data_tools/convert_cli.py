"""`rlhfv convert`: corrected answers or preference pairs -> a dense preference dataset on disk."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

from data_tools.export import EXPORT_FORMATS
from data_tools.formats import FORMAT_NAMES
from data_tools.segments import CHANGES_CHOICES, DEFAULT_CHANGES
from data_tools.settings import (
    OLD_OUTPUT_FLAGS,
    OUTPUT_FLAG,
    SettingError,
    add_settings_arguments,
    check_choice,
    check_range,
    read_settings,
)


DESCRIPTION = """\
Convert corrected answers or preference pairs into the dense preference dataset that `rlhfv train` reads (TRL's
conversational preference format plus `chosen_spans` / `rejected_spans`: the character spans that differ between
the two answers, which Dense DPO weighs by gamma). The dataset is written with `save_to_disk` to --output_dir.

formats (--format, default auto: detected per input from its columns, and printed):
  corrections   id, image | images, question, response, corrected   (chosen = corrected, rejected = response)
  pairs         id, image | images, question | prompt, chosen, rejected
  rlhf-v        RLHF-V-Dataset: text = JSON {question, chosen, rejected}, image {bytes, path}, ds_name, idx, ...
  rlaif-v       RLAIF-V-Dataset: question, chosen, rejected, image {bytes, path}, ds_name, idx, ...
  llava-rlhf    LLaVA-RLHF human preference: conversations, output_1, output_2, preference (1|2)

Inputs are JSONL, JSON, Parquet files or `datasets` folders. See docs/converter.md for the segment rules.

Outputs never replace inputs, and existing outputs are replaced only with --overwrite. Everything is written
beside its target under a temporary name and swapped in only when the whole conversion succeeded: a failed or
interrupted run leaves the previous outputs as they were.
"""

EPILOG = """\
examples:
  rlhfv convert corrections.jsonl --image-root images/ --output_dir data/dense
  rlhfv convert RLHF-V-Dataset.parquet --output_dir data/rlhf-v --to parquet --to jsonl
  rlhfv convert raw/*.jsonl --output_dir data/dense --on-error skip --num-proc 2
  rlhfv inspect data/dense --rows 5 --html pairs.html
"""

CHANGES_HELP = (
    "which edits get spans. 'all' (default) marks replacements, pure deletions (span in the rejected answer only) "
    "and pure insertions (span in the chosen answer only): deleting a hallucinated clause is the commonest "
    "correction, and those deleted words are exactly what the rejected answer should be penalised for. "
    "'replace-only' marks only words replaced by other words, as RLHF-V's public training code weighs them."
)


@dataclass
class ConvertSettings:
    """Every option of `rlhfv convert` (read by the settings parser: flags or a `--config` YAML file)."""

    inputs: list[str] = field(
        default_factory=list,
        metadata={
            "positional": True,
            "nargs": "+",
            "metavar": "INPUT",
            "help": "JSONL, JSON or Parquet files, or datasets folders",
        },
    )
    output: str = field(
        default="",
        metadata={
            "required": True,
            "flag": OUTPUT_FLAG,
            "deprecated": OLD_OUTPUT_FLAGS,
            "metavar": "DIR",
            "help": "folder to save the dataset to",
        },
    )
    format: str = field(
        default="auto",
        metadata={"choices": ("auto", *FORMAT_NAMES), "help": "input layout (auto: detected per input)"},
    )
    image_root: str | None = field(
        default=None,
        metadata={
            "metavar": "DIR",
            "help": "folder that relative image paths start from (default: the folder of each input file)",
        },
    )
    changes: str = field(default=DEFAULT_CHANGES, metadata={"choices": CHANGES_CHOICES, "help": CHANGES_HELP})
    on_error: str = field(
        default="fail",
        metadata={
            "choices": ("fail", "skip"),
            "help": "'fail': stop with exit code 1 at the first bad row; 'skip': leave bad rows out and list each one "
            "with its reason in the rejects file",
        },
    )
    rejects: str | None = field(
        default=None,
        metadata={"metavar": "FILE", "help": "rejects file for --on-error skip (default: <output_dir>.rejects.jsonl)"},
    )
    to: list[str] = field(
        default_factory=list,
        metadata={
            "append": True,
            "choices": EXPORT_FORMATS,
            "help": "also write <output_dir>.parquet (images embedded) or <output_dir>.jsonl (images as files in "
            "<output_dir>_images/); repeat for both",
        },
    )
    num_proc: int = field(default=1, metadata={"metavar": "N", "help": "worker processes"})
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "replace existing outputs (a saved dataset at --output_dir, exports, the rejects file); the new "
            "outputs are written beside them and swapped in only when the conversion succeeded"
        },
    )
    strict_paths: bool = field(
        default=False,
        metadata={
            "help": "reject rows whose image path leads outside the image root ('..', absolute paths, symlinks out); "
            "by default such paths are followed, which suits trusted data whose images live in several folders"
        },
    )
    no_progress: bool = field(default=False, metadata={"help": "no progress bar"})

    def __post_init__(self):
        if not self.inputs:
            raise SettingError("`inputs` must name at least one file or folder")
        check_choice("format", self.format, ("auto", *FORMAT_NAMES))
        check_choice("changes", self.changes, CHANGES_CHOICES)
        check_choice("on_error", self.on_error, ("fail", "skip"))
        for kind in self.to:
            check_choice("to", kind, EXPORT_FORMATS)
        check_range("num_proc", self.num_proc, minimum=1)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="turn corrections or preference pairs into a dense preference dataset",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_arguments(parser, ConvertSettings)
    parser.set_defaults(func=run)


def _targets(args: argparse.Namespace, output: str) -> list[tuple[str, str, str]]:
    """(label, path, kind) of everything this run writes; kind as in `data_tools.outputs.check_replaceable`."""
    targets = [("--output_dir", output, "dataset")]
    for kind in dict.fromkeys(args.to):
        targets.append((f"--to {kind}", f"{output}.{kind}", "file"))
        if kind == "jsonl":
            targets.append(("--to jsonl image folder", f"{output}_images", "images"))
    if args.on_error == "skip":
        targets.append(("--rejects", args.rejects or f"{output}.rejects.jsonl", "file"))
    return targets


def run(arguments: argparse.Namespace) -> int:
    from data_tools.convert import convert
    from data_tools.errors import CommandError, ConversionError
    from data_tools.outputs import StagedPath, check_not_inputs

    (args,) = read_settings(arguments, ConvertSettings)
    output = os.path.normpath(args.output)
    targets = _targets(args, output)
    _check_before_reading(args, targets)
    staged = {path: StagedPath(path) for _, path, _ in targets}
    dataset_stage = staged[output]
    rejects_target = targets[-1][1] if args.on_error == "skip" else None
    work = StagedPath(f"{output}.work")
    try:
        try:
            os.makedirs(dataset_stage.path)
        except OSError as error:
            raise CommandError(f"--output_dir {output}: cannot write beside it ({error.strerror})") from None
        try:
            result = convert(
                args.inputs,
                format=args.format,
                image_root=args.image_root,
                on_error=args.on_error,
                rejects_path=staged[rejects_target].path if rejects_target else None,
                changes=args.changes,
                num_proc=args.num_proc,
                progress=not args.no_progress,
                log=lambda line: print(f"format: {line}"),
                strict_paths=args.strict_paths,
                cache_dir=work.path,
            )
        except ConversionError as error:
            raise CommandError(str(error)) from None
        report = result.report
        if rejects_target:
            report.rejects_path = rejects_target
        print(report.summary())
        if report.written == 0:
            if rejects_target:  # the rejects are the explanation: deliver them
                staged[rejects_target].commit()
            raise CommandError(f"no pair written: all {report.read} rows were rejected; nothing saved to {output}")
        folder_targets = {label: path for label, path, kind in targets if kind != "file"}
        check_not_inputs(
            folder_targets, sorted(report.image_folders), "image folder of the input rows", inside_inputs=False
        )
        result.dataset.save_to_disk(dataset_stage.path)
        from datasets import load_from_disk

        saved = load_from_disk(dataset_stage.path)  # images embedded: exports do not read the image folders again
        _write_exports(saved, args.to, output, staged)
        del saved, result
        # All written: swap the outputs in (each rename is atomic; the dataset goes last)
        for _, path, _ in reversed(targets):
            staged[path].commit()
    finally:
        for stage in staged.values():
            stage.discard()
        work.discard()
    print(f"saved {report.written} pairs to {output}")
    for kind in dict.fromkeys(args.to):
        print(f"wrote {output}.{kind}")
    return 0


def _check_before_reading(args, targets) -> None:
    """Everything that could lose data or fail late, checked before the first row is read."""
    from data_tools.errors import CommandError
    from data_tools.outputs import check_not_inputs, check_replaceable, check_writable_folder, resolved

    missing = [path for path in args.inputs if not os.path.exists(path)]
    if missing:
        raise CommandError(f"input {missing[0]}: no such file or folder")
    check_not_inputs({f"{label}": path for label, path, _ in targets}, args.inputs)
    if len({resolved(path) for _, path, _ in targets}) < len(targets):
        raise CommandError("--rejects names the same path as another output; name another file")
    for label, path, kind in targets:
        check_replaceable(label, path, kind, args.overwrite)
        check_writable_folder(label, path)


def _write_exports(saved, kinds, output: str, staged: dict) -> None:
    """The --to exports of the saved dataset, each into its staged path."""
    from data_tools.export import write_jsonl, write_parquet

    for kind in dict.fromkeys(kinds):
        target = f"{output}.{kind}"
        if kind == "jsonl":
            image_folder_name = f"{os.path.basename(output)}_images"
            write_jsonl(saved, staged[target].path, staged[f"{output}_images"].path, image_folder_name)
        else:
            write_parquet(saved, staged[target].path)
