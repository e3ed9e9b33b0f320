"""Converter throughput and peak memory: synthetic text-only corrections through `data_tools.convert.convert`.

    python -m bench.bench_converter --pairs 100000                    # throughput, 1 vs 2 processes
    python -m bench.bench_converter --memory 100000 1000000           # peak memory of convert + save_to_disk

Peak memory is measured in a fresh child process per size, which converts and saves the dataset the way
`rlhfv convert` does (`data_tools.convert_cli`); a sampler thread records the peak of the process's anonymous memory
(`RssAnon`: what the conversion itself holds) and `ru_maxrss` (which also counts pages of the memory-mapped Arrow
file the kernel can drop at any time).

Each answer has ~100 words (Zipf-distributed vocabulary, sentences with punctuation); each correction replaces,
deletes or inserts a few words, the way annotators edit hallucinations. Conversion includes reading the JSONL,
parsing, the segment diff and building the Arrow-backed dataset; writing to disk is timed separately.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time


FUNCTION_WORDS = "the a of and in on is with to there are at by its an".split()


def _vocabulary(rng: random.Random, size: int = 3000) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(size)]


def _answer(rng: random.Random, vocabulary: list[str], words: int) -> list[str]:
    units = []
    while len(units) < words:
        sentence = [
            rng.choice(FUNCTION_WORDS) if rng.random() < 0.35 else rng.choice(vocabulary[: rng.randint(50, 3000)])
        ]
        sentence += [
            rng.choice(FUNCTION_WORDS) if rng.random() < 0.35 else rng.choice(vocabulary[: rng.randint(50, 3000)])
            for _ in range(rng.randint(6, 16))
        ]
        if len(sentence) > 8 and rng.random() < 0.5:
            sentence.insert(rng.randint(3, len(sentence) - 2), ",")
        units += [sentence[0].capitalize(), *sentence[1:], "."]
    return units


def _correct(rng: random.Random, vocabulary: list[str], units: list[str]) -> list[str]:
    corrected = list(units)
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(len(corrected))
        kind = rng.random()
        if kind < 0.5:
            corrected[position] = rng.choice(vocabulary)  # replace a word
        elif kind < 0.8:
            del corrected[position : position + rng.randint(1, 5)]  # delete a clause
        else:
            corrected.insert(position, rng.choice(vocabulary))  # insert a word
    return corrected


def _join(units: list[str]) -> str:
    return " ".join(units).replace(" ,", ",").replace(" .", ".")


def write_corrections(path: str, num_pairs: int, seed: int = 0, words: int = 100) -> int:
    rng = random.Random(seed)
    vocabulary = _vocabulary(rng)
    written = 0
    with open(path, "w", encoding="utf-8") as handle:
        while written < num_pairs:
            units = _answer(rng, vocabulary, words)
            corrected = _correct(rng, vocabulary, units)
            response, fixed = _join(units), _join(corrected)
            if response == fixed:
                continue
            record = {
                "id": f"p{written}",
                "question": "Describe the image in detail.",
                "response": response,
                "corrected": fixed,
            }
            handle.write(json.dumps(record) + "\n")
            written += 1
    return written


def _cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the worker pool is joined before convert returns)."""
    import resource

    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def _time_conversion(path: str, num_proc: int) -> tuple[float, float, int]:
    from data_tools.convert import convert

    start, cpu_start = time.perf_counter(), _cpu_seconds()
    result = convert([path], format="corrections", num_proc=num_proc, progress=False)
    elapsed, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    assert result.report.written == result.report.read, result.report.summary()
    return elapsed, cpu, result.report.written


