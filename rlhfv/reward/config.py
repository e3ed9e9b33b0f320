"""Configuration of `rlhfv reward`: `FactRewardConfig` (a `trl.RewardConfig`) and the data arguments."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import RewardConfig, ScriptArguments


@dataclass
class FactRewardConfig(RewardConfig):
    """`trl.RewardConfig` plus the facts in the reward model's prompt (Fact-RLHF).

    Every `RewardConfig` / `TrainingArguments` field works as in TRL (`center_rewards_coefficient`, `max_length`, ...).
    """

    facts: str = field(
        default="row",
        metadata={
            "help": "Where the reward model's facts come from: `row` reads each row's `facts` field (captions, "
            "options and the right option) into the prompt; `none` leaves them out (the plain reward model, for "
            "comparison).",
            "choices": ["row", "none"],
        },
    )
    facts_template: str | None = field(
        default=None,
        metadata={
            "help": "A UTF-8 text file holding the facts block with one `{facts}` slot, which replaces the default "
            "template (rlhfv/reward/facts.py). The block follows the answer, as in LLaVA-RLHF."
        },
    )
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "Longest reward-model input in tokens (prompt, image tokens, answer and facts); a longer one is "
            "an error, never cut (cutting could cut image tokens). None: no limit."
        },
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Keep the raw columns: the collator renders prompt, answers, images and facts itself."},
    )

    def __post_init__(self):
        from data_tools.settings import check_range, check_training_ranges

        if self.facts not in ("row", "none"):
            raise ValueError(f"`facts` must be `row` or `none`, got {self.facts!r}")
        check_training_ranges(self)
        check_range("max_length", self.max_length, minimum=1, optional=True)
        check_range("center_rewards_coefficient", self.center_rewards_coefficient, minimum=0, optional=True)
        super().__post_init__()


@dataclass
class RewardScriptArguments(ScriptArguments):
    """Data of `rlhfv reward` on top of TRL's `ScriptArguments`.

    `dataset_name` is a JSONL/JSON file of LLaVA-RLHF-style preferences with a `facts` field per row, or a folder
    written by `rlhfv convert` / `rlhfv reward-pairs`.
    """

    eval_dataset_name: str | None = field(
        default=None,
        metadata={"help": "Held-out preferences in the same layout, for evaluation (reward accuracy)."},
    )
    image_root: str | None = field(
        default=None,
        metadata={"help": "Folder against which relative image paths are resolved. Default: the data file's folder."},
    )
    image_captions: str | None = field(
        default=None,
        metadata={
            "help": "JSON file {image file name: [captions]} (LLaVA-RLHF's image_to_caption.json): rows without a "
            "`facts` field take their image's captions as facts."
        },
    )
    on_error: str = field(
        default="fail",
        metadata={
            "help": "A bad input row: `fail` stops with an error naming the file, row and field; `skip` leaves it "
            "out and reports it in the log and in the output folder's `data_report.json`.",
            "choices": ["fail", "skip"],
        },
    )
