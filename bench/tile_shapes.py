"""rlhfv's tiled head with several tile shapes (tokens x vocabulary entries), to pick the CPU default.

Not part of `all`; run it with `rlhfv bench --only tile_shapes`. Forward + backward of the dense score, all tile
shapes in one process, interleaved round after round (median), so that a machine shared with other work loads every
shape alike. TRL's own CPU tile (4096 x 32768) is the last row.
"""

from __future__ import annotations

from bench import common


SHAPE = {"batch": 1, "seq": 2048, "hidden": 2048, "vocab": 32000}
QUICK_SHAPE = {"batch": 1, "seq": 256, "hidden": 256, "vocab": 8000}
TILES = [(256, 8192), (512, 4096), (1024, 4096), (2048, 2048), (1024, 16384), (4096, 32768)]
QUICK_TILES = [(256, 2048), (1024, 4096)]


def run(quick: bool = False, rounds: int = 3) -> dict:
    import time

    import torch

    from bench import loss_head
    from rlhfv.tiled_logprob_head import weighted_token_log_probs

    shape = QUICK_SHAPE if quick else SHAPE
    tiles = QUICK_TILES if quick else TILES
    hidden_states, weight, labels, weights = loss_head.build_inputs(
        shape["batch"], shape["seq"], shape["hidden"], shape["vocab"], torch.device("cpu"), torch.float32
    )
    times = {tile: [] for tile in tiles}
    for _ in range(1 if quick else rounds):
        for tile in tiles:
            hidden_states.grad = weight.grad = None
            start = time.perf_counter()
            scores = weighted_token_log_probs(
                hidden_states, weight, labels, weights, token_chunk=tile[0], vocab_chunk=tile[1]
            ).sum(-1)
            (-scores.sum()).backward()
            times[tile].append(time.perf_counter() - start)
    rows = [
        {
            "token_chunk": tile[0],
            "vocab_chunk": tile[1],
            "tile_mib": tile[0] * tile[1] * 4 / 2**20,
            "time_s": common.median(values),
            "min_s": min(values),
            "times_s": values,
        }
        for tile, values in times.items()
    ]
    # Other work on the machine only ever adds time, so the fastest round is the least disturbed estimate
    best = min(row["min_s"] for row in rows)
    for row in rows:
        row["time_vs_best"] = row["min_s"] / best
    return {"title": "rlhfv tiled head: tile shapes (CPU)", "shape": shape, "rows": rows}


COLUMNS = [
    ("token_chunk", "tokens"),
    ("vocab_chunk", "vocab entries"),
    ("tile_mib", "tile MiB (fp32)"),
    ("time_s", "median s"),
    ("min_s", "fastest round s"),
    ("time_vs_best", "fastest / best"),
]


def notes(payload: dict) -> list[str]:
    return [
        f"Shape {payload['shape']}, forward + backward of the dense score, interleaved rounds; ratios use each shape's fastest round (load from other work only adds time)."
    ]


def plot(payload: dict, name: str):
    rows = payload["rows"]
    fig, axes = common.new_figure(1, width=6, height=3.6)
    axes[0][0].bar([f"{r['token_chunk']}x{r['vocab_chunk']}" for r in rows], [r["time_vs_best"] for r in rows])
    axes[0][0].set_title("time of each tile shape")
    axes[0][0].set_xlabel("tile: tokens x vocabulary columns per block")
    axes[0][0].set_ylabel("time / fastest tile's (1 = fastest)", fontsize=8)
    axes[0][0].tick_params(axis="x", labelsize=7)
    return common.save_figure(fig, name, payload, "One measurement per bar.")


def summary(payload: dict) -> list[str]:
    return [
        f"tile {r['token_chunk']}x{r['vocab_chunk']}: time / best x{r['time_vs_best']:.2f}" for r in payload["rows"]
    ]