def run(num_pairs: int = 100_000, num_procs=(1, 2), seed: int = 0) -> dict:
    """Convert `num_pairs` synthetic corrections with each process count; returns pairs/s and speed-ups vs 1 process."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "corrections.jsonl")
        write_corrections(path, num_pairs, seed)
        results = {"num_pairs": num_pairs, "words_per_answer": 100, "cpu_count": os.cpu_count(), "runs": {}}
        for num_proc in num_procs:
            elapsed, cpu, written = _time_conversion(path, num_proc)
            results["runs"][str(num_proc)] = {
                "seconds": round(elapsed, 3),
                "pairs_per_s": round(written / elapsed, 1),
                # CPU seconds of all processes: what the conversion costs whatever else shares the machine
                "cpu_seconds": round(cpu, 3),
                "pairs_per_cpu_s": round(written / cpu, 1),
            }
        base = results["runs"][str(num_procs[0])]["pairs_per_s"]
        for run_result in results["runs"].values():
            run_result["speedup"] = round(run_result["pairs_per_s"] / base, 2)
        if hasattr(os, "getloadavg"):
            results["load_average_after"] = [round(load, 2) for load in os.getloadavg()]
    return results


def _rss_anon_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for text in handle:
            if text.startswith("RssAnon:"):
                return int(text.split()[1])
    return 0


def _memory_child(path: str, output: str, num_proc: int) -> dict:
    """Runs in a child process: convert `path` and save it to `output`, reporting time and peak memory."""
    import resource
    import threading

    import datasets  # noqa: F401  (the libraries a conversion loads, before the baseline)
    import pyarrow  # noqa: F401

    from data_tools.convert import convert

    baseline = _rss_anon_kib()
    peak = [baseline]
    done = threading.Event()

    def sample():
        while not done.wait(0.05):
            peak[0] = max(peak[0], _rss_anon_kib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    result = convert([path], format="corrections", num_proc=num_proc, progress=False, cache_dir=f"{output}.work")
    converted = time.perf_counter() - start
    result.dataset.save_to_disk(output)
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    peak[0] = max(peak[0], _rss_anon_kib())
    pairs = result.report.written
    del result
    shutil.rmtree(f"{output}.work", ignore_errors=True)
    return {
        "pairs": pairs,
        "convert_seconds": round(converted, 1),
        "total_seconds": round(elapsed, 1),
        "baseline_anon_mib": round(baseline / 1024, 1),
        "peak_anon_mib": round(peak[0] / 1024, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "input_mib": round(os.path.getsize(path) / 2**20, 1),
    }


def measure_memory(sizes=(100_000, 1_000_000), seed: int = 0, num_proc: int = 1, folder: str | None = None) -> dict:
    """Peak memory of converting and saving `sizes` synthetic pairs (~100 words per answer), one child per size."""
    import subprocess
    import sys

    results = {"words_per_answer": 100, "num_proc": num_proc, "runs": []}
    with tempfile.TemporaryDirectory(dir=folder) as work:
        for size in sizes:
            path = os.path.join(work, f"corrections-{size}.jsonl")
            write_corrections(path, size, seed)
            output = os.path.join(work, f"dense-{size}")
            code = (
                "import json, sys; from bench.bench_converter import _memory_child; "
                f"print(json.dumps(_memory_child({path!r}, {output!r}, {num_proc})))"
            )
            run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            results["runs"].append(json.loads(run.stdout.strip().splitlines()[-1]))
            os.remove(path)
            shutil.rmtree(output, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100_000, help="synthetic pairs to convert (default: 100000)")
    parser.add_argument("--num-procs", type=int, nargs="+", default=[1, 2], help="process counts (default: 1 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--memory", type=int, nargs="+", metavar="PAIRS", help="measure peak memory at these sizes instead"
    )
    parser.add_argument("--tmp", metavar="DIR", help="folder for the synthetic input and output (default: system tmp)")
    args = parser.parse_args(argv)
    if args.memory:
        results = measure_memory(tuple(args.memory), args.seed, args.num_procs[0], args.tmp)
        for run in results["runs"]:
            print(
                f"{run['pairs']} pairs ({run['input_mib']} MiB of JSONL): convert {run['convert_seconds']} s, "
                f"with save {run['total_seconds']} s; peak anonymous memory {run['peak_anon_mib']} MiB "
                f"(after imports: {run['baseline_anon_mib']} MiB), peak RSS {run['peak_rss_mib']} MiB"
            )
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(results, handle, indent=2)
        return 0
    if hasattr(os, "getloadavg"):
        print(f"load average before: {', '.join(f'{load:.2f}' for load in os.getloadavg())}")
    results = run(args.pairs, tuple(args.num_procs), args.seed)
    for num_proc, run_result in results["runs"].items():
        print(
            f"num_proc={num_proc}: {run_result['seconds']:.2f} s, {run_result['pairs_per_s']:.0f} pairs/s, "
            f"x{run_result['speedup']:.2f} vs num_proc={args.num_procs[0]}; {run_result['cpu_seconds']:.2f} CPU s "
            f"({run_result['pairs_per_cpu_s']:.0f} pairs per CPU second)"
        )
    if "load_average_after" in results:
        print(f"load average after: {', '.join(f'{load:.2f}' for load in results['load_average_after'])}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
