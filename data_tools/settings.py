"""The one way every `rlhfv` command reads its settings: dataclasses in TRL's field style, from YAML and flags.

A command describes its settings as one or more dataclasses whose fields carry `metadata={"help": ...}` (TRL's
style). `add_settings_arguments` turns each field into a flag (`--field_name`, also spelled `--field-name`) plus
`--config FILE.yaml`; `read_settings` reads the YAML, checks every key (a known field, with the closest one
suggested for a typo; a value of the field's type), lets the flags override it, and builds the dataclasses, whose
`__post_init__` checks every value's range. Every failure is one line naming the file or the command line and the
field (`SettingError`, a `CommandError`).

It lives in `data_tools`, at the bottom of the import graph (as `CommandError` does), so that `rlhfv convert` and
`rlhfv inspect`, defined here, use it too. `rlhfv train`, `rlhfv reward` and `rlhfv rl` keep TRL's `TrlParser` (their settings are `transformers`
`TrainingArguments`); `rlhfv.recipe` checks their keys with the same functions as here.

Field metadata understood besides `help`:
- `required`: the field must be given (flag or YAML key).
- `flag`: the public name when it differs from the field's (the output flag `output_dir` of a field named `out`).
- `deprecated`: old flag spellings (`--out`, `-o`) and YAML keys that still work and print a warning.
- `choices`: allowed values.
- `positional`: the field is a positional argument (`nargs` in the metadata).
- `append`: a list field whose flag repeats (`--to parquet --to jsonl`).
- `aliases`: more spellings of the flag (`-n`).
- `yaml_only`: no flag (nested mappings such as `rlhfv iterate`'s `feedback:` block).
"""

from __future__ import annotations

import argparse
import difflib
import math
import sys
import types
import typing
from dataclasses import MISSING, field, fields
from enum import Enum
from pathlib import Path

from data_tools.errors import CommandError


# ---- the one output flag -----------------------------------------------------------------------------------------
# TRL and transformers users already type `--output_dir` for `rlhfv train`, `rlhfv reward` and `rlhfv rl` (a
# `TrainingArguments` field), so every other command takes the same name, whether its output is a folder or one
# file. The names used before (`--out`, `--output`, `-o`) keep working and print a deprecation warning.
OUTPUT_FLAG = "output_dir"
OLD_OUTPUT_FLAGS = ("--out", "--output", "-o")


