"""`rlhfv feedback`: instructions -> sampled answers -> claims -> questions -> labels -> scores -> the dense
preference dataset, every stage saved and resumable (docs/feedback.md).

    rlhfv feedback --prompts prompts.jsonl --policy outputs/sft --output_dir feedback/round1 --labeler self
    rlhfv feedback --config recipes/synthetic/rlaif_v/feedback.yaml --output_dir /tmp/fb
"""

from __future__ import annotations

from pathlib import Path

from data_tools.errors import CommandError
from rlhfv.feedback.config import FeedbackConfig


def config_from_args(args) -> FeedbackConfig:
    """The settings from `--config` (its `feedback:` section, or the whole file) and the flags, checked."""
    from data_tools.settings import read_settings

    (config,) = read_settings(args, FeedbackConfig, section="feedback")
    return config


def check_model_folders(config: FeedbackConfig) -> None:
    """The models are folders: a missing one is named now, before any stage starts."""
    folders = {"policy": config.policy, "llm_model": config.llm_model}
    if config.labeler not in ("self", "endpoint", "truth"):
        folders["labeler"] = config.labeler
    for name, folder in folders.items():
        if folder and not Path(folder).is_dir():
            raise CommandError(f"{name}: {folder}: no such model folder")


def register(subparsers) -> None:
    from data_tools.settings import add_settings_arguments

    parser = subparsers.add_parser(
        "feedback",
        help="AI / self feedback (RLAIF-V): sample answers, split them into claims, label each claim yes/no, and "
        "write dense preference pairs whose rejected spans are the false claims",
        description="RLAIF-V's feedback loop: N sampled answers per instruction; rule-based or LLM claims; yes/no "
        "questions answered by a labeler (the policy itself, a transformers VLM, an OpenAI-compatible endpoint with "
        "log-probs, or a synthetic world's truth); score = -(false claims); pairs by RLAIF-V's rules; the rejected "
        "answer's false claims become its dense spans. Every stage is saved in --output_dir and resumes after a "
        "crash.",
    )
    add_settings_arguments(parser, FeedbackConfig)
    parser.set_defaults(func=main)


def main(args) -> int:
    from rlhfv.endpoint import EndpointError
    from rlhfv.eval.io import EvalInputError
    from rlhfv.feedback.pipeline import format_summary, run_feedback

    config = config_from_args(args)
    check_model_folders(config)
    try:
        summary = run_feedback(config)
    except (EvalInputError, EndpointError) as error:  # a file or a server the run depends on: one line
        raise CommandError(str(error)) from None
    print(format_summary(summary))
    print(f"wrote {Path(config.out)} (summary.json, rejects.jsonl, dataset/)")
    return 0
