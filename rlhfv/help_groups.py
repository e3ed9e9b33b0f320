"""`--help` of the recipe commands: rlhfv's own fields first, in named groups, before TRL's and transformers' hundreds.

TRL's parser puts every field of every dataclass in one "options" list, so the few fields that make `rlhfv train`
Dense DPO (gamma, score_average, segment_source, ...) came after about 900 lines of transformers options. Here the
script arguments and the fields the training config adds over its TRL base class get groups of their own, shown
first; everything else follows under "TRL / transformers / model options".
"""

from __future__ import annotations

import argparse
import dataclasses


def own_fields(config_class) -> set[str]:
    """Fields a config dataclass adds over its nearest base dataclass from another package (TRL, transformers)."""
    package = config_class.__module__.split(".")[0]
    for base in config_class.__mro__[1:]:
        if dataclasses.is_dataclass(base) and base.__module__.split(".")[0] != package:
            return {f.name for f in dataclasses.fields(config_class)} - {f.name for f in dataclasses.fields(base)}
    return {f.name for f in dataclasses.fields(config_class)}


def group_help(parser: argparse.ArgumentParser, groups: list[tuple[str, set[str]]]) -> None:
    """Move the options whose destination is in each set into a group of that title, listed before all others."""
    new_groups = []
    for title, names in groups:
        group = parser.add_argument_group(title)
        for old in parser._action_groups:  # argparse keeps no public way to move an option between groups
            if old is group:
                continue
            moving = [action for action in old._group_actions if action.dest in names]
            for action in moving:
                old._group_actions.remove(action)
                group._group_actions.append(action)
        new_groups.append(group)
    rest = [g for g in parser._action_groups if g not in new_groups]
    for group in rest:
        if group.title == "options":
            group.title = "TRL / transformers / model options"
    parser._action_groups[:] = [rest[0], *new_groups, *rest[1:]] if rest else new_groups


def group_recipe_help(parser: argparse.ArgumentParser, dataclass_types: tuple) -> None:
    """Script arguments and the training config's own fields first (see the module docstring)."""
    script, config = dataclass_types[0], dataclass_types[1]
    # argparse's generated usage line lists every option (about 170 lines); the fields follow below anyway
    parser.usage = "%(prog)s --config RECIPE.yaml [--FIELD VALUE ...]"
    group_help(
        parser,
        [
            (f"{config.__name__} (rlhfv's own training fields)", own_fields(config)),
            (f"{script.__name__} (data, recipe and run)", {f.name for f in dataclasses.fields(script)}),
        ],
    )
