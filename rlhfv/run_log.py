"""What a training run writes for later reading rather than to the screen.

The screen keeps progress and the result; the output folder gets `train.log` (every `rlhfv` / `data_tools` log line,
the resolved configuration and every metric) and `run_config.json` (the resolved configuration, secrets redacted).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path


FILE_ONLY = "rlhfv.run_log"  # the logger whose lines go to train.log and never to the screen
# keys that hold credentials (not pad_token or include_num_input_tokens_seen), and values that look like a token
SECRET = re.compile(r"^token$|(^|_)(hub_token|access_token|auth_token|api_key|apikey|secret|password)$", re.IGNORECASE)
TOKEN_VALUE = re.compile(r"^(hf_|sk-|wandb_)[A-Za-z0-9_-]{8,}$")
REDACTED = "<redacted>"


def open_run_log(output_dir: str) -> Path:
    """Send the `rlhfv` and `data_tools` log lines, and the file-only lines, to <output_dir>/train.log too."""
    path = Path(output_dir) / "train.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.set_name(f"run-log:{path}")
    file_only = logging.getLogger(FILE_ONLY)
    file_only.propagate = False
    file_only.setLevel(logging.INFO)
    for name in ("rlhfv", "data_tools", FILE_ONLY):
        target = logging.getLogger(name)
        if not any(h.get_name() == handler.get_name() for h in target.handlers):
            target.addHandler(handler)
    return path


def redact(value, key: str = ""):
    """`value` with every credential (a key naming a token, secret, password or API key, or a token-like value)
    replaced."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, key) for v in value]
    if value not in (None, "", False) and (
        SECRET.search(key) or (isinstance(value, str) and TOKEN_VALUE.match(value))
    ):
        return REDACTED
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def _as_dict(args) -> dict:
    if isinstance(args, dict):
        return args
    if hasattr(args, "to_dict"):
        return args.to_dict()
    if dataclasses.is_dataclass(args):
        return {f.name: getattr(args, f.name) for f in dataclasses.fields(args)}
    return dict(vars(args))


def log_configuration(output_dir: str, **parts) -> Path:
    """Write the resolved configuration (secrets redacted) to run_config.json and to train.log; nothing on screen."""
    config = {name: redact(_as_dict(args)) for name, args in parts.items()}
    path = Path(output_dir) / "run_config.json"
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    logger = logging.getLogger(FILE_ONLY)
    for name, values in config.items():
        logger.info("%s: %s", name, json.dumps(values, sort_keys=True))
    return path


def log_metrics(split: str, metrics: dict) -> None:
    """All of a split's metrics to train.log (the screen gets `metrics_line`)."""
    logger = logging.getLogger(FILE_ONLY)
    for key in sorted(metrics):
        logger.info("%s metrics: %s = %s", split, key, metrics[key])


HEADLINE = ("loss", "rewards/accuracies", "rewards/margins")


def metrics_line(split: str, metrics: dict, saved_to: str) -> str:
    """One line: the few numbers a person looks at first, and where the rest are."""
    shown = []
    for name in HEADLINE:
        value = metrics.get(f"{split}_{name}", metrics.get(name))
        if isinstance(value, (int, float)):
            shown.append(f"{name} {value:.4g}")
    return f"{split}: {', '.join(shown) or 'done'} ({len(metrics)} metrics in {saved_to})"
