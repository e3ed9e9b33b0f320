"""Where TRL's chunked log-prob head spends its time on CPU: torch.profiler's top ops, TRL's head vs rlhfv's.

Not part of `all`; run it with `rlhfv bench --only trl_head_profile`. At hidden 2048, vocab 32,000, 2,048 tokens,
in one process: `ROUNDS` interleaved rounds of forward + backward of the Dense DPO score (full logits, TRL's head,
rlhfv's head, then again), whose median wall times give time ratios that a machine shared with other work cannot
skew much (each round sees about the same load), then one profiled pass per contender for the op breakdown.
"""

from __future__ import annotations

from bench import common, loss_head


SHAPE = {"hidden": 2048, "vocab": 32000, "seq": 2048}
CONTENDERS = ("full_logits", "trl_head_weighted", "rlhfv_tiled")
ROUNDS = 3
QUICK_SHAPE = {"hidden": 256, "vocab": 8000, "seq": 256}


def profile(contender: str, hidden: int, vocab: int, seq: int, top: int = 10):
    import time

    import torch
    from torch.profiler import ProfilerActivity, profile

    loss_head._import_contender(contender)
    warm = loss_head.build_inputs(1, 16, hidden, 512, torch.device("cpu"), torch.float32)
    (-loss_head.dense_score(contender, *warm).sum()).backward()
    inputs = loss_head.build_inputs(1, seq, hidden, vocab, torch.device("cpu"), torch.float32)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        (-loss_head.dense_score(contender, *inputs).sum()).backward()
    wall = time.perf_counter() - start
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return wall, [
        {
            "contender": contender,
            "op": e.key,
            "calls": e.count,
            "self_cpu_s": e.self_cpu_time_total / 1e6,
            "share": e.self_cpu_time_total / total,
        }
        for e in events[:top]
    ]


def interleaved_times(hidden: int, vocab: int, seq: int, rounds: int) -> dict:
    """Median wall time of forward + backward per contender, contenders interleaved round by round."""
    import time

    import torch

    for contender in CONTENDERS:
        loss_head._import_contender(contender)
    inputs = loss_head.build_inputs(1, seq, hidden, vocab, torch.device("cpu"), torch.float32)
    times = {contender: [] for contender in CONTENDERS}
    for _ in range(rounds):
        for contender in CONTENDERS:
            for tensor in inputs[:2]:
                tensor.grad = None
            start = time.perf_counter()
            (-loss_head.dense_score(contender, *inputs).sum()).backward()
            times[contender].append(time.perf_counter() - start)
    return times


def run(quick: bool = False) -> dict:
    from torch.profiler import profile as torch_profile

    shape = QUICK_SHAPE if quick else SHAPE
    times = interleaved_times(**shape, rounds=1 if quick else ROUNDS)
    medians = {contender: common.median(values) for contender, values in times.items()}
    with torch_profile():  # the profiler's one-off start-up cost is not charged to the first contender
        pass
    rows, walls = [], {}
    for contender in CONTENDERS:
        walls[contender], top = profile(contender, **shape)
        rows += top
    return {
        "title": "Profile of the loss heads on CPU (top ops by self CPU time)",
        "shape": shape,
        "interleaved_times_s": times,
        "median_s": medians,
        "time_vs_full": {k: v / medians["full_logits"] for k, v in medians.items()},
        "time_vs_trl": {k: v / medians["trl_head_weighted"] for k, v in medians.items()},
        "profiled_wall_s": walls,
        "rows": rows,
    }


COLUMNS = [
    ("contender", "contender"),
    ("op", "op"),
    ("calls", "calls"),
    ("self_cpu_s", "self CPU s"),
    ("share", "share"),
]


def notes(payload: dict) -> list[str]:
    medians = ", ".join(
        f"{k} {v:.2f} s (x{payload['time_vs_full'][k]:.2f} vs full, x{payload['time_vs_trl'][k]:.2f} vs TRL)"
        for k, v in payload["median_s"].items()
    )
    walls = ", ".join(f"{k} {v:.1f} s" for k, v in payload["profiled_wall_s"].items())
    return [
        f"Shape {payload['shape']}, batch 1, forward + backward of the dense score.",
        f"Interleaved rounds, median wall time: {medians}.",
        f"Profiled pass (one per contender, profiler overhead included): {walls}.",
    ]


def plot(payload: dict, name: str):
    return None


def summary(payload: dict) -> list[str]:
    return [
        f"{k}: time x{payload['time_vs_full'][k]:.2f} vs full logits, x{payload['time_vs_trl'][k]:.2f} vs TRL head "
        "(median of interleaved rounds)"
        for k in payload["median_s"]
    ]
