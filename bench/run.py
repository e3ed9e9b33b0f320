"""`rlhfv bench` / `make bench`: memory and speed of Dense DPO against its peers.

    rlhfv bench                       # every benchmark, CPU part in under 15 minutes on 2 cores
    rlhfv bench --only loss_head      # one benchmark (comma-separated list for several)
    rlhfv bench --quick               # small shapes, for a smoke test

Each benchmark writes bench/results/<name>.json, <name>.md and <name>.png and prints its ratios. Contenders of one
comparison run back to back in one invocation, so their ratios are comparable even where absolute times are not.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

from data_tools.settings import SettingError, add_settings_arguments, check_range, read_settings


BENCHMARKS = ("loss_head", "train_step", "ref_precompute", "converter", "gpu", "feedback")
# Diagnostics, run only when named: where TRL's head spends its CPU time, and the CPU tile shape of rlhfv's head
EXTRAS = ("trl_head_profile", "tile_shapes")
# 100k pairs of ~100 words: the size the converter target is stated for; smaller runs are dominated by start-up
CONVERTER_PAIRS = {"full": 100_000, "quick": 500}


@dataclass
class BenchSettings:
    """`rlhfv bench`: which benchmarks to run, at what size, and where their results go."""

    only: str = field(
        default="all",
        metadata={
            "help": f"Benchmarks to run: 'all' ({', '.join(BENCHMARKS)}) or a comma-separated list of those and the "
            f"diagnostics {', '.join(EXTRAS)}."
        },
    )
    quick: bool = field(default=False, metadata={"help": "Small shapes and fewer repeats (a smoke test)."})
    converter_pairs: int | None = field(
        default=None,
        metadata={
            "help": f"Pairs for the converter benchmark (default: {CONVERTER_PAIRS['full']}, "
            f"{CONVERTER_PAIRS['quick']} with --quick)."
        },
    )
    results_dir: str | None = field(
        default=None, metadata={"help": "Where to write the results (default: bench/results)."}
    )

    def __post_init__(self):
        check_range("converter_pairs", self.converter_pairs, minimum=1, optional=True)
        unknown = _names(self.only)[1]
        if unknown:
            raise SettingError(f"`only`: {_unknown_message(unknown)}")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark memory and speed of Dense DPO against its peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`BenchSettings`' flags and `--config`; the parsed arguments' `func` runs the benchmarks."""
    add_settings_arguments(parser, BenchSettings)
    parser.set_defaults(func=lambda arguments: main(read_settings(arguments, BenchSettings)[0]))


def _names(only: str) -> tuple[list[str], list[str]]:
    """The benchmarks `--only` names, and those of them that do not exist."""
    names = list(BENCHMARKS) if only in ("all", "") else [name.strip() for name in only.split(",") if name.strip()]
    return names, [name for name in names if name not in BENCHMARKS + EXTRAS]


def _unknown_message(unknown: list[str]) -> str:
    return f"unknown benchmark(s) {unknown}; choose from all, {', '.join(BENCHMARKS + EXTRAS)}"


def selected(only: str) -> list[str]:
    names, unknown = _names(only)
    if unknown:
        raise SystemExit(f"rlhfv bench: {_unknown_message(unknown)}")
    return names


def main(args: BenchSettings) -> int:
    import os
    from pathlib import Path

    from bench import common

    for key, value in common.ENV.items():
        os.environ.setdefault(key, value)
    if args.results_dir:
        common.RESULTS_DIR = Path(args.results_dir).resolve()
    machine = common.machine_info()
    print(
        f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB, torch {machine['torch']}, "
        f"trl {machine['trl']}" + (f", GPU {machine['gpu']}" if machine["gpu"] else ", no GPU")
    )
    started = time.perf_counter()
    for name in selected(args.only):
        load_before = common.load_average()
        bench_start = time.perf_counter()
        payload, module = _run_one(name, args)
        payload.update(
            machine=machine,
            load_before=load_before,
            load_after=common.load_average(),
            wall_s=round(time.perf_counter() - bench_start, 1),
            quick=args.quick,
        )
        rows = payload.get("rows", [])
        path = common.write_results(name, payload, rows, module.COLUMNS, module.notes(payload))
        image = module.plot(payload, name) if rows else None
        print(f"\n== {payload.get('title', name)} ({payload['wall_s']} s)")
        for line in _summary(name, payload):
            print("  " + line)
        print(f"  -> {path}" + (f", {image}" if image else ""))
    print(f"\nall done in {time.perf_counter() - started:.0f} s")
    return 0


def _run_one(name: str, args):
    if name == "loss_head":
        from bench import loss_head

        return loss_head.run(quick=args.quick), loss_head
    if name == "train_step":
        from bench import train_step

        return train_step.run(quick=args.quick), train_step
    if name == "ref_precompute":
        from bench import ref_precompute

        return ref_precompute.run(quick=args.quick), ref_precompute
    if name == "converter":
        from bench import converter

        pairs = args.converter_pairs or CONVERTER_PAIRS["quick" if args.quick else "full"]
        return converter.run(pairs), converter
    if name == "gpu":
        from bench import gpu

        return gpu.run(quick=args.quick), gpu
    import importlib

    module = importlib.import_module(f"bench.{name}")  # the extras: trl_head_profile, tile_shapes
    return module.run(quick=args.quick), module


def _summary(name: str, payload: dict) -> list[str]:
    """The ratios worth reading at a glance (the json and md files hold everything)."""
    if payload.get("skipped"):
        return [f"skipped: {payload['skipped']}"]
    rows = payload.get("rows", [])
    lines = []
    if name in EXTRAS or name == "feedback":
        import importlib

        return importlib.import_module(f"bench.{name}").summary(payload)
    if name == "loss_head":
        for row in rows:
            if row["contender"] == "full_logits":
                continue
            lines.append(
                f"V={row['vocab']:>6} T={row['seq']:>4} {row['label']:<34} memory x{row['mem_vs_full']:.2f}, "
                f"time x{row['time_vs_full']:.2f} vs full logits; memory x{row['mem_vs_trl']:.2f}, "
                f"time x{row['time_vs_trl']:.2f} vs TRL head"
            )
    elif name == "train_step" or name == "gpu":
        for row in rows:
            if "error" in row:
                lines.append(f"liger={row['liger']}: {row['error']}")
            elif row["contender"] != "trl_dpo":
                prefix = f"liger={row['liger']} " if "liger" in row else ""
                lines.append(
                    f"{prefix}{row['model']}: {row['label']} / trl.DPOTrainer: step time x{row['time_vs_trl']:.3f}, "
                    f"step memory x{row['step_mem_vs_trl']:.3f}, process peak x{row['process_mem_vs_trl']:.3f}"
                )
    elif name == "ref_precompute":
        row = next(r for r in rows if r["contender"] == "precomputed")
        lines.append(
            f"precomputed / on the fly: epoch total time x{row['total_vs_fly']:.2f}, train time "
            f"x{row['train_vs_fly']:.2f}, peak memory x{row['mem_vs_fly']:.2f}"
        )
    elif name == "converter":
        for row in rows:
            lines.append(f"{row['num_proc']} process(es): x{row['speedup']:.2f} pairs/s vs 1 process")
        if payload.get("missing"):
            lines.append(payload["missing"])
    return lines


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    arguments = parser.parse_args(argv)
    return arguments.func(arguments)


if __name__ == "__main__":
    sys.exit(cli())
