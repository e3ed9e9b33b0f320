"""The model card (README.md) of a Dense DPO run.

TRL's trainers write a card whenever they save (final model, checkpoints, Hub pushes) through `create_model_card`.
`DenseModelCardMixin` extends that method: TRL's card stays as it is, and a section is added with what a reader
needs to judge and reproduce the run: base model, dataset, gamma, beta, normalisation, steps, final metrics, the
exact command and the resolved recipe.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field


SECTION_TITLE = "## Dense DPO training"
# Train-log keys that describe the schedule rather than the model; they are shown elsewhere in the card
_SCHEDULE_KEYS = {"epoch", "step", "learning_rate", "grad_norm", "total_flos"}


@dataclass
class RunRecord:
    """What the card says about the run beyond what the trainer knows."""

    base_model: str
    dataset: str | None
    dataset_format: str | None = None
    command: str | None = None
    recipe: dict = field(default_factory=dict)


class DenseModelCardMixin:
    """Mix into a TRL trainer (before it in the bases) to add the Dense DPO section to every card it writes."""

    run_record: RunRecord | None = None

    def create_model_card(self, model_name=None, dataset_name=None, tags=None, **kwargs):
        record = self.run_record
        if record is not None and dataset_name is None and is_hub_id(record.dataset):
            dataset_name = record.dataset
        tags = [*(tags or []), "dense-dpo", "rlhf-v"]
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags, **kwargs)
        if record is None or not self.is_world_process_zero():
            return
        from huggingface_hub import ModelCard

        path = os.path.join(self.args.output_dir, "README.md")
        card = ModelCard.load(path)
        if is_hub_id(record.base_model):
            card.data.base_model = record.base_model
        else:
            # TRL links the base model to the Hub; a local or in-process model has no page there
            card.text = card.text.replace(
                "This model is a fine-tuned version of [None](https://huggingface.co/None)",
                f"This model is a fine-tuned version of `{record.base_model}`",
            )
        # TRL's quick start is written for text models pushed to the Hub; point it at this model and its task
        card.text = card.text.replace('model="None"', f'model="{self.hub_model_id or self.args.output_dir}"')
        if getattr(self, "_is_vlm", False):
            card.text = card.text.replace('pipeline("text-generation"', 'pipeline("image-text-to-text"')
        card.text = card.text.rstrip() + "\n\n" + dense_section(self.args, self.state, record) + "\n"
        card.save(path)


def is_hub_id(name: str | None) -> bool:
    """Whether `name` looks like a Hub repository id (`owner/name`) rather than a local path or a tiny model."""
    if not name or ":" in name or os.path.exists(name) or name.startswith((".", "/", "~")):
        return False
    return name.count("/") == 1


def normalisation_text(args) -> str:
    gamma = args.gamma
    if args.score_average:
        return f"average: each score is divided by N = \\|unchanged\\| + {gamma} * \\|changed\\| (paper, Eq. 5)"
    return "sum: weighted log-probs are summed, not divided by N (the public code's `use_average: false`)"


def final_metrics(log_history: list[dict]) -> dict[str, float]:
    """The last logged value of every metric: training (last train log), evaluation (last `eval_*`), run summary."""
    metrics: dict[str, float] = {}
    for entry in log_history:
        for key, value in entry.items():
            if key in _SCHEDULE_KEYS or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            metrics[key] = float(value)
    return metrics


def format_number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _enum_value(value):
    return getattr(value, "value", value)


def dense_section(args, state, record: RunRecord) -> str:
    """The Markdown section added to the card."""
    world_size = getattr(args, "world_size", 1) or 1
    global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * world_size
    warmup = args.warmup_steps or 0
    warmup = f"warmup ratio {format_number(warmup)}" if warmup < 1 else f"warmup {int(warmup)} steps"
    dataset = f"`{record.dataset}`" if record.dataset else "(none)"
    if record.dataset_format:
        dataset += f" (format `{record.dataset_format}`, converted with `rlhfv convert`)"
    rows = [
        ("Base model", f"`{record.base_model}`"),
        ("Dataset", dataset),
        ("gamma (weight of changed segments)", format_number(args.gamma)),
        ("beta", format_number(args.beta)),
        ("Normalisation", normalisation_text(args)),
        ("Changed segments from", f"`{args.segment_source}`"),
        ("SFT weight", format_number(args.sft_weight)),
        ("Steps", f"{state.global_step} (epochs: {format_number(state.epoch or 0.0)})"),
        (
            "Global batch size",
            f"{global_batch} ({args.per_device_train_batch_size} per device x "
            f"{args.gradient_accumulation_steps} accumulation x {world_size} processes)",
        ),
        ("Learning rate", f"{format_number(args.learning_rate)} ({_enum_value(args.lr_scheduler_type)}, {warmup})"),
    ]
    lines = [SECTION_TITLE, "", "| setting | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]

    metrics = final_metrics(state.log_history)
    lines += ["", "### Final metrics", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {key} | {format_number(value)} |" for key, value in sorted(metrics.items())]
    else:
        lines.append("No metrics were logged.")

    if record.command:
        lines += ["", "### Command", "", "```bash", record.command, "```"]
    if record.recipe:
        import yaml

        lines += ["", "### Resolved recipe", "", "```yaml", yaml.safe_dump(record.recipe, sort_keys=False).rstrip()]
        lines.append("```")
    return "\n".join(lines)