class UsageError(CommandError):
    """A required setting not given: a usage error, exit code 2, as argparse's own."""


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class _Output(argparse.Action):
    """The output flag in every spelling; the old spellings warn."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string in OLD_OUTPUT_FLAGS:
            warn(f"{option_string} is deprecated; use --{OUTPUT_FLAG}")
        setattr(namespace, self.dest, values)


def output_field(help_text: str, required: bool = False, default: str | None = None):
    """A settings field for the one output flag, `--output_dir` (field name `out`); `--out`, `--output` and `-o`
    still work with a warning."""
    metadata = {"flag": OUTPUT_FLAG, "deprecated": ("out", *OLD_OUTPUT_FLAGS), "help": help_text}
    return field(default=default, metadata={**metadata, "required": required})


def add_output_argument(parser, dest: str = "out", required: bool = False, help: str = "", metavar: str = "PATH"):
    """The one output flag, `--output_dir` (also `--output-dir`), for a command whose settings are still plain
    argparse options; `--out`, `--output` and `-o` keep working with a warning."""
    spellings = [f"--{OUTPUT_FLAG}", f"--{OUTPUT_FLAG.replace('_', '-')}", *OLD_OUTPUT_FLAGS]
    help = f"{help} (--out, --output, -o: old spellings, deprecated)"
    parser.add_argument(
        *spellings, dest=dest, required=required, default=None, metavar=metavar, help=help, action=_Output
    )


class SettingError(CommandError, ValueError):
    """A setting out of its range: one line naming the field (a ValueError for callers that build configs in code,
    as TRL's configs raise; a CommandError for the `rlhfv` program)."""


# ---- range checks used by every config's __post_init__ ---------------------------------------------------------
def check_range(name: str, value, minimum=None, maximum=None, *, above=None, below=None, optional=False) -> None:
    """Refuse a value that is not finite or lies outside its range, naming the field and the range.

    `minimum`/`maximum` are inclusive bounds, `above`/`below` exclusive ones. `optional`: None is allowed."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingError(f"`{name}` must be a number; got {value!r}")
    parts = []
    if minimum is not None:
        parts.append(f">= {minimum}")
    if above is not None:
        parts.append(f"> {above}")
    if maximum is not None:
        parts.append(f"<= {maximum}")
    if below is not None:
        parts.append(f"< {below}")
    allowed = " and ".join(parts) or "finite"
    if not math.isfinite(value):
        raise SettingError(f"`{name}` must be a finite number ({allowed}); got {value}")
    if (
        (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
        or (above is not None and value <= above)
        or (below is not None and value >= below)
    ):
        raise SettingError(f"`{name}` must be {allowed}; got {value}")


def check_training_ranges(args) -> None:
    """The numbers every `transformers.TrainingArguments` has (train, reward, rl), checked before any model loads:
    transformers leaves nan, negative or zero values to fail deep in the run, or to train nothing without a word."""
    check_range("learning_rate", args.learning_rate, minimum=0)
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        check_range(name, getattr(args, name), minimum=1)
    check_range("num_train_epochs", args.num_train_epochs, minimum=0)
    check_range("max_steps", args.max_steps, minimum=-1)  # -1: run num_train_epochs
    check_range("warmup_steps", args.warmup_steps, minimum=0)  # below 1: a share of the steps
    check_range("weight_decay", args.weight_decay, minimum=0)
    check_range("max_grad_norm", args.max_grad_norm, minimum=0)  # 0: no clipping
    check_range("adam_beta1", args.adam_beta1, minimum=0, below=1)
    check_range("adam_beta2", args.adam_beta2, minimum=0, below=1)
    check_range("adam_epsilon", args.adam_epsilon, minimum=0)
    for name in ("logging_steps", "save_steps", "eval_steps"):
        check_range(name, getattr(args, name, None), above=0, optional=True)
    check_range("save_total_limit", args.save_total_limit, minimum=1, optional=True)
    check_range("dataloader_num_workers", args.dataloader_num_workers, minimum=0)


def check_choice(name: str, value, choices, optional=False) -> None:
    if value is None and optional:
        return
    if value not in choices:
        raise SettingError(f"`{name}` must be one of {', '.join(map(str, choices))}; got {value!r}")


# ---- type checks of YAML values (also used by rlhfv.recipe) ------------------------------------------------------
def suggestion(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


def matches(value, annotation) -> bool:
    """Whether a YAML value fits a dataclass annotation; lenient where the annotation is unusual."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin is list or annotation is list:
        return isinstance(value, list) and (not args or all(matches(item, args[0]) for item in value))
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in args
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return isinstance(value, annotation) or value in {member.value for member in annotation}
    return True


def type_name(annotation) -> str:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


# ---- flags ---------------------------------------------------------------------------------------------------------
def public_name(item) -> str:
    return item.metadata.get("flag", item.name)


def _base_type(annotation):
    """`int | None` -> int; a plain annotation stays as it is."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    return annotation


class _Deprecated(argparse.Action):
    """An old spelling of a flag: stores like the new one, with a warning naming the new one."""

    def __init__(self, option_strings, dest, new_flag, **kwargs):
        self.new_flag = new_flag
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        warn(f"{option_string} is deprecated; use {self.new_flag}")
        setattr(namespace, self.dest, values)


def _default_text(item) -> str:
    if item.default is not MISSING:
        return f" (default: {item.default})"
    return ""


def add_settings_arguments(parser: argparse.ArgumentParser, *dataclass_types) -> None:
    """`--config` plus one flag per field of every dataclass (default unset, so the YAML underneath shows). The
    parser's default `settings_types` names the dataclasses, which tests/test_cli_settings.py checks for every
    command."""
    parser.add_argument("--config", default=None, metavar="FILE", help="YAML file of settings (flags override it)")
    parser.set_defaults(settings_types=dataclass_types)
    for dataclass_type in dataclass_types:
        hints = typing.get_type_hints(dataclass_type)
        for item in fields(dataclass_type):
            if item.init and not item.metadata.get("yaml_only"):
                _add_field(parser, item, hints[item.name])


def _add_field(parser, item, annotation) -> None:
    name = public_name(item)
    help_text = item.metadata.get("help", "") + _default_text(item)
    base = _base_type(annotation)
    common = {"dest": item.name, "default": argparse.SUPPRESS, "help": help_text}
    if item.metadata.get("choices"):
        common["choices"] = item.metadata["choices"]
    if item.metadata.get("positional"):
        parser.add_argument(
            item.name, nargs=item.metadata.get("nargs"), metavar=item.metadata.get("metavar"), help=help_text
        )
        return
    spellings = list(dict.fromkeys([f"--{name}", f"--{name.replace('_', '-')}", *item.metadata.get("aliases", ())]))
    if base is bool:
        # no value after the flag (`--overwrite`, `--no-overwrite`), so that a positional argument can follow it
        parser.add_argument(*spellings, action="store_true", **common)
        negatives = dict.fromkeys([f"--no_{name}", f"--no-{name.replace('_', '-')}"])
        parser.add_argument(
            *negatives, dest=item.name, action="store_false", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        return
    kwargs = dict(common)
    if typing.get_origin(base) is list:
        item_type = typing.get_args(base)[0] if typing.get_args(base) else str
        # `append`: the flag repeats (`--to parquet --to jsonl`); otherwise it takes several values at once
        kwargs.update(type=item_type, **({"action": "append"} if item.metadata.get("append") else {"nargs": "+"}))
    elif base in (int, float, str):
        kwargs["type"] = base
    if "choices" not in kwargs or "metavar" in item.metadata:  # argparse lists the choices itself
        kwargs.setdefault("metavar", item.metadata.get("metavar", name.upper()))
    parser.add_argument(*spellings, **kwargs)
    for old in item.metadata.get("deprecated", ()):
        if old.startswith("-"):
            parser.add_argument(
                old, action=_Deprecated, new_flag=spellings[0], **{**kwargs, "help": argparse.SUPPRESS}
            )


# ---- reading -------------------------------------------------------------------------------------------------------
def read_yaml(path: str | Path, section: str | None = None) -> dict:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise CommandError(f"{file}: no such settings file")
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise CommandError(f"{file}: not valid YAML: {' '.join(str(error).split())}") from None
    if section and isinstance(values, dict) and isinstance(values.get(section), dict):
        values = values[section]
    if not isinstance(values, dict):
        raise CommandError(f"{file}: settings must be a YAML mapping of field: value")
    return values


def check_values(values: dict, *dataclass_types, source: str, hint: str = "") -> dict:
    """`values` with deprecated keys renamed (with a warning), after checking every key and every value's type.
    Keys may be a field's name or its public name."""
    by_key, annotations = {}, {}
    for dataclass_type in dataclass_types:
        hints = typing.get_type_hints(dataclass_type)
        for item in fields(dataclass_type):
            if not item.init:
                continue
            annotations[item.name] = hints.get(item.name, typing.Any)
            for key in (item.name, public_name(item)):
                by_key[key] = item.name
            for old in item.metadata.get("deprecated", ()):
                if not old.startswith("-"):
                    by_key.setdefault(old, item.name)
    checked = {}
    for key, value in values.items():
        if key not in by_key:
            raise CommandError(f"{source}: unknown field `{key}`{suggestion(str(key), by_key)}{hint}")
        name = by_key[key]
        public = next(public_name(f) for t in dataclass_types for f in fields(t) if f.name == name)
        if key != public:
            warn(f"{source}: `{key}` is deprecated; use `{public}`")
        if value is not None and not matches(value, annotations[name]):
            expected = type_name(annotations[name])
            raise CommandError(f"{source}: field `{key}` expects {expected}, got {type(value).__name__} {value!r}")
        checked[name] = value
    return checked


def read_settings(args: argparse.Namespace, *dataclass_types, section: str | None = None) -> tuple:
    """The dataclasses from `--config` (if given) and the flags, checked; one-line errors naming the source."""
    path = getattr(args, "config", None)
    values = {}
    if path:
        values = check_values(read_yaml(path, section), *dataclass_types, source=str(path))
    flags = {}
    for dataclass_type in dataclass_types:
        for item in fields(dataclass_type):
            if hasattr(args, item.name) and item.init:
                flags[item.name] = getattr(args, item.name)
    values.update(flags)
    source = " + ".join(part for part in (str(path) if path else None, "command line" if flags else None) if part)
    built = []
    for dataclass_type in dataclass_types:
        own = {f.name: values[f.name] for f in fields(dataclass_type) if f.init and f.name in values}
        for item in fields(dataclass_type):
            if item.metadata.get("required") and own.get(item.name) in (None, ""):
                name = public_name(item)
                raise UsageError(f"--{name} is required (or `{name}:` in the --config file)")
        try:
            built.append(dataclass_type(**own))
        except SettingError as error:
            raise SettingError(f"{source or 'settings'}: {error}") from None
        except (TypeError, ValueError) as error:
            raise CommandError(f"{source or 'settings'}: {error}") from None
    return tuple(built)


# ---- unknown flags: named with the closest known one ------------------------------------------------------------
def unknown_flag_message(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    flags = [token for token in extras if token.startswith("-")]
    if not flags:
        return f"unrecognized arguments: {' '.join(extras)}"
    known = [
        option for action in parser._actions for option in action.option_strings if action.help != argparse.SUPPRESS
    ]
    flag = flags[0].split("=", 1)[0]
    return f"unknown option `{flag}`{suggestion(flag, known)}"
