"""Benchmark 3: a Dense DPO epoch with per-token reference log-probs precomputed vs computed on the fly.

Both runs train `DenseDPOTrainer` for one epoch on the same synthetic text pairs and the same random-init model, each
in a process of its own, back to back (order A B; A B B A with `rounds=2`).
- on the fly (`precompute_ref_log_probs=False`): a frozen copy of the policy is the reference, run at every step;
- precomputed (`precompute_ref_log_probs=True`, no `ref_model`): the trainer runs the reference once over the dataset
  at set-up, stores per-token log-probs in its cache (`ref_cache_dir`, a fresh temporary folder: no cache hit), and
  keeps no reference model during training.
Time = trainer set-up (tokenisation, and the precompute when on) + `train()`; memory = peak RSS from just before the
trainer is built to the end of the epoch, minus the RSS at that point (so the reference copy counts for the
on-the-fly run, and the cache table for the precomputed one).
"""

from __future__ import annotations

from bench import common, train_step


CONTENDERS = ("on_the_fly", "precomputed")
LABELS = {"on_the_fly": "reference on the fly", "precomputed": "precomputed per-token reference"}
FULL_MODEL = {"kind": "llama", "vocab": 32000, "hidden": 512, "layers": 4, "heads": 8, "kv_heads": 4}
QUICK_MODEL = train_step.QUICK_MODELS["llama"]
FULL_DATA = {"num_pairs": 16, "pairs": 2, "prompt_words": 20, "answer_words": 60, "rounds": 1}
QUICK_DATA = {"num_pairs": 8, "pairs": 2, "prompt_words": 8, "answer_words": 20, "rounds": 1}


def run(quick: bool = False, device: str = "cpu", model: dict | None = None, data: dict | None = None):
    from tqdm import tqdm

    model = model or (QUICK_MODEL if quick else FULL_MODEL)
    data = data or (QUICK_DATA if quick else FULL_DATA)
    order = []
    for round_index in range(data["rounds"]):
        order += list(CONTENDERS) if round_index % 2 == 0 else list(reversed(CONTENDERS))
    results = {contender: [] for contender in CONTENDERS}
    for contender in tqdm(order, desc="ref precompute", unit="run"):
        spec = {
            "contender": "dense_dpo",
            "mode": "epoch",
            "precompute": contender == "precomputed",
            "model": model,
            "device": device,
            "warmup": 0,
            "steps": 0,
            **data,
        }
        results[contender].append(common.run_worker("bench.train_step", spec))
    summary = {
        contender: {
            key: common.median([r[key] for r in runs]) for key in ("setup_s", "train_s", "total_s", "peak_extra_bytes")
        }
        for contender, runs in results.items()
    }
    base = summary["on_the_fly"]
    rows = []
    for contender in CONTENDERS:
        s = summary[contender]
        rows.append(
            {
                "contender": contender,
                "label": LABELS[contender],
                "setup_s": s["setup_s"],
                "train_s": s["train_s"],
                "total_s": s["total_s"],
                "peak_gib": s["peak_extra_bytes"] / common.GIB,
                "total_vs_fly": s["total_s"] / base["total_s"],
                "train_vs_fly": s["train_s"] / base["train_s"],
                "mem_vs_fly": s["peak_extra_bytes"] / base["peak_extra_bytes"],
                "steps": results[contender][0]["steps"],
                "ref_model_kept": results[contender][0]["ref_model_kept"],
            }
        )
    return {
        "title": f"Reference precompute: one Dense DPO epoch ({device})",
        "model": model,
        "data": data,
        "order": order,
        "rows": rows,
        "raw": results,
    }


COLUMNS = [
    ("label", "reference"),
    ("steps", "steps"),
    ("setup_s", "set-up s"),
    ("train_s", "train s"),
    ("total_s", "total s"),
    ("peak_gib", "peak extra GiB"),
    ("total_vs_fly", "total time / on the fly"),
    ("train_vs_fly", "train time / on the fly"),
    ("mem_vs_fly", "memory / on the fly"),
    ("ref_model_kept", "reference model kept"),
]


def notes(payload: dict) -> list[str]:
    model, data = payload["model"], payload["data"]
    return [
        f"Llama {model['layers']} layers, hidden {model['hidden']}, vocab {model['vocab']}; {data['num_pairs']} pairs, "
        f"{data['pairs']} pairs per batch, one epoch; run order {' '.join(payload['order'])}.",
        "Set-up includes tokenisation and, when precomputing, the reference pass over the whole dataset; the "
        "precompute pays for itself from the second epoch on, or when the cache is reused (a new gamma needs none).",
    ]


def plot(payload: dict, name: str):
    rows = payload["rows"]
    fig, axes = common.new_figure(2, width=9, height=3.8)
    labels = [r["label"] for r in rows]
    axes[0][0].bar(labels, [r["setup_s"] for r in rows], label="set-up (incl. precompute)")
    axes[0][0].bar(labels, [r["train_s"] for r in rows], bottom=[r["setup_s"] for r in rows], label="train")
    axes[0][0].set_title("time")
    axes[0][0].set_ylabel("seconds")
    axes[0][0].legend(fontsize=8)
    axes[0][1].bar(labels, [r["peak_gib"] for r in rows], color="tab:green")
    axes[0][1].set_title("peak extra memory")
    axes[0][1].set_ylabel("GiB")
    for axis in axes[0]:
        axis.tick_params(axis="x", labelsize=8)
        axis.set_xlabel("reference log-probs")
    fig.suptitle(payload["title"], fontsize=10)
    return common.save_figure(fig, name, payload, "One run per bar.")
