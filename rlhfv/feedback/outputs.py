"""What `rlhfv feedback --out` may be: a new or empty folder, or an earlier run to resume; never a folder that holds
an input (`--prompts d/pairs.jsonl --out d` would replace the prompts with the stage file of the same name)."""

from __future__ import annotations

import re

from data_tools.outputs import check_run_folder


# what a run writes in its folder (pipeline.py's module docstring lists them)
RUN_FILES = {
    "answers.jsonl",
    "claims.jsonl",
    "labels.jsonl",
    "scores.jsonl",
    "pairs.jsonl",
    "pairs_stats.json",
    "dataset",
    "rejects.jsonl",
    "summary.json",
    "instructions.jsonl",
    "instruction_merges.jsonl",
    "instruction_rejects.jsonl",
    "instructions_read.json",
    "images",
    "stages",
    "endpoint_cache",
}
_PART = re.compile(r"(answers|labels)\.part\d+\.jsonl|.*\.tmp")
# present once a run has read its prompts: the folder is a run to resume
MARKERS = ("instructions.jsonl", "instructions_read.json", "stages")


def is_run_entry(name: str) -> bool:
    return name in RUN_FILES or bool(_PART.fullmatch(name))


def check_feedback_out(config) -> None:
    """Before any work: refuse an `--output_dir` that is or holds an input, is a file, or is somebody else's folder."""
    labeler_model = config.labeler if config.labeler not in ("self", "endpoint", "truth") else None
    inputs = [
        config.prompts,
        config.policy,
        config.truth_scenes,
        config.llm_model,
        config.claims_prompt_file,
        config.question_prompt_file,
        labeler_model,
    ]
    check_run_folder("--output_dir", config.out, inputs, is_run_entry, MARKERS)
