"""Benchmark 1: the loss head alone, forward + backward of the Dense DPO score for one batch.

The Dense DPO score of a row is sum_t w_t log p(y_t) / N, with w_t = gamma on changed tokens, 1 on the other answer
tokens, 0 on the prompt. Contenders, each given the same last hidden states [B, T, H] and LM head [V, H]:

- full_logits: full logits, log_softmax, gather (how RLHF-V's public code scores answers);
- trl_head: TRL 1.16's chunked log-prob head (`trl.kernels.ChunkedLogProbFunction`, called as `add_fused_lm_head`
  calls it on this device), plain per-row sum: what stock `trl.DPOTrainer` computes;
- trl_head_weighted: the same head, per-token log-probs times w_t / N: the Dense DPO score the trainer builds on
  CUDA/XPU;
- rlhfv_tiled: `rlhfv.tiled_logprob_head.weighted_token_log_probs` (answer tokens only, cache-sized tiles): the
  trainer's path on CPU (`tiled_cpu_head=True`, the default).

Each device runs the contenders that matter there (`DEVICE_CONTENDERS`): full logits, TRL's head and rlhfv's path on
that device. On CPU, the weighting's own cost on TRL's head is measured end to end by `bench/train_step.py`.

Memory on CPU: each contender runs in a process of its own (`common.run_worker`); after the inputs are built the
peak-RSS mark is reset (/proc/self/clear_refs), and the figure is the peak RSS during forward + backward minus the RSS
just before it, so it counts logits, temporaries and gradients (including the LM head's own gradient), not the inputs.
On GPU: `torch.cuda.max_memory_allocated()` minus the allocation before the pass.
"""

from __future__ import annotations

import argparse
import json
import time

from bench import common


CONTENDERS = ("full_logits", "trl_head", "trl_head_weighted", "rlhfv_tiled")
LABELS = {
    "full_logits": "full logits + log_softmax",
    "trl_head": "TRL chunked head (stock DPO sum)",
    "trl_head_weighted": "TRL chunked head + w_t/N (rlhfv on CUDA/XPU)",
    "rlhfv_tiled": "rlhfv tiled head + w_t/N (rlhfv on CPU)",
}
# rlhfv's path differs by device: the tiled head on CPU, TRL's Triton head times w_t/N on CUDA/XPU
DEVICE_CONTENDERS = {
    "cpu": ("full_logits", "trl_head", "rlhfv_tiled"),
    "cuda": ("full_logits", "trl_head", "trl_head_weighted"),
}
GAMMA = 5.0

FULL = {"hidden": 2048, "vocabs": [32000, 128256, 152064], "seqs": [512, 2048], "batch": 1, "repeats": 1}
QUICK = {"hidden": 256, "vocabs": [8000], "seqs": [128, 256], "batch": 1, "repeats": 1}
PROMPT_FRACTION = 0.25


