"""Recipes: YAML files of settings parsed with TRL's `TrlParser` into the three dataclasses of `rlhfv train`
(also `rlhfv reward` and `rlhfv rl`). Keys and values are checked by the same functions as every other command's
settings (data_tools/settings.py); TRL's parser stays for these three because their settings are `TrainingArguments`.

`DenseDPOScriptArguments` (data), `DenseDPOConfig` (every `trl.DPOConfig` field plus Dense DPO's) and `trl.ModelConfig`
(model, dtype, LoRA, quantization). Command-line flags override the recipe. Every key is checked against the
dataclasses first (known field, value of the field's type), so a typo fails with the field named and the closest
match, instead of being ignored or failing deep inside argparse.
"""

from __future__ import annotations

import argparse
import os
import typing
from dataclasses import dataclass, field, fields
from enum import Enum

from data_tools.errors import CommandError
from data_tools.settings import matches, suggestion, type_name


DESCRIPTION = (
    "Train a model with Dense DPO from a recipe: rlhfv train --config RECIPE.yaml [--field value ...]. Every field of "
    "the recipe can be given or overridden on the command line; all TRL / transformers training options work."
)


@dataclass
class Recipe:
    """A parsed and checked recipe."""

    script_args: typing.Any
    training_args: typing.Any
    model_args: typing.Any
    path: str | None = None
    # The fields set by the recipe file or the command line, with their final values
    resolved: dict = field(default_factory=dict)


