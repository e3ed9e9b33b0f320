"""Pushing the trained model to the Hugging Face Hub.

transformers' `Trainer` does the pushing: it creates the repository when the trainer is built
(`push_to_hub: true`), uploads checkpoints as `hub_strategy` says, and `Trainer.push_to_hub` uploads the final
folder with its model card. This module checks the settings before any training time is spent, and makes the final
push with the card's dataset name.
"""

from __future__ import annotations

import logging
import os

from data_tools.errors import CommandError


logger = logging.getLogger(__name__)


def check_hub_settings(training_args) -> None:
    """Fail at start, with the fix, when `push_to_hub: true` cannot succeed at the end of training."""
    if not training_args.push_to_hub:
        return
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise CommandError(
            "`push_to_hub: true` needs the Hub but HF_HUB_OFFLINE is set: unset it, or set `push_to_hub: false`"
        )
    repo_id = training_args.hub_model_id
    if repo_id is not None and (repo_id.count("/") > 1 or not repo_id.strip("/") or " " in repo_id):
        raise CommandError(f"`hub_model_id`: {repo_id!r} is not a repository id (`name` or `owner/name`)")
    from huggingface_hub import get_token

    if training_args.hub_token is None and get_token() is None:
        raise CommandError(
            "`push_to_hub: true` needs a Hub token with write access: run `hf auth login`, or set "
            "HF_TOKEN (or `hub_token`)"
        )
    if repo_id is None:
        logger.warning(
            "`hub_model_id` is not set: the model goes to a repository named after `output_dir` (%s)",
            os.path.basename(os.path.abspath(training_args.output_dir)),
        )


def push_final_model(trainer, dataset_name: str | None = None) -> str | None:
    """Upload the final model, processor and model card; returns the repository URL (main process) or None."""
    from rlhfv.model_card import is_hub_id

    commit = trainer.push_to_hub(
        commit_message=f"Dense DPO: {trainer.state.global_step} steps",
        dataset_name=dataset_name if is_hub_id(dataset_name) else None,
    )
    if not trainer.is_world_process_zero():
        return None
    url = f"https://huggingface.co/{trainer.hub_model_id}"
    logger.info("Pushed the model to %s (%s)", url, getattr(commit, "commit_url", commit))
    return url
