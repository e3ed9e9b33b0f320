"""What every benchmark shares: the machine description, memory probes, worker processes and result files."""

from __future__ import annotations

import importlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import traceback
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
# For memory runs on CPU: glibc serves every block of 64 KiB or more from its own mapping and returns it when freed
# (a fixed threshold also turns off glibc's adaptive one), so the RSS follows the live tensors. Under the default
# allocator, heap reuse moves the peak RSS of identical training steps by up to 4%; under this setting by 0.02%.
# It slows allocation-heavy code, so timing runs do not use it.
EXACT_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}


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


# ---- workers: each contender runs in a process of its own so that its peak memory is its own

# What CPU workers import, loaded once by a fork server: every worker starts as a fork of it instead of a fresh
# interpreter, which spares each one 2-7 s of imports (about two minutes over a full `make bench`). The server runs no
# torch op before forking, so the workers' thread pools start fresh.
FORK_SERVER_PRELOAD = [
    "torch",
    "transformers",
    "trl",
    "trl.kernels",
    "trl.trainer.utils",
    "rlhfv.trainer",
    "bench.train_step",
]
_FORK_CONTEXT = None
# glibc `mallopt` parameters, the runtime equivalents of EXACT_MEMORY_ENV for a forked worker
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def run_worker(module: str, spec: dict, timeout: float | None = None, exact_memory: bool = False) -> dict:
    """Run `<module>.worker(spec)` in a process of its own and return its result.

    On CPU the process is a fork of the fork server (`FORK_SERVER_PRELOAD`); on a GPU it is a fresh interpreter
    (`python -m <module> --worker '<json spec>'`), since CUDA cannot be used in a fork of a process that has asked
    about it. `exact_memory` runs the worker under `EXACT_MEMORY_ENV`'s allocator settings.
    """
    if spec.get("device", "cpu") != "cpu":
        return _run_in_fresh_interpreter(module, spec, timeout, EXACT_MEMORY_ENV if exact_memory else None)
    context = _fork_context()
    receiver, sender = context.Pipe(duplex=False)
    with tempfile.NamedTemporaryFile(prefix="rlhfv-bench-", suffix=".log", delete=False) as log:
        log_path = log.name
    process = context.Process(target=_forked_worker, args=(module, spec, exact_memory, log_path, sender))
    try:
        process.start()
        sender.close()
        if not receiver.poll(timeout):
            process.kill()
            raise RuntimeError(f"benchmark worker {module} {spec} took longer than {timeout} s")
        try:
            status, payload = receiver.recv()
        except EOFError:  # killed (out of memory) or crashed without a Python traceback
            status, payload = "died", None
        process.join()
        if status == "ok":
            return payload
        with open(log_path, errors="replace") as handle:
            tail = "\n".join(handle.read().splitlines()[-25:])
        raise RuntimeError(
            f"benchmark worker {module} {spec} failed (exit {process.exitcode}):\n{payload or ''}\n{tail}".rstrip()
        )
    finally:
        receiver.close()
        os.unlink(log_path)


def _fork_context():
    global _FORK_CONTEXT
    if _FORK_CONTEXT is None:
        import multiprocessing

        for key, value in ENV.items():  # the server, and so every worker, starts with these
            os.environ.setdefault(key, value)
        _FORK_CONTEXT = multiprocessing.get_context("forkserver")
        _FORK_CONTEXT.set_forkserver_preload(FORK_SERVER_PRELOAD)
    return _FORK_CONTEXT


def _forked_worker(module: str, spec: dict, exact_memory: bool, log_path: str, sender) -> None:
    """Body of a forked worker: output to `log_path`, the result (or the traceback) through `sender`."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(log, 1)
    os.dup2(log, 2)
    if exact_memory:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, int(EXACT_MEMORY_ENV["MALLOC_MMAP_THRESHOLD_"]))
        libc.mallopt(_M_TRIM_THRESHOLD, int(EXACT_MEMORY_ENV["MALLOC_TRIM_THRESHOLD_"]))
    try:
        import logging

        logging.disable(logging.WARNING)
        result = importlib.import_module(module).worker(spec)
        sender.send(("ok", json.loads(json.dumps(result))))  # the same plain types a fresh interpreter returns
    except BaseException:
        sender.send(("error", traceback.format_exc()))


def _run_in_fresh_interpreter(module: str, spec: dict, timeout: float | None, env: dict | None) -> dict:
    """`python -m <module> --worker '<json spec>'`; the worker prints one JSON line starting with RESULT."""
    env = {**os.environ, **ENV, **(env or {})}
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
    import datetime

    payload = {"date": datetime.date.today().isoformat(), **payload, "table": table}
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


def data_footer(fig, payload: dict, bars: str) -> None:
    """A footnote every plot carries: when and where the data were measured, and what the bars are."""
    machine = payload.get("machine") or {}
    where = f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, torch {machine.get('torch', '?')}"
    if machine.get("gpu"):
        where += f", GPU {machine['gpu']}"
    note = payload.get("plot_note")
    text = f"Data measured {payload.get('date', 'date not recorded')} on {where}. {bars}" + (
        f" {note}" if note else ""
    )
    fig.text(0.01, 0.01, text, fontsize=7, color="dimgray", ha="left", va="bottom", wrap=True)


def save_figure(fig, name: str, payload: dict | None = None, bars: str = "", top: float = 1.0) -> Path:
    """Save under bench/results/; with `payload`, a data footnote; `top` < 1 leaves room for a figure legend."""
    path = RESULTS_DIR / f"{name}.png"
    if payload is not None:
        data_footer(fig, payload, bars)
        fig.tight_layout(rect=(0, 0.07, 1, top))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
