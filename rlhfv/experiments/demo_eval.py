"""Before/after evaluation for the demo: companion hallucination rate and recall on held-out images of the
language-prior world, measured on the model being trained, at the start and at the end of training.

`CompanionEvalCallback` is a `transformers.TrainerCallback`. The demo recipe names it (`callbacks:`), and the
trainer then:
- at the start of training, answers the held-out prompts greedily with the starting (SFT) model;
- at the end of training, answers them again with the trained model and prints both next to each other;
- adds `companion_hallucination_before/after` and `companion_recall_before/after` (and CHAIR_i and recall) to the
  evaluation metrics that follow, so they appear in TRL's `***** eval metrics *****` block and `eval_results.json`,
  and writes `companion_eval.json` into `output_dir`.

The held-out set is a folder written by `data_tools.synthetic.prior_writers.write_prior_prompts` (`prompts.jsonl`,
`scenes.json`, `images/`); by default `recipes/demo/prior/heldout` of the source checkout.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from transformers import TrainerCallback


logger = logging.getLogger("rlhfv.demo_eval")

DEFAULT_HELDOUT = Path(__file__).resolve().parents[2] / "recipes" / "demo" / "prior" / "heldout"
SHOWN = ("companion_hallucination", "companion_recall", "chair_i", "recall", "length_words")


def evaluate_in_memory(model, processor, heldout: Path, max_new_tokens: int = 128, batch_size: int = 64) -> dict:
    """Greedy answers of an in-memory model on `heldout`'s prompts and the companion metrics over them."""
    import tempfile

    import torch

    from data_tools.synthetic.writers import load_scenes
    from rlhfv.eval.generate import GenerationOptions, LoadedModel, generate_answers
    from rlhfv.experiments.companion import image_records, summarize

    was_training = model.training
    model.eval()
    options = GenerationOptions(max_new_tokens=max_new_tokens, batch_size=batch_size)
    loaded = LoadedModel(model=model, processor=processor, path=str(heldout))
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        out = Path(tmp) / "answers.jsonl"
        generate_answers(heldout, heldout / "prompts.jsonl", out, options, progress=False, loaded=loaded)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    if was_training:
        model.train()
    records = image_records(rows, load_scenes(heldout / "scenes.json"))
    summary = summarize(list(records.values()))
    summary["images"] = len(records)
    summary["absent_images"] = sum(r["absent"] for r in records.values())
    summary["present_images"] = sum(r["present"] for r in records.values())
    return summary


class CompanionEvalCallback(TrainerCallback):
    """Companion hallucination rate and recall on held-out images, before and after training (see the module)."""

    def __init__(self, heldout: str | Path | None = None, max_new_tokens: int = 128):
        self.heldout = Path(heldout) if heldout else DEFAULT_HELDOUT
        if not (self.heldout / "prompts.jsonl").is_file() or not (self.heldout / "scenes.json").is_file():
            raise FileNotFoundError(
                f"CompanionEvalCallback: {self.heldout} has no prompts.jsonl and scenes.json; write it with "
                "`python -m rlhfv.experiments.demo_data --out recipes/demo/prior`"
            )
        self.max_new_tokens = max_new_tokens
        self.before: dict | None = None
        self.after: dict | None = None

    def _measure(self, model, processor) -> dict:
        start = time.time()
        result = evaluate_in_memory(model, processor, self.heldout, self.max_new_tokens)
        result["seconds"] = round(time.time() - start, 1)
        return result

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.is_world_process_zero and self.before is None:
            self.before = self._measure(model, processing_class)
            logger.info("held-out companion metrics before training: %s", _line(self.before))

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if not state.is_world_process_zero or self.before is None:
            return
        self.after = self._measure(model, processing_class)
        table = format_before_after(self.before, self.after, self.heldout)
        self.final_report = table  # `rlhfv train` prints it last, after the evaluation and the saving
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        Path(args.output_dir, "companion_eval.json").write_text(
            json.dumps({"heldout": str(self.heldout), "before": self.before, "after": self.after}, indent=2) + "\n"
        )

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics is None or self.before is None:
            return
        prefix = "eval_" if any(k.startswith("eval_") for k in metrics) else ""
        for name in ("companion_hallucination", "companion_recall", "chair_i", "recall"):
            metrics[f"{prefix}{name}_before"] = self.before[name]
            if self.after is not None:
                metrics[f"{prefix}{name}_after"] = self.after[name]


def _line(summary: dict) -> str:
    return ", ".join(f"{name} {_fmt(name, summary[name])}" for name in SHOWN)


def _fmt(name: str, value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}" if name == "length_words" else f"{100 * value:.1f}%"


def format_before_after(before: dict, after: dict, heldout: Path) -> str:
    labels = {
        "companion_hallucination": "companion named when absent",
        "companion_recall": "companion named when present",
        "chair_i": "CHAIR_i (wrong object mentions)",
        "recall": "recall of true objects",
        "length_words": "answer length (words)",
    }
    lines = [
        "",
        f"Held-out images of the language-prior world ({before['images']} images: {before['absent_images']} with "
        f"the anchor and no companion, {before['present_images']} with both), greedy answers:",
        f"  {'':34} {'before':>8} {'after':>8}",
    ]
    for name in SHOWN:
        lines.append(f"  {labels[name]:34} {_fmt(name, before[name]):>8} {_fmt(name, after[name]):>8}")
    return "\n".join(lines) + "\n"
