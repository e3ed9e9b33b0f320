"""A held-out evaluation before and after training, as a `transformers.TrainerCallback` a recipe can name.

`HeldOutEvalCallback` measures the model being trained at the start of training and again at the end, prints
both next to each other, writes them to `<output_dir>/<file_name>` and adds `<metric>_before/_after` to the
evaluation metrics that follow (TRL's `***** eval metrics *****` block, `eval_results.json`). A subclass says what
to measure (`measure`) and which metrics to report; the demo recipe's `experiments.demo_eval:CompanionEvalCallback`
is one.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from transformers import TrainerCallback


logger = logging.getLogger("rlhfv.heldout_eval")


class HeldOutEvalCallback(TrainerCallback):
    """Measure the model before and after training (see the module); subclasses implement `measure`."""

    # the metrics copied into the evaluation metrics as <name>_before / <name>_after
    reported_metrics: tuple[str, ...] = ()
    file_name = "heldout_eval.json"
    description = "held-out metrics"

    def __init__(self):
        self.before: dict | None = None
        self.after: dict | None = None

    def measure(self, model, processor) -> dict:
        """{metric: value} of `model` (in memory, being trained) on the held-out data."""
        raise NotImplementedError

    def record(self) -> dict:
        """What `file_name` holds besides `before` and `after` (e.g. which held-out set)."""
        return {}

    def format_before_after(self, before: dict, after: dict) -> str:
        names = self.reported_metrics or tuple(before)
        lines = ["", f"{self.description}:", f"  {'':34} {'before':>8} {'after':>8}"]
        lines += [f"  {name:34} {before.get(name)!s:>8} {after.get(name)!s:>8}" for name in names]
        return "\n".join(lines) + "\n"

    def summary_line(self, result: dict) -> str:
        return ", ".join(f"{name} {result.get(name)}" for name in self.reported_metrics or result)

    def _timed_measure(self, model, processor) -> dict:
        start = time.time()
        result = self.measure(model, processor)
        result["seconds"] = round(time.time() - start, 1)
        return result

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.is_world_process_zero and self.before is None:
            self.before = self._timed_measure(model, processing_class)
            logger.info("%s before training: %s", self.description, self.summary_line(self.before))

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if not state.is_world_process_zero or self.before is None:
            return
        self.after = self._timed_measure(model, processing_class)
        # `rlhfv train` prints it last, after the evaluation and the saving (the run's result, not lost in logs)
        self.final_report = self.format_before_after(self.before, self.after)
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        Path(args.output_dir, self.file_name).write_text(
            json.dumps({**self.record(), "before": self.before, "after": self.after}, indent=2) + "\n"
        )

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics is None or self.before is None:
            return
        prefix = "eval_" if any(k.startswith("eval_") for k in metrics) else ""
        for name in self.reported_metrics:
            metrics[f"{prefix}{name}_before"] = self.before[name]
            if self.after is not None:
                metrics[f"{prefix}{name}_after"] = self.after[name]
