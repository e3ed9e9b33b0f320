"""The `rlhfv` program: one entry point, one subcommand per job.

Each subcommand lives in its own module, which exposes `register(subparsers)`: it adds its parser and sets
`func=callable(args) -> int` as the parser's default. Modules keep heavy imports (torch, trl) inside their functions
so that `rlhfv --help` answers at once.

`CommandError` (defined in `data_tools.errors`, re-exported here) is the one-line failure every subcommand raises.

Exit codes: 0 success, 1 the command ran and failed (bad data, bad settings, failed training), 2 usage error (an
unknown flag, named with the closest known one), 141 its output went to a pipe that closed (`rlhfv ... | head`).
Expected failures are one line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from data_tools.errors import CommandError
from data_tools.settings import UsageError
from rlhfv import __version__


# subcommand -> module that registers it; listed in the order `--help` shows them
COMMANDS = {
    "data": "data_tools.data_cli",
    "convert": "data_tools.convert_cli",
    "inspect": "data_tools.inspect",
    "train": "rlhfv.train",
    "eval": "rlhfv.eval.cli",
    "feedback": "rlhfv.feedback.cli",
    "feedback-pairs": "rlhfv.feedback.pairs_cli",
    "iterate": "rlhfv.iterate",
    "reward": "rlhfv.reward.cli",
    "reward-pairs": "rlhfv.reward.pairs_cli",
    "rl": "rlhfv.rl.cli",
    "bench": "bench.run",
}


def _add_source_checkout_to_path() -> None:
    """Make `bench` importable from a source checkout: it ships with the repository, not with the package."""
    root = Path(__file__).resolve().parents[1]
    if (root / "bench" / "run.py").is_file() and str(root) not in sys.path:
        sys.path.append(str(root))


class CommandParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line, and whose sub-commands (built with the same class) name
    themselves in the parsed arguments, so that an unknown flag is checked against the right command's options."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_defaults(command_parser=self)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="rlhfv",
        description="Train vision-language models and LLMs to hallucinate less, from segment-level corrections.",
    )
    parser.add_argument("--version", action="version", version=f"rlhfv {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    _add_source_checkout_to_path()
    for module_name in COMMANDS.values():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            # A subcommand whose module is not part of this install (e.g. `bench` outside a source checkout)
            if error.name and module_name.startswith(error.name):
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    # `train` hands every remaining argument to TRL's parser, which has its own --help
    if argv and argv[0] == "train":
        args, rest = parser.parse_known_args(argv)
        args.train_argv = rest
    else:
        args, extras = parser.parse_known_args(argv)
        if extras:
            from data_tools.settings import unknown_flag_message

            args.command_parser.error(unknown_flag_message(args.command_parser, extras))
    try:
        return int(args.func(args) or 0)
    except UsageError as error:  # a required setting not given: exit 2, as argparse's own usage errors
        args.command_parser.error(str(error))
    except CommandError as error:
        print(f"{args.command_parser.prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{args.command_parser.prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _stdout_closed()


def _stdout_closed() -> int:
    """The reader of our output went away (`rlhfv ... | head`): end quietly, as a Unix tool killed by SIGPIPE does.
    stdout is pointed at /dev/null so that the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


if __name__ == "__main__":
    sys.exit(main())