def build_inputs(batch, seq, hidden, vocab, device, dtype, seed=0):
    """Hidden states, LM head, labels (prompt = -100) and Dense DPO weights w_t / N, built without big temporaries."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(seed)
    hidden_states = torch.empty(batch, seq, hidden, dtype=dtype, device=device)
    hidden_states.copy_(torch.randn(batch, seq, hidden, generator=generator))
    weight = torch.empty(vocab, hidden, dtype=dtype, device=device)
    for start in range(0, vocab, 8192):  # fill in slices: no [V, H] fp32 temporary on top of the weight
        end = min(start + 8192, vocab)
        weight[start:end].copy_(torch.randn(end - start, hidden, generator=generator) * hidden**-0.5)
    labels = torch.randint(0, vocab, (batch, seq), generator=generator)
    prompt = int(seq * PROMPT_FRACTION)
    labels[:, :prompt] = -100
    weights = torch.zeros(batch, seq)
    weights[:, prompt:] = 1.0
    answer = seq - prompt
    for row in range(batch):  # three changed segments covering ~15% of the answer
        for segment in range(3):
            start = (
                prompt
                + (segment * answer) // 3
                + int(torch.randint(0, max(1, answer // 6), (1,), generator=generator))
            )
            weights[row, start : start + max(1, answer // 20)] = GAMMA
    weights = weights / weights.sum(-1, keepdim=True)
    return (
        hidden_states.requires_grad_(),
        weight.requires_grad_(),
        labels.to(device),
        weights.to(device),
    )


def dense_score(contender, hidden_states, weight, labels, weights):
    """The per-row score each contender computes (stock DPO's plain sum for `trl_head`)."""

    mask = labels != -100
    if contender == "full_logits":
        logits = hidden_states @ weight.t()
        log_probs = logits.float().log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (log_probs * weights).sum(-1)
    if contender in ("trl_head", "trl_head_weighted"):
        from trl.kernels import ChunkedLogProbFunction
        from trl.kernels.chunked_logprob import _use_triton
        from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

        # Exactly as `trl.trainer.utils.add_fused_lm_head` calls the head: compact on Triton devices, every position
        # elsewhere (fixed tile shapes), then zeros where the label is -100
        compact = _use_triton(hidden_states.device)
        flat_hidden = hidden_states[mask] if compact else hidden_states.reshape(-1, hidden_states.size(-1))
        targets = labels[mask] if compact else labels.clamp(min=0).reshape(-1)
        per_token = ChunkedLogProbFunction.apply(
            flat_hidden, weight, None, targets, 1.0, _CHUNKED_LOGPROB_CHUNK_SIZE, None, 1.0, ("log_probs",)
        )[0]
        if compact:
            per_token = per_token.new_zeros(mask.shape).masked_scatter(mask, per_token)
        else:
            per_token = per_token.view(mask.shape).masked_fill(~mask, 0)
        if contender == "trl_head":
            return per_token.sum(-1)
        return (per_token * weights).sum(-1)
    if contender == "rlhfv_tiled":
        from rlhfv.tiled_logprob_head import weighted_token_log_probs

        return weighted_token_log_probs(hidden_states, weight, labels, token_weights=weights).sum(-1)
    raise ValueError(f"unknown contender {contender!r}; choose from {CONTENDERS}")


def _import_contender(contender):
    if contender.startswith("trl_head"):
        import trl.kernels  # noqa: F401
        import trl.trainer.utils  # noqa: F401
    elif contender == "rlhfv_tiled":
        import rlhfv.tiled_logprob_head  # noqa: F401


def worker(spec: dict) -> dict:
    import torch

    device = torch.device(spec.get("device", "cpu"))
    dtype = getattr(torch, spec.get("dtype", "float32"))
    if "tile" in spec:
        import rlhfv.tiled_logprob_head as head

        head.CPU_TOKEN_CHUNK, head.CPU_VOCAB_CHUNK = spec["tile"]
    _import_contender(spec["contender"])  # imports are not part of the measured pass
    inputs = build_inputs(spec["batch"], spec["seq"], spec["hidden"], spec["vocab"], device, dtype)
    times, peaks, score = [], [], None
    for _ in range(spec.get("repeats", 1)):
        for tensor in inputs[:2]:
            tensor.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            before = common.current_rss()
            common.reset_peak_rss()
        start = time.perf_counter()
        scores = dense_score(spec["contender"], *inputs)
        (-scores.sum()).backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
            peaks.append(torch.cuda.max_memory_allocated() - before)
        else:
            peaks.append(common.peak_rss() - before)
        times.append(time.perf_counter() - start)
        score = scores.detach().float().sum().item()
    tokens = spec["batch"] * spec["seq"]
    return {
        "time_s": common.median(times),
        "times_s": times,
        "peak_bytes": max(peaks),
        "score": score,
        "tokens_per_s": tokens / common.median(times),
    }


def run(
    quick: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
    grid: dict | None = None,
    name=None,
    contenders: tuple[str, ...] | None = None,
):
    """Run the device's contenders on every shape, back to back, one process each. Returns the result payload."""
    from tqdm import tqdm

    grid = grid or (QUICK if quick else FULL)
    contenders = contenders or DEVICE_CONTENDERS[device]
    shapes = [(vocab, seq) for seq in grid["seqs"] for vocab in grid["vocabs"]]
    rows = []
    bar = tqdm(total=len(shapes) * len(contenders), desc="loss head", unit="run")
    for vocab, seq in shapes:
        batch = grid.get("batch_for_seq", {}).get(seq, grid["batch"])
        results = {}
        for contender in contenders:
            spec = {
                "contender": contender,
                "batch": batch,
                "seq": seq,
                "hidden": grid["hidden"],
                "vocab": vocab,
                "device": device,
                "dtype": dtype,
                "repeats": grid.get("repeats", 1),
            }
            bar.set_postfix_str(f"V={vocab} T={seq} {contender}")
            results[contender] = common.run_worker("bench.loss_head", spec)
            bar.update()
        base = results["full_logits"]
        dense_reference = results["full_logits"]["score"]
        for contender in contenders:
            result = results[contender]
            row = {
                "vocab": vocab,
                "seq": seq,
                "batch": batch,
                "hidden": grid["hidden"],
                "contender": contender,
                "label": LABELS[contender],
                "time_s": result["time_s"],
                "peak_gib": result["peak_bytes"] / common.GIB,
                "time_vs_full": result["time_s"] / base["time_s"],
                "mem_vs_full": result["peak_bytes"] / base["peak_bytes"],
                "time_vs_trl": result["time_s"] / results["trl_head"]["time_s"],
                "mem_vs_trl": result["peak_bytes"] / results["trl_head"]["peak_bytes"],
                "score": result["score"],
            }
            if contender != "trl_head":  # the stock sum is not the dense score, so it has nothing to agree with
                row["score_rel_err"] = abs(result["score"] - dense_reference) / max(abs(dense_reference), 1e-12)
            rows.append(row)
    bar.close()
    return {
        "title": f"Loss head: forward + backward of the Dense DPO score ({device}, {dtype})",
        "grid": grid,
        "contenders": list(contenders),
        "prompt_fraction": PROMPT_FRACTION,
        "gamma": GAMMA,
        "rows": rows,
    }


COLUMNS = [
    ("vocab", "vocab"),
    ("seq", "T"),
    ("batch", "B"),
    ("label", "contender"),
    ("peak_gib", "peak extra GiB"),
    ("mem_vs_full", "mem / full"),
    ("time_vs_full", "time / full"),
    ("mem_vs_trl", "mem / TRL"),
    ("time_vs_trl", "time / TRL"),
    ("time_s", "time s"),
    ("score_rel_err", "score rel. err vs full"),
]


def plot(payload: dict, name: str):
    rows = payload["rows"]
    fig, axes = common.new_figure(2, width=12, height=4.2)
    shapes = sorted({(r["seq"], r["vocab"]) for r in rows})
    x_labels = [f"T={seq}\nV={vocab // 1000}k" for seq, vocab in shapes]
    contenders = payload["contenders"]
    width = 0.8 / len(contenders)
    for axis, key, title in ((axes[0][0], "peak_gib", "peak extra memory (GiB)"), (axes[0][1], "time_s", "time (s)")):
        for index, contender in enumerate(contenders):
            values = [
                next(r[key] for r in rows if r["contender"] == contender and (r["seq"], r["vocab"]) == shape)
                for shape in shapes
            ]
            positions = [i + (index - (len(contenders) - 1) / 2) * width for i in range(len(shapes))]
            axis.bar(positions, values, width, label=LABELS[contender])
        axis.set_xticks(range(len(shapes)), x_labels, fontsize=8)
        axis.set_xlabel("shape: tokens per row T, vocabulary V")
        axis.set_ylabel(title)
        axis.set_title(title)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(contenders), fontsize=7, bbox_to_anchor=(0.5, 0.95))
    fig.suptitle(payload["title"], fontsize=10, y=0.995)
    return common.save_figure(
        fig, name, payload, "One measurement per bar (memory: one process per contender).", top=0.88
    )


def notes(payload: dict) -> list[str]:
    grid = payload["grid"]
    return [
        f"Hidden {grid['hidden']}; first {int(PROMPT_FRACTION * 100)}% of each row is prompt (label -100); "
        f"gamma {GAMMA} on ~15% of the answer; fp32 on CPU.",
        "Memory: one process per contender; peak RSS during forward + backward minus RSS just before "
        "(inputs excluded; the LM head's own gradient, V x H fp32, is included in every contender).",
        f"Batch {grid['batch']} row(s) per shape on CPU: it keeps the largest full-logits case (T=2048, V=152k) "
        "well under 10 GB and the whole grid inside the CPU time budget.",
        "Ratios < 1 are better. `score rel. err` compares each contender's dense score with full logits'.",
    ]


def main_worker(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True)
    args = parser.parse_args(argv)
    common.emit_result(worker(json.loads(args.worker)))


if __name__ == "__main__":
    main_worker()
