"""`rlhfv convert`: corrected answers or preference pairs -> a dense preference dataset on disk."""

from __future__ import annotations

import argparse
import os
import shutil


DESCRIPTION = """\
Convert corrected answers or preference pairs into the dense preference dataset that `rlhfv train` reads (TRL's
conversational preference format plus `chosen_spans` / `rejected_spans`: the character spans that differ between
the two answers, which Dense DPO weighs by gamma). The dataset is written with `save_to_disk` to --output.

formats (--format, default auto: detected per input from its columns, and printed):
  corrections   id, image | images, question, response, corrected   (chosen = corrected, rejected = response)
  pairs         id, image | images, question | prompt, chosen, rejected
  rlhf-v        RLHF-V-Dataset: text = JSON {question, chosen, rejected}, image {bytes, path}, ds_name, idx, ...
  rlaif-v       RLAIF-V-Dataset: question, chosen, rejected, image {bytes, path}, ds_name, idx, ...
  llava-rlhf    LLaVA-RLHF human preference: conversations, output_1, output_2, preference (1|2)

Inputs are JSONL, JSON, Parquet files or `datasets` folders. See docs/converter.md for the segment rules.
"""

EPILOG = """\
examples:
  rlhfv convert corrections.jsonl --image-root images/ --output data/dense
  rlhfv convert RLHF-V-Dataset.parquet --output data/rlhf-v --to parquet --to jsonl
  rlhfv convert raw/*.jsonl --output data/dense --on-error skip --num-proc 2
  rlhfv inspect data/dense --rows 5 --html pairs.html
"""

CHANGES_HELP = (
    "which edits get spans. 'all' (default) marks replacements, pure deletions (span in the rejected answer only) "
    "and pure insertions (span in the chosen answer only): deleting a hallucinated clause is the commonest "
    "correction, and those deleted words are exactly what the rejected answer should be penalised for. "
    "'replace-only' marks only words replaced by other words, as RLHF-V's public training code weighs them."
)


def register(subparsers) -> None:
    from data_tools.export import EXPORT_FORMATS
    from data_tools.formats import FORMAT_NAMES
    from data_tools.segments import CHANGES_CHOICES, DEFAULT_CHANGES

    parser = subparsers.add_parser(
        "convert",
        help="turn corrections or preference pairs into a dense preference dataset",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="JSONL, JSON or Parquet files, or datasets folders")
    parser.add_argument("--output", "-o", required=True, metavar="DIR", help="folder to save the dataset to")
    parser.add_argument(
        "--format", default="auto", choices=("auto", *FORMAT_NAMES), help="input layout (default: auto-detect)"
    )
    parser.add_argument(
        "--image-root",
        metavar="DIR",
        help="folder that relative image paths start from (default: the folder of each input file)",
    )
    parser.add_argument("--changes", default=DEFAULT_CHANGES, choices=CHANGES_CHOICES, help=CHANGES_HELP)
    parser.add_argument(
        "--on-error",
        default="fail",
        choices=("fail", "skip"),
        help="'fail' (default): stop with exit code 1 at the first bad row; "
        "'skip': leave bad rows out and list each one with its reason in the rejects file",
    )
    parser.add_argument(
        "--rejects", metavar="FILE", help="rejects file for --on-error skip (default: <output>.rejects.jsonl)"
    )
    parser.add_argument(
        "--to",
        action="append",
        default=[],
        choices=EXPORT_FORMATS,
        help="also write <output>.parquet (images embedded) or <output>.jsonl (images as files in "
        "<output>_images/); repeat for both",
    )
    parser.add_argument("--num-proc", type=int, default=1, metavar="N", help="worker processes (default: 1)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing dataset at --output (refused otherwise)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _check_output(output: str, overwrite: bool) -> None:
    from data_tools.errors import CommandError

    if not os.path.exists(output):
        return
    if not os.path.isdir(output):
        raise CommandError(f"--output {output} is a file; name a folder")
    if not os.listdir(output):
        return
    is_dataset = any(os.path.isfile(os.path.join(output, name)) for name in ("state.json", "dataset_dict.json"))
    if not overwrite:
        raise CommandError(f"--output {output} already exists and is not empty; pass --overwrite to replace it")
    if not is_dataset:
        raise CommandError(
            f"--output {output} is a non-empty folder that is not a saved dataset; refusing to replace it"
        )
    shutil.rmtree(output)


def run(args: argparse.Namespace) -> int:
    from data_tools.convert import convert
    from data_tools.errors import CommandError, ConversionError
    from data_tools.export import write_jsonl, write_parquet

    output = os.path.normpath(args.output)
    _check_output(output, args.overwrite)
    if args.num_proc < 1:
        raise CommandError(f"--num-proc must be at least 1, got {args.num_proc}")
    rejects = args.rejects or f"{output}.rejects.jsonl"
    if args.on_error == "skip" and os.path.dirname(rejects):
        os.makedirs(os.path.dirname(rejects), exist_ok=True)
    try:
        result = convert(
            args.inputs,
            format=args.format,
            image_root=args.image_root,
            on_error=args.on_error,
            rejects_path=rejects if args.on_error == "skip" else None,
            changes=args.changes,
            num_proc=args.num_proc,
            progress=not args.no_progress,
            log=lambda line: print(f"format: {line}"),
        )
    except ConversionError as error:
        raise CommandError(str(error)) from None
    report = result.report
    print(report.summary())
    if report.written == 0:
        raise CommandError(f"no pair written: all {report.read} rows were rejected; nothing saved to {output}")
    result.dataset.save_to_disk(output)
    print(f"saved {report.written} pairs to {output}")
    writers = {"parquet": write_parquet, "jsonl": write_jsonl}
    for kind in dict.fromkeys(args.to):
        print(f"wrote {writers[kind](result.dataset, f'{output}.{kind}')}")
    return 0
