"""What every benchmark shares: the machine description, memory probes, subprocess workers and result files."""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path


RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent
ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "WANDB_MODE": "offline",
    "TOKENIZERS_PARALLELISM": "false",
}
GIB = 1024**3


def machine_info() -> dict:
    """CPU model, cores, RAM, library versions and load average: enough to compare two result files."""
    import torch
    import transformers
    import trl

    cpu = platform.processor() or platform.machine()
    try:
        cpu_info = Path("/proc/cpuinfo").read_text()
        match = re.search(r"model name\s*:\s*(.+)", cpu_info)
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    ram = None
    try:
        ram = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) * 1024
    except (OSError, AttributeError):
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gib": round(ram / GIB, 1) if ram else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ---- memory probes (Linux). Peak RSS is a high-water mark; writing "5" to clear_refs resets it (Linux >= 4.0), so a
# worker can measure the peak of one phase only: peak_rss() after reset_peak_rss() minus current_rss() at the reset.


def current_rss() -> int:
    return _status_kib("VmRSS") * 1024


def peak_rss() -> int:
    return _status_kib("VmHWM") * 1024


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text())
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field}: the CPU memory probes need Linux")
    return int(match.group(1))


# ---- workers: each contender runs in a fresh interpreter so that its peak memory is its own


def run_worker(module: str, spec: dict, timeout: float | None = None) -> dict:
    """Run `python -m <module> --worker '<json spec>'`; the worker prints one JSON line starting with RESULT."""
    env = {**os.environ, **ENV}
    command = [sys.executable, "-m", module, "--worker", json.dumps(spec)]
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-25:])
    raise RuntimeError(f"benchmark worker {module} {spec} failed (exit {proc.returncode}):\n{tail}")


def emit_result(result: dict) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def median(values):
    return statistics.median(values) if values else None


# ---- result files


def write_results(name: str, payload: dict, table: list[dict], columns: list[tuple[str, str]], notes: list[str]):
    """Write `<name>.json` (payload + table) and `<name>.md` (notes + markdown table) under bench/results/."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    payload = {**payload, "table": table}
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [f"# {payload.get('title', name)}", ""]
    lines += [f"- {note}" for note in notes]
    lines += ["", markdown_table(table, columns), ""]
    machine = payload.get("machine")
    if machine:
        lines.append(
            f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('ram_gib')} GiB RAM, "
            f"torch {machine.get('torch')}, transformers {machine.get('transformers')}, trl {machine.get('trl')}"
            + (f", GPU {machine['gpu']}" if machine.get("gpu") else "")
            + f"; load average before/after: {payload.get('load_before')} / {payload.get('load_after')}."
        )
    (RESULTS_DIR / f"{name}.md").write_text("\n".join(lines) + "\n")
    return RESULTS_DIR / f"{name}.json"


def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    header = "| " + " | ".join(title for _, title in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_fmt(row.get(key)) for key, _ in columns) + " |" for row in rows]
    return "\n".join([header, rule, *body])


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def new_figure(ncols: int = 2, width: float = 11, height: float = 4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width, height), squeeze=False)


def save_figure(fig, name: str) -> Path:
    path = RESULTS_DIR / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
