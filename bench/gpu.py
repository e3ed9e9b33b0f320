"""Benchmark 5 (CUDA only): benchmarks 1 and 2 at a ~1.5B shape in bf16, with Liger's layer kernels off and on.

- Loss head: hidden 2048, vocab 152,064, 4 rows x 4,096 tokens, bf16, `torch.cuda.max_memory_allocated`.
- Training step: a Qwen2.5-1.5B-shaped Llama (28 layers, hidden 1536, intermediate 8960, 12 heads / 2 KV heads,
  vocab 151,936, tied), 4 pairs per batch, bf16; `trl.DPOTrainer` vs `DenseDPOTrainer`, each with
  `use_liger_kernel` False and True (TRL then swaps in Liger's RMSNorm/RoPE/SwiGLU kernels; the fused loss stays off).
  Reports peak memory and tokens per second. Without a GPU the benchmark records that it was skipped.
"""

from __future__ import annotations

from bench import common, loss_head, train_step


GPU_LOSS_GRID = {"hidden": 2048, "vocabs": [152064], "seqs": [4096], "batch": 4, "repeats": 3}
GPU_MODEL = {
    "kind": "llama",
    "vocab": 151936,
    "hidden": 1536,
    "intermediate": 8960,
    "layers": 28,
    "heads": 12,
    "kv_heads": 2,
}
GPU_DATA = {"prompt_words": 200, "answer_words": 500, "pairs": 4, "warmup": 2, "steps": 5}


def available() -> bool:
    import torch

    return torch.cuda.is_available()


def run(quick: bool = False):
    if not available():
        return {"title": "GPU benchmarks", "skipped": "no CUDA GPU on this machine", "rows": []}
    import torch

    data = dict(GPU_DATA, steps=2, warmup=1) if quick else GPU_DATA
    head = loss_head.run(device="cuda", dtype="bfloat16", grid=GPU_LOSS_GRID)
    rows = []
    for liger in (False, True):
        try:
            result = train_step.run(device="cuda", models={"qwen2.5-1.5b-shape": GPU_MODEL}, data=data, liger=liger)
        except RuntimeError as error:  # e.g. liger-kernel missing or unsupported on this GPU: keep the other rows
            rows.append({"liger": liger, "error": str(error).splitlines()[0]})
            continue
        rows += [{**row, "liger": liger} for row in result["rows"]]
    return {
        "title": f"GPU: loss head and training step at a ~1.5B shape, bf16 ({torch.cuda.get_device_name(0)})",
        "gpu": torch.cuda.get_device_name(0),
        "loss_head": head,
        "model": GPU_MODEL,
        "data": data,
        "rows": rows,
    }


COLUMNS = [
    ("liger", "Liger layer kernels"),
    ("label", "trainer"),
    ("tokens", "tokens/step"),
    ("step_s", "step s (median)"),
    ("tokens_per_s", "tokens/s"),
    ("step_mem_gib", "step peak extra GiB"),
    ("process_mem_gib", "peak allocated GiB"),
    ("time_vs_trl", "time / TRL"),
    ("step_mem_vs_trl", "step mem / TRL"),
]


def notes(payload: dict) -> list[str]:
    if payload.get("skipped"):
        return [f"Skipped: {payload['skipped']}."]
    head_rows = payload["loss_head"]["rows"]
    head_table = common.markdown_table(head_rows, loss_head.COLUMNS)
    return [
        f"GPU: {payload['gpu']}. Loss head (hidden 2048, bf16, 4 x 4096 tokens), peak = max_memory_allocated:",
        "\n\n" + head_table + "\n",
        "Training step: ratios are against trl.DPOTrainer with the same Liger setting.",
    ]


def plot(payload: dict, name: str):
    if payload.get("skipped"):
        return None
    rows = [r for r in payload["rows"] if "error" not in r]
    fig, axes = common.new_figure(2, width=10, height=4)
    labels = [f"{r['label']}\nliger={r['liger']}" for r in rows]
    axes[0][0].bar(labels, [r["process_mem_gib"] for r in rows])
    axes[0][0].set_title("peak allocated (GiB)")
    axes[0][1].bar(labels, [r["tokens_per_s"] for r in rows], color="tab:orange")
    axes[0][1].set_title("tokens / s")
    for axis in axes[0]:
        axis.tick_params(axis="x", labelsize=7)
    fig.suptitle(payload["title"], fontsize=10)
    return common.save_figure(fig, name)
