"""The model card (README.md) of a Dense DPO run.

TRL's trainers write a card whenever they save (final model, checkpoints, Hub pushes) through `create_model_card`;
`DenseDPOTrainer` overrides that hook with `write_model_card`, so library users get the same card as `rlhfv train`:
base model, dataset, gamma, beta, normalisation, steps, final metrics, and (from `RunRecord`) the exact command and
the resolved recipe.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path


TEMPLATE = Path(__file__).parent / "templates" / "dense_dpo_model_card.jinja"
SECTION_TITLE = "### Dense DPO training"
# Train-log keys that describe the schedule rather than the model; they are shown elsewhere in the card
_SCHEDULE_KEYS = {"epoch", "step", "learning_rate", "grad_norm", "total_flos"}


@dataclass
class RunRecord:
    """What the card says about the run beyond what the trainer knows."""

    base_model: str | None = None
    dataset: str | None = None
    dataset_format: str | None = None
    command: str | None = None
    recipe: dict = field(default_factory=dict)
    recipe_file: str | None = None


def write_model_card(trainer, model_name=None, dataset_name=None, tags=None, **kwargs) -> str:
    """Write the Dense DPO card to `output_dir/README.md` (main process only); returns its path.

    Built from rlhfv's own template (`templates/dense_dpo_model_card.jinja`) with the trainer's `_name`, `_paper` and
    `_tag_names`: a quick start that loads the model the way it is used (an image and a question for a VLM), a real
    `license` in the front matter (`model_card_license`, or a `license` passed by `push_to_hub`), the settings and
    final metrics, and the command and recipe when `trainer.run_record` has them.
    """
    from importlib.metadata import version

    from huggingface_hub import ModelCard, ModelCardData

    from rlhfv._compat import get_config_model_id, trainer_card_fields

    record = trainer.run_record
    base_model = (record.base_model if record else None) or get_config_model_id(trainer.model.config) or "unknown"
    dataset_name = dataset_name or (record.dataset if record else None)
    card = trainer_card_fields(trainer)
    is_vlm = card["is_vlm"]
    tags = list(dict.fromkeys([*(tags if isinstance(tags, list) else [tags] if tags else []), *card["tags"]]))
    wandb_url = None
    try:
        import wandb

        wandb_url = wandb.run.url if wandb.run is not None else None
    except ImportError:
        pass
    card_data = ModelCardData(
        base_model=base_model if is_hub_id(base_model) else None,
        datasets=dataset_name if is_hub_id(dataset_name) else None,
        library_name="transformers",
        license=kwargs.get("license") or trainer.args.model_card_license,
        model_name=model_name,
        pipeline_tag="image-text-to-text" if is_vlm else "text-generation",
        tags=tags,
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=model_name or os.path.basename(os.path.abspath(trainer.args.output_dir)),
        model_id=trainer.hub_model_id or trainer.args.output_dir,
        base_model=base_model,
        base_model_is_hub=is_hub_id(base_model),
        dataset_name=dataset_name,
        dataset_is_hub=is_hub_id(dataset_name),
        is_vlm=is_vlm,
        wandb_url=wandb_url,
        trainer_name=card["name"],
        trainer_citation=card["paper"]["citation"],
        paper_title=card["paper"]["title"],
        paper_id=card["paper"]["id"],
        dense_section=dense_section(trainer.args, trainer.state, record),
        rlhfv_version=version("rlhfv"),
        trl_version=version("trl"),
        transformers_version=version("transformers"),
        pytorch_version=version("torch"),
        datasets_version=version("datasets"),
    )
    path = os.path.join(trainer.args.output_dir, "README.md")
    os.makedirs(trainer.args.output_dir, exist_ok=True)
    card.save(path)
    return path


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


def dense_section(args, state, record: RunRecord | None) -> str:
    """The Markdown section added to the card."""
    world_size = getattr(args, "world_size", 1) or 1
    global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * world_size
    warmup = args.warmup_steps or 0
    warmup = f"warmup ratio {format_number(warmup)}" if warmup < 1 else f"warmup {int(warmup)} steps"
    record = record or RunRecord()
    dataset = f"`{record.dataset}`" if record.dataset else "(not recorded)"
    if record.dataset_format:
        dataset += f" (format `{record.dataset_format}`, converted with `rlhfv convert`)"
    rows = [
        ("Base model", f"`{record.base_model}`" if record.base_model else "(not recorded)"),
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
    lines += ["", "#### Final metrics", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {key} | {format_number(value)} |" for key, value in sorted(metrics.items())]
    else:
        lines.append("No metrics were logged.")

    if record.command:
        lines += ["", "#### Command", "", "```bash", record.command, "```"]
    if record.recipe:
        import yaml

        lines += ["", "#### Resolved recipe", "", "```yaml", yaml.safe_dump(record.recipe, sort_keys=False).rstrip()]
        lines.append("```")
    return "\n".join(lines)
