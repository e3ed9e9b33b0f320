"""`IterateConfig`: the settings of `rlhfv iterate` (read by the settings parser, checked at start), and the record
of a run's settings in its output folder, so that a rerun with other settings says what changed."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from data_tools.errors import CommandError
from data_tools.settings import check_range, check_values, output_field, read_yaml, warn


SETTINGS_FILE = "iterate_settings.json"
# `rounds` may grow (more rounds on top of the finished ones) and `out` is the folder itself
RESUMABLE = ("rounds", "out")


@dataclass
class IterateConfig:
    rounds: int = field(default=4, metadata={"help": "Rounds of sample -> label -> train -> evaluate (RLAIF-V: 4)."})
    out: str = output_field("Output folder (one sub-folder per round).", default="outputs/iterate")
    seed: int = field(default=0, metadata={"help": "Seed of round 1; round k uses seed + k - 1."})
    initial_policy: str | None = field(default=None, metadata={"help": "The round-1 policy and reference (folder)."})
    synthetic: dict | None = field(
        default=None,
        metadata={
            "yaml_only": True,
            "help": "Build the synthetic world and its SFT model (experiments.proof settings: sft_items, "
            "sft_steps, preference_items, eval_items, ...) instead of initial_policy.",
        },
    )
    feedback: dict = field(
        default_factory=dict, metadata={"yaml_only": True, "help": "FeedbackConfig keys (rlhfv feedback)."}
    )
    train: dict = field(
        default_factory=dict,
        metadata={
            "yaml_only": True,
            "help": "`rlhfv train` recipe keys; model_name_or_path, dataset_name and output_dir are set per round.",
        },
    )
    evaluation: dict = field(
        default_factory=dict,
        metadata={
            "yaml_only": True,
            "help": "kind (none|synthetic|pope|object_halbench), select_metric, select_mode (min|max), the kind's "
            "files, max_new_tokens, batch_size (rlhfv/iterate_evaluation.py).",
        },
    )

    def __post_init__(self):
        from rlhfv.iterate_evaluation import check_settings

        check_range("rounds", self.rounds, minimum=1)
        check_range("seed", self.seed, minimum=0)
        kind = self.evaluation.get("kind", "synthetic" if self.synthetic else "none")
        self.evaluation = check_settings({**self.evaluation, "kind": kind}, "evaluation")
        self.check_feedback()

    def check_recipe(self) -> None:
        """What a recipe must say to run as it is (code may build a config without them: an experiment's
        `Iteration` subclass brings its own policy and evaluation)."""
        if bool(self.initial_policy) == bool(self.synthetic):
            raise CommandError("give exactly one of initial_policy (a model folder) and synthetic (settings)")
        if self.evaluation["kind"] == "synthetic" and not self.synthetic:
            raise CommandError("evaluation.kind synthetic needs the synthetic block (the world's test images)")

    def check_feedback(self) -> None:
        """The feedback block's keys and ranges now, not when round 1 starts (the per-round paths filled in)."""
        from rlhfv.feedback.config import FeedbackConfig

        values = check_values(self.feedback, FeedbackConfig, source="feedback")
        placeholders = {"prompts": "prompts", "truth_scenes": "scenes.json", "policy": "policy", "out": "out"}
        try:
            FeedbackConfig(**{**placeholders, **values})
        except CommandError as error:
            raise type(error)(f"feedback: {error}") from None
        self.feedback = values

    @classmethod
    def from_yaml(cls, path: str, overrides: dict) -> IterateConfig:
        """The settings of a recipe file and overrides (None = not given), read by the settings parser."""
        values = check_values(read_yaml(path), cls, source=str(path))
        values.update({key: value for key, value in overrides.items() if value is not None})
        try:
            config = cls(**values)
            config.check_recipe()
        except CommandError as error:
            raise type(error)(f"{path}: {error}") from None
        return config


def record_or_compare_settings(config: IterateConfig, out: Path) -> list[str]:
    """Write the settings to `out`/iterate_settings.json; when a run already recorded other ones there, warn with
    each changed setting (its finished rounds and stages are reused as they are) and keep the first record."""
    settings = {key: value for key, value in asdict(config).items() if key not in RESUMABLE}
    current = json.loads(json.dumps(_flatten(settings)))  # as it reads back (tuples become lists)
    path = out / SETTINGS_FILE
    if path.is_file():
        previous = _flatten(json.loads(path.read_text()))
        changed = [
            f"{key}: {_show(previous.get(key))} -> {_show(current.get(key))}"
            for key in sorted(set(previous) | set(current))
            if previous.get(key) != current.get(key)
        ]
        if changed:
            warn(
                f"{out} holds a run with other settings; its finished rounds and stages are reused as they are (a new "
                f"output folder starts afresh). Changed: {'; '.join(changed)}"
            )
        return changed
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    return []


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _show(value) -> str:
    return "(unset)" if value is None else json.dumps(value)
