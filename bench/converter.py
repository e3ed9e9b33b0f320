"""Benchmark 4: converter throughput (pairs per second), one process vs `--num-proc 2`, and peak memory.

Peak memory of a conversion plus `save_to_disk` is measured in a fresh process at 100k and 1M pairs for a full run
(`MEMORY_SIZES`), at the run's own size for a smaller one.

The measurement itself lives in `bench/bench_converter.py` (`run(num_pairs, num_procs) -> dict`); this module turns
its result into the common result files.
"""

from __future__ import annotations

from bench import common


NUM_PROCS = (1, 2)
MEMORY_SIZES = (100_000, 1_000_000)


def run(num_pairs: int) -> dict:
    try:
        from bench.bench_converter import run as run_converter
    except ImportError as error:
        return {
            "title": "Converter throughput",
            "missing": f"bench/bench_converter.py is not available ({error}); nothing measured",
            "rows": [],
        }
    from bench.bench_converter import measure_memory

    result = run_converter(num_pairs, num_procs=NUM_PROCS)
    memory = measure_memory(MEMORY_SIZES if num_pairs >= MEMORY_SIZES[0] else (num_pairs,))
    rows = [
        {
            "num_proc": int(num_proc),
            "pairs": result.get("num_pairs", num_pairs),
            "seconds": run_result["seconds"],
            "pairs_per_s": run_result["pairs_per_s"],
            "speedup": run_result["speedup"],
        }
        for num_proc, run_result in result["runs"].items()
    ]
    return {"title": "Converter throughput (data_tools.convert)", "converter": result, "memory": memory, "rows": rows}


COLUMNS = [
    ("num_proc", "processes"),
    ("pairs", "pairs"),
    ("seconds", "seconds"),
    ("pairs_per_s", "pairs/s"),
    ("speedup", "pairs/s / 1 process"),
]


def notes(payload: dict) -> list[str]:
    if payload.get("missing"):
        return [payload["missing"]]
    result = payload["converter"]
    memory = [
        f"Peak memory, convert + save_to_disk of {run['pairs']} pairs ({run['input_mib']} MiB of JSONL) in a fresh "
        f"process: {run['peak_anon_mib']} MiB anonymous (after imports: {run['baseline_anon_mib']} MiB), "
        f"{run['peak_rss_mib']} MiB RSS including the memory-mapped Arrow file; {run['total_seconds']} s."
        for run in payload.get("memory", {}).get("runs", [])
    ]
    return memory + [
        f"{result.get('num_pairs')} synthetic corrections, ~{result.get('words_per_answer')} words per answer, read "
        "from JSONL, diffed into spans and built into a dataset (bench/bench_converter.py); writing is not timed.",
        f"Machine cores: {result.get('cpu_count')}; with 2 cores shared by other work, 2 processes can be slower "
        "than 1 (process start-up and pickling cost more than they save).",
    ]


def plot(payload: dict, name: str):
    rows = payload["rows"]
    fig, axes = common.new_figure(1, width=5, height=3.6)
    axis = axes[0][0]
    axis.bar([str(r["num_proc"]) for r in rows], [r["pairs_per_s"] for r in rows])
    axis.set_xlabel("worker processes (--num-proc)")
    axis.set_ylabel("pairs converted per second")
    axis.set_title(f"converter throughput, {rows[0].get('pairs', '?')} pairs")
    return common.save_figure(fig, name, payload, "One run per bar.")
