"""Script arguments of `rlhfv train`: where the training data comes from.

They sit beside `DenseDPOConfig` (training, a `trl.DPOConfig`) and `trl.ModelConfig` (model loading, LoRA,
quantization); `TrlParser` reads all three from one recipe YAML and the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ScriptArguments


# `model_name_or_path: tiny:<name>` builds a small model and tokenizer in-process (no download): for the demo recipe,
# the tests and quick experiments. Maps the name to the builder in `rlhfv.tiny_models`.
TINY_MODEL_PREFIX = "tiny:"
TINY_MODELS = ("llava", "qwen2-vl", "llama")


@dataclass
class DenseDPOScriptArguments(ScriptArguments):
    """Data arguments of `rlhfv train`, on top of TRL's `ScriptArguments` (`dataset_name`, `dataset_config`,
    `dataset_train_split`, `dataset_test_split`, ...).

    `dataset_name` is one of:
    - a folder written by `rlhfv convert` (or `Dataset.save_to_disk`) holding the dense preference dataset;
    - a Hub dataset id (or a local folder of data files) already in the dense format of docs/data_format.md;
    - raw input (corrections, RLHF-V, RLAIF-V, ...) when `dataset_format` is set: it is converted first, and the
      converted dataset is cached on disk by the converter's fingerprint so the next run reuses it.
    """

    dataset_format: str | None = field(
        default=None,
        metadata={
            "help": "Layout of the raw input named by `dataset_name` (e.g. `corrections`, `rlhf-v`, `rlaif-v`, "
            "`llava-rlhf`, `pairs`, or `auto` to detect it). When set, the input is converted with "
            "`data_tools.convert` before training and the result is cached (see `converted_dataset_dir`). Leave "
            "unset for a dataset that is already converted."
        },
    )
    image_root: str | None = field(
        default=None,
        metadata={
            "help": "Folder against which relative image paths of the raw input are resolved (conversion only). "
            "Defaults to the input file's folder."
        },
    )
    conversion_on_error: str = field(
        default="fail",
        metadata={
            "help": "What the conversion does with a bad input row: `fail` stops with an error naming the file, row "
            "and field; `skip` leaves the row out, writes it to `rejects.jsonl` next to the converted dataset and "
            "reports the count.",
            "choices": ["fail", "skip"],
        },
    )
    conversion_changes: str | None = field(
        default=None,
        metadata={
            "help": "Which edits of an answer become changed segments when converting: `all` or `replace-only` "
            "(see docs/converter.md). Default: the converter's.",
            "choices": ["all", "replace-only"],
        },
    )
    converted_dataset_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder in which converted datasets are cached, one sub-folder per converter fingerprint (the "
            "fingerprint covers the input files, the format and the converter's options). Defaults to "
            "`<HF datasets cache>/rlhfv-converted`."
        },
    )
    dataset_test_size: float | None = field(
        default=None,
        metadata={
            "help": "When evaluation is on and the dataset has no `dataset_test_split` split, hold out this share "
            "(< 1) or this number of rows (>= 1) of the training split for evaluation, drawn with `seed`."
        },
    )

    callbacks: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Extra `transformers.TrainerCallback`s, as `module:Class` import paths, each built with no "
            "arguments (e.g. `experiments.demo_eval:CompanionEvalCallback`, the demo's before/after evaluation)."
        },
    )

    def __post_init__(self):
        if self.dataset_test_size is not None and self.dataset_test_size <= 0:
            raise ValueError(f"`dataset_test_size` must be > 0, got {self.dataset_test_size}.")
