"""Subcommands whose arguments all go to `trl.TrlParser` (`rlhfv reward`, `rlhfv rl`).

The subparser takes no options of its own: with `+` as its only prefix character, `--config`, `--help` and every
other flag are collected as plain words and handed to the command's own parser, which knows the recipe's fields.
"""

from __future__ import annotations


def add_passthrough_parser(subparsers, name: str, help_text: str, main) -> None:
    parser = subparsers.add_parser(name, help=help_text, add_help=False, prefix_chars="+")
    parser.add_argument("argv", nargs="*", help="the recipe (--config FILE) and field overrides (--field value)")
    parser.set_defaults(func=lambda args: main(args.argv, prog=f"rlhfv {name}"))
