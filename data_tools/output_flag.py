"""The one name of every command's output flag: `--output_dir` (also `--output-dir`).

TRL and transformers users already type `--output_dir` for `rlhfv train`, `rlhfv reward` and `rlhfv rl` (it is a
`TrainingArguments` field), so the other commands take the same name, whether their output is a folder or one file.
The names used before (`--out`, `--output`, `-o`) keep working and print a deprecation warning. It lives in
`data_tools` because `rlhfv convert` is defined here and `data_tools` imports nothing from `rlhfv`.
"""

from __future__ import annotations

import argparse
import sys


OUTPUT_FLAG = "output_dir"
OLD_OUTPUT_FLAGS = ("--out", "--output", "-o")


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class _Output(argparse.Action):
    """The output flag in every spelling; the old spellings warn."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string in OLD_OUTPUT_FLAGS:
            warn(f"{option_string} is deprecated; use --{OUTPUT_FLAG}")
        setattr(namespace, self.dest, values)


def add_output_argument(parser, dest: str = "out", required: bool = False, help: str = "", metavar: str = "PATH"):
    """The one output flag, `--output_dir` (also `--output-dir`), for a command whose settings are still plain
    argparse options; `--out`, `--output` and `-o` keep working with a warning."""
    spellings = [f"--{OUTPUT_FLAG}", f"--{OUTPUT_FLAG.replace('_', '-')}", *OLD_OUTPUT_FLAGS]
    help = f"{help} (--out, --output, -o: old spellings, deprecated)"
    parser.add_argument(
        *spellings, dest=dest, required=required, default=None, metavar=metavar, help=help, action=_Output
    )
