"""`rlhfv feedback`: instructions -> sampled answers -> claims -> questions -> labels -> scores -> the dense
preference dataset, every stage saved and resumable (docs/feedback.md).

    rlhfv feedback --prompts prompts.jsonl --policy outputs/sft --out feedback/round1 --labeler self
    rlhfv feedback --config recipes/synthetic/rlaif_v/feedback.yaml --out /tmp/fb
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

from data_tools.errors import CommandError
from rlhfv.feedback.config import FeedbackConfig


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per `FeedbackConfig` field, default None (unset), so YAML values underneath are not overridden."""
    hints = typing.get_type_hints(FeedbackConfig)
    for f in dataclasses.fields(FeedbackConfig):
        kind = hints[f.name]
        default = f.default
        help_text = f"{f.metadata.get('help', '')} (default: {default})"
        if kind is bool:
            parser.add_argument(_flag(f.name), dest=f.name, default=None, action=argparse.BooleanOptionalAction,
                                help=help_text)  # fmt: skip
            continue
        base = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
        parser.add_argument(_flag(f.name), dest=f.name, default=None, type=base, help=help_text)


def config_from_args(args) -> FeedbackConfig:
    import yaml

    values = {}
    if getattr(args, "config", None):
        path = Path(args.config)
        if not path.is_file():
            raise CommandError(f"{path}: no such recipe file")
        values = yaml.safe_load(path.read_text()) or {}
        values = values.get("feedback", values)
        unknown = set(values) - FeedbackConfig.field_names()
        if unknown:
            raise CommandError(
                f"{path}: unknown keys {sorted(unknown)}; known: {sorted(FeedbackConfig.field_names())}"
            )
    for name in FeedbackConfig.field_names():
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    for required in ("prompts", "policy", "out"):
        if not values.get(required):
            raise CommandError(f"--{required} is required (or `{required}:` in the --config recipe)")
    return FeedbackConfig(**values)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "feedback",
        help="AI / self feedback (RLAIF-V): sample answers, split them into claims, label each claim yes/no, and "
        "write dense preference pairs whose rejected spans are the false claims",
        description="RLAIF-V's feedback loop: N sampled answers per instruction; rule-based or LLM claims; yes/no "
        "questions answered by a labeler (the policy itself, a transformers VLM, an OpenAI-compatible endpoint with "
        "log-probs, or a synthetic world's truth); score = -(false claims); pairs by RLAIF-V's rules; the rejected "
        "answer's false claims become its dense spans. Every stage is saved in --out and resumes after a crash.",
    )
    parser.add_argument("--config", default=None, help="YAML recipe with FeedbackConfig keys (flags override it)")
    add_config_arguments(parser)
    parser.set_defaults(func=main)


def main(args) -> int:
    from rlhfv.feedback.pipeline import format_summary, run_feedback

    config = config_from_args(args)
    summary = run_feedback(config)
    print(format_summary(summary))
    print(f"wrote {Path(config.out)} (summary.json, rejects.jsonl, dataset/)")
    return 0