def make_parser(prog: str | None = None, dataclass_types: tuple | None = None, description: str = DESCRIPTION):
    """TRL's parser for `(script arguments, training config, trl.ModelConfig)`; Dense DPO's three by default."""
    from trl import ModelConfig, TrlParser

    if dataclass_types is None:
        from rlhfv.config import DenseDPOConfig
        from rlhfv.script_args import DenseDPOScriptArguments

        dataclass_types = (DenseDPOScriptArguments, DenseDPOConfig, ModelConfig)
    parser = TrlParser(
        dataclass_types, prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.help_hint = f"`{prog or 'rlhfv train'} --help` lists the fields"
    from rlhfv.help_groups import group_recipe_help

    group_recipe_help(parser, dataclass_types)
    return parser


def parse_recipe(argv: list[str], prog: str | None = None, dataclass_types: tuple | None = None) -> Recipe:
    """Parse a recipe and command-line overrides into the three dataclasses, with one-line errors naming the field.

    TrlParser sets the recipe's values as parser defaults; argparse converts string defaults with the field's type,
    but leaves other YAML values (numbers, lists, booleans) as they are, so they are checked here against the
    dataclass annotations first.
    """
    import yaml

    parser = make_parser(prog, dataclass_types)
    path = None
    file_values: dict = {}
    if "--config" in argv:
        index = argv.index("--config")
        if index + 1 >= len(argv):
            raise CommandError("--config needs the path of a recipe YAML file")
        path = argv[index + 1]
        if not os.path.isfile(path):
            raise CommandError(f"recipe not found: {path}")
        try:
            with open(path) as handle:
                file_values = yaml.safe_load(handle) or {}
        except yaml.YAMLError as error:
            raise CommandError(f"{path}: not valid YAML: {error}") from error
        if not isinstance(file_values, dict):
            raise CommandError(f"{path}: a recipe must be a YAML mapping of field: value")
        check_recipe_values(parser, {k: v for k, v in file_values.items() if k != "env"}, source=path)

    check_command_line_flags(parser, argv)
    flags = _flags_given(parser, argv)
    source = " + ".join(part for part in (path, "command line" if flags or not path else None) if part)
    try:
        script_args, training_args, model_args = parser.parse_args_and_config(argv)
    except (ValueError, TypeError) as error:
        raise CommandError(f"{source}: {error}") from error
    except ImportError as error:
        raise CommandError(f"{source}: {error} (DeepSpeed: pip install -e '.[deepspeed]')") from error

    _apply_thread_count()
    recipe = Recipe(script_args, training_args, model_args, path=path)
    given = [key for key in file_values if key != "env"] + flags
    recipe.resolved = resolve_values(recipe, given)
    return recipe


def check_command_line_flags(parser, argv: list[str]) -> None:
    """Every `--flag` of the command line names a field: an unknown one fails here, blamed on the command line."""
    known = [option for option in parser._option_string_actions if option.startswith("--")]
    for token in argv:
        if not token.startswith("--"):
            continue
        flag = token.split("=", 1)[0]
        if flag not in ("--config", "--help") and flag not in parser._option_string_actions:
            raise CommandError(f"command line: unknown option `{flag}`{suggestion(flag, known)}; {parser.help_hint}")


def apply_recipe_env(env: dict | None) -> None:
    """Apply a recipe's `env:` section to the whole process now, so that every stage of a command (not only the one
    whose parser reads the section) runs with it: `rlhfv iterate` calls this with its train section's env before
    its SFT, sampling, labeling and evaluation stages. Like TRL's parser, the recipe's value replaces the shell's."""
    for key, value in (env or {}).items():
        os.environ[str(key)] = str(value)
    _apply_thread_count()


def _apply_thread_count() -> None:
    """Honour OMP_NUM_THREADS set by the recipe's `env:` section, which TrlParser applies after torch started."""
    value = os.environ.get("OMP_NUM_THREADS")
    if value and value.isdigit() and int(value) > 0:
        import torch

        if torch.get_num_threads() != int(value):
            torch.set_num_threads(int(value))


def check_recipe_values(parser, values: dict, source: str) -> None:
    """Check every recipe key against the parser: known field, value of the field's type (and choice)."""
    known = _field_annotations(parser)
    for key, value in values.items():
        if key not in known:
            raise CommandError(f"{source}: unknown field `{key}`{suggestion(key, known)}; {parser.help_hint}")
        action = parser._option_string_actions.get(f"--{key}")
        if isinstance(value, str) and action is not None:
            _check_string_value(key, value, action, source)
        elif value is not None and not matches(value, known[key]):
            raise CommandError(
                f"{source}: field `{key}` expects {type_name(known[key])}, got {type(value).__name__} {value!r}"
            )


def _check_string_value(key, value, action, source):
    converted = value
    if action.type is not None and action.type is not str:
        try:
            converted = action.type(value)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as error:
            raise CommandError(f"{source}: field `{key}`: invalid value {value!r} ({error})") from error
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(str(getattr(c, "value", c)) for c in action.choices)
        raise CommandError(f"{source}: field `{key}`: {value!r} is not one of: {choices}")


def _field_annotations(parser) -> dict:
    annotations = {}
    for dataclass_type in parser.dataclass_types:
        try:
            hints = typing.get_type_hints(dataclass_type)
        except Exception:  # an annotation that cannot be resolved is not checked
            hints = {}
        for item in fields(dataclass_type):
            if item.init:
                annotations[item.name] = hints.get(item.name, typing.Any)
    return annotations


def _flags_given(parser, argv: list[str]) -> list[str]:
    dests = []
    for token in argv:
        if not token.startswith("--") or token == "--config":
            continue
        action = parser._option_string_actions.get(token.split("=", 1)[0])
        if action is not None and action.dest != "help":
            dests.append(action.dest)
    return dests


def resolve_values(recipe: Recipe, keys: list[str]) -> dict:
    """Final values of the given fields, in a YAML-friendly form (the recipe as it actually ran)."""
    resolved = {}
    for key in dict.fromkeys(keys):
        for args in (recipe.script_args, recipe.training_args, recipe.model_args):
            if hasattr(args, key):
                resolved[key] = plain_value(getattr(args, key))
                break
    return resolved


def plain_value(value):
    """A value in a YAML- and JSON-friendly form (enums by value, other objects as strings)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [plain_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain_value(item) for key, item in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
