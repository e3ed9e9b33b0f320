"""Benchmark 2: one optimizer step of `DenseDPOTrainer` vs stock `trl.DPOTrainer`, same model, same batch.

Each contender trains in a fresh process (so its memory is its own) on the same random-init model and the same
synthetic pairs: `warmup` steps, then `steps` measured steps. Contenders run back to back in the order A B B A
(`rounds=2`), which cancels a linear drift of the machine's speed; the reported time is the median over all measured
steps of all rounds. Memory on CPU: the peak-RSS mark is reset after the warm-up (the optimizer state exists by then),
and the figure is the peak RSS during the measured steps minus the RSS just before them: activations, gradients and
temporaries of a step. The process's total peak RSS is reported too. On GPU: `torch.cuda.max_memory_allocated()`.

Models (built in-process, random weights):
- `llama`: 4 layers, hidden 1024, vocab 152,064, tied embeddings (a Qwen2.5-style vocabulary on a small trunk);
- `llava`: the same trunk with a 32,064 vocabulary and a 4-layer CLIP tower (112 px, 14 px patches: 64 image
  tokens per row).

The worker also serves benchmark 3 (`bench/ref_precompute.py`), which times a whole epoch instead of single steps.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import tempfile
import time

from bench import common


CONTENDERS = ("trl_dpo", "dense_dpo")
LABELS = {"trl_dpo": "trl.DPOTrainer", "dense_dpo": "rlhfv.DenseDPOTrainer"}

MODELS = {
    "llama": {"kind": "llama", "vocab": 152064, "hidden": 1024, "layers": 4, "heads": 16, "kv_heads": 8},
    "llava": {
        "kind": "llava",
        "vocab": 32064,
        "hidden": 1024,
        "layers": 4,
        "heads": 16,
        "kv_heads": 8,
        "vision_hidden": 256,
        "vision_layers": 4,
        "image_size": 112,
        "patch_size": 14,
    },
}
QUICK_MODELS = {
    "llama": {"kind": "llama", "vocab": 8000, "hidden": 128, "layers": 2, "heads": 4, "kv_heads": 2},
    "llava": {
        "kind": "llava",
        "vocab": 8000,
        "hidden": 128,
        "layers": 2,
        "heads": 4,
        "kv_heads": 2,
        "vision_hidden": 64,
        "vision_layers": 2,
        "image_size": 56,
        "patch_size": 14,
    },
}
# Words of prompt / answer per row and pairs per batch (rows per batch = 2 x pairs: chosen then rejected)
FULL_DATA = {"prompt_words": 20, "answer_words": 60, "pairs": 1, "warmup": 1, "steps": 2, "rounds": 2}
QUICK_DATA = {"prompt_words": 8, "answer_words": 20, "pairs": 1, "warmup": 1, "steps": 2, "rounds": 1}


# ---------------------------------------------------------------- models and data


def build_model(shape: dict, seed: int = 0):
    """A random-init model of `shape` and its processing class (tokenizer, or LLaVA processor)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlhfv.tiny_models import build_tokenizer

    tokenizer = build_tokenizer()
    text_config = LlamaConfig(
        vocab_size=shape["vocab"],
        hidden_size=shape["hidden"],
        intermediate_size=shape.get("intermediate", int(shape["hidden"] * 2.75)),
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv_heads"],
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=shape["kind"] == "llama",
    )
    torch.manual_seed(seed)
    if shape["kind"] == "llama":
        return LlamaForCausalLM(text_config), tokenizer
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    size, patch = shape["image_size"], shape["patch_size"]
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token=tokenizer.image_token,
        chat_template=tokenizer.chat_template,
    )
    vision = CLIPVisionConfig(
        hidden_size=shape["vision_hidden"],
        intermediate_size=shape["vision_hidden"] * 4,
        num_hidden_layers=shape["vision_layers"],
        num_attention_heads=4,
        image_size=size,
        patch_size=patch,
        projection_dim=shape["vision_hidden"],
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text_config,
        image_token_id=tokenizer.convert_tokens_to_ids(tokenizer.image_token),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=(size // patch) ** 2,
    )
    return LlavaForConditionalGeneration(config), processor


def build_dataset(num_pairs: int, prompt_words: int, answer_words: int, images: bool, image_size: int = 224, seed=0):
    """Conversational pairs (docs/data_format.md): the chosen answer replaces a few words of the rejected one."""
    from datasets import Dataset

    from rlhfv.tiny_models import DEFAULT_CORPUS

    rng = random.Random(seed)
    words = sorted({w.strip(".,;!?") for line in DEFAULT_CORPUS for w in line.split()} - {""})
    rows = []
    for index in range(num_pairs):
        prompt = " ".join(rng.choice(words) for _ in range(prompt_words))
        rejected_words = [rng.choice(words) for _ in range(answer_words)]
        chosen_words = list(rejected_words)
        changed = sorted(rng.sample(range(answer_words), max(1, answer_words // 10)))
        for position in changed:
            chosen_words[position] = rng.choice([w for w in words if w != rejected_words[position]])
        row = {
            "id": f"bench-{index}",
            "prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": " ".join(chosen_words)}],
            "rejected": [{"role": "assistant", "content": " ".join(rejected_words)}],
            "chosen_spans": _word_spans(chosen_words, changed),
            "rejected_spans": _word_spans(rejected_words, changed),
        }
        if images:
            from PIL import Image

            color = tuple(rng.randrange(256) for _ in range(3))
            row["images"] = [Image.new("RGB", (image_size, image_size), color)]
        rows.append(row)
    return Dataset.from_list(rows)


def _word_spans(words: list[str], positions: list[int]) -> list[list[int]]:
    spans, offset = [], 0
    starts = []
    for word in words:
        starts.append(offset)
        offset += len(word) + 1
    for position in positions:
        spans.append([starts[position], starts[position] + len(words[position])])
    return spans


# ---------------------------------------------------------------- the worker


def make_trainer(spec: dict, model, processing_class, dataset, output_dir, callbacks):
    import torch

    on_gpu = spec.get("device", "cpu") == "cuda"
    common_args = {
        "output_dir": output_dir,
        "per_device_train_batch_size": spec["pairs"],
        "learning_rate": 1e-6,
        "use_cpu": not on_gpu,
        "bf16": on_gpu,
        "report_to": [],
        "save_strategy": "no",
        "logging_steps": 10**6,
        "disable_tqdm": True,
        "seed": 0,
        "max_length": None,
        "dataloader_num_workers": 0,
        "precompute_ref_log_probs": spec.get("precompute", False),
        "use_liger_kernel": spec.get("liger", False),
    }
    if spec.get("max_steps"):
        common_args["max_steps"] = spec["max_steps"]
    else:
        common_args["num_train_epochs"] = 1
    # Without a precompute, both need a reference in memory: an in-memory model has no path to reload one from
    ref_model = None if spec.get("precompute") else copy.deepcopy(model)
    if ref_model is not None and on_gpu:
        ref_model.to(torch.bfloat16)
    if spec["contender"] == "dense_dpo":
        from rlhfv.config import DenseDPOConfig
        from rlhfv.trainer import DenseDPOTrainer

        args = DenseDPOConfig(**common_args, gamma=5.0, ref_cache_dir=output_dir)
        trainer_class = DenseDPOTrainer
    else:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common_args)
        trainer_class = DPOTrainer
    return trainer_class(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=dataset,
        processing_class=processing_class,
        callbacks=callbacks,
    )


def worker(spec: dict) -> dict:
    import torch
    from transformers import TrainerCallback

    on_gpu = spec.get("device", "cpu") == "cuda"
    shape = spec["model"]
    model, processing_class = build_model(shape)
    if on_gpu:
        model.to("cuda", torch.bfloat16)
    num_pairs = spec.get("num_pairs") or spec["pairs"] * (spec["warmup"] + spec["steps"])
    dataset = build_dataset(
        num_pairs,
        spec["prompt_words"],
        spec["answer_words"],
        images=shape["kind"] == "llava",
        image_size=shape.get("image_size", 224),
    )

    def sync():
        if on_gpu:
            torch.cuda.synchronize()

    def memory_now():
        return torch.cuda.memory_allocated() if on_gpu else common.current_rss()

    def reset_peak():
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        else:
            common.reset_peak_rss()

    def peak():
        return torch.cuda.max_memory_allocated() if on_gpu else common.peak_rss()

    class StepProbe(TrainerCallback):
        """Times each optimizer step; resets the peak-memory mark when the measured steps start."""

        def __init__(self):
            self.times, self.tokens, self.before, self.setup_peak = [], [], None, None

        def on_step_begin(self, args, state, control, **kwargs):
            sync()
            if state.global_step == spec["warmup"]:
                self.setup_peak = peak()
                self.before = memory_now()
                reset_peak()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            self.times.append(time.perf_counter() - self.start)

    probe = StepProbe()
    with tempfile.TemporaryDirectory() as output_dir:
        if spec.get("mode") == "epoch":
            return _epoch(spec, model, processing_class, dataset, output_dir, sync, memory_now, reset_peak, peak)
        spec = {**spec, "max_steps": spec["warmup"] + spec["steps"]}
        trainer = make_trainer(spec, model, processing_class, dataset, output_dir, [probe])
        token_counts = _tokens_per_batch(trainer)
        trainer.train()
    measured = probe.times[spec["warmup"] :]
    step_peak = peak()
    return {
        "step_times_s": measured,
        "warmup_times_s": probe.times[: spec["warmup"]],
        "step_peak_extra_bytes": step_peak - probe.before,
        "process_peak_bytes": max(step_peak, probe.setup_peak or 0) if not on_gpu else step_peak,
        "tokens_per_step": token_counts,
        "params": sum(p.numel() for p in model.parameters()),
    }


def _tokens_per_batch(trainer) -> int:
    """Tokens in the first training batch (chosen + rejected rows, padding included)."""
    batch = next(iter(trainer.get_train_dataloader()))
    return int(batch["attention_mask"].numel())


def _epoch(spec, model, processing_class, dataset, output_dir, sync, memory_now, reset_peak, peak):
    """Benchmark 3's measurement: trainer set-up (which runs the precompute, if any) + one epoch, memory included."""
    sync()
    before = memory_now()
    reset_peak()
    start = time.perf_counter()
    trainer = make_trainer(spec, model, processing_class, dataset, output_dir, [])
    sync()
    setup_s = time.perf_counter() - start
    trainer.train()
    sync()
    total_s = time.perf_counter() - start
    return {
        "setup_s": setup_s,
        "train_s": total_s - setup_s,
        "total_s": total_s,
        "peak_extra_bytes": peak() - before,
        "steps": trainer.state.global_step,
        "ref_model_kept": trainer.ref_model is not None,
    }


# ---------------------------------------------------------------- the driver


def run(quick: bool = False, device: str = "cpu", models: dict | None = None, data: dict | None = None, **extra):
    """Both contenders on each model, A B B A, one fresh process per run. Returns the result payload."""
    from tqdm import tqdm

    models = models or (QUICK_MODELS if quick else MODELS)
    data = data or (QUICK_DATA if quick else FULL_DATA)
    order = []
    for round_index in range(data["rounds"]):
        order += list(CONTENDERS) if round_index % 2 == 0 else list(reversed(CONTENDERS))
    rows, raw = [], {}
    bar = tqdm(total=len(models) * len(order), desc="train step", unit="run")
    for model_name, shape in models.items():
        results = {contender: [] for contender in CONTENDERS}
        for contender in order:
            bar.set_postfix_str(f"{model_name} {contender}")
            spec = {"contender": contender, "model": shape, "device": device, **data, **extra}
            results[contender].append(common.run_worker("bench.train_step", spec))
            bar.update()
        raw[model_name] = results
        summary = {}
        for contender in CONTENDERS:
            runs = results[contender]
            summary[contender] = {
                "time_s": common.median([t for r in runs for t in r["step_times_s"]]),
                "step_mem": common.median([r["step_peak_extra_bytes"] for r in runs]),
                "process_mem": common.median([r["process_peak_bytes"] for r in runs]),
                "tokens": runs[0]["tokens_per_step"],
                "params": runs[0]["params"],
            }
        base = summary["trl_dpo"]
        for contender in CONTENDERS:
            s = summary[contender]
            rows.append(
                {
                    "model": model_name,
                    "params_m": s["params"] / 1e6,
                    "tokens": s["tokens"],
                    "contender": contender,
                    "label": LABELS[contender],
                    "step_s": s["time_s"],
                    "tokens_per_s": s["tokens"] / s["time_s"],
                    "step_mem_gib": s["step_mem"] / common.GIB,
                    "process_mem_gib": s["process_mem"] / common.GIB,
                    "time_vs_trl": s["time_s"] / base["time_s"],
                    "step_mem_vs_trl": s["step_mem"] / base["step_mem"],
                    "process_mem_vs_trl": s["process_mem"] / base["process_mem"],
                }
            )
    bar.close()
    return {
        "title": f"Training step: DenseDPOTrainer vs trl.DPOTrainer ({device})",
        "models": models,
        "data": data,
        "order": order,
        "rows": rows,
        "raw": raw,
        "targets": {"time_vs_trl": 1.03, "step_mem_vs_trl": 1.02},
    }


COLUMNS = [
    ("model", "model"),
    ("params_m", "params (M)"),
    ("tokens", "tokens/step"),
    ("label", "trainer"),
    ("step_s", "step s (median)"),
    ("tokens_per_s", "tokens/s"),
    ("step_mem_gib", "step peak extra GiB"),
    ("process_mem_gib", "process peak GiB"),
    ("time_vs_trl", "time / TRL"),
    ("step_mem_vs_trl", "step mem / TRL"),
    ("process_mem_vs_trl", "process mem / TRL"),
]


def notes(payload: dict) -> list[str]:
    data = payload["data"]
    return [
        f"{data['pairs']} pair(s) per batch (chosen + rejected rows), {data['warmup']} warm-up step(s), "
        f"{data['steps']} measured steps per run, run order {' '.join(payload['order'])} per model; "
        "AdamW, fp32 on CPU, reference = a copy of the initial policy.",
        "Step memory: peak RSS during the measured steps minus RSS before them (fresh process per run); process "
        "peak: the whole process's peak RSS, model, reference and optimizer state included.",
        "Targets: dense weighting costs at most 3% time (time / TRL <= 1.03) and 2% memory (step mem / TRL <= 1.02).",
    ]


def plot(payload: dict, name: str):
    rows = payload["rows"]
    fig, axes = common.new_figure(2, width=10, height=4)
    models = list(dict.fromkeys(r["model"] for r in rows))
    width = 0.38
    for axis, key, title in (
        (axes[0][0], "time_vs_trl", "step time / trl.DPOTrainer"),
        (axes[0][1], "step_mem_vs_trl", "step peak memory / trl.DPOTrainer"),
    ):
        for index, contender in enumerate(CONTENDERS):
            values = [next(r[key] for r in rows if r["model"] == m and r["contender"] == contender) for m in models]
            axis.bar([i + (index - 0.5) * width for i in range(len(models))], values, width, label=LABELS[contender])
        axis.axhline(1.0, color="gray", lw=0.8)
        axis.set_xticks(range(len(models)), models)
        axis.set_ylim(0, max(1.2, max(r[key] for r in rows) * 1.1))
        axis.set_title(title)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(payload["title"], fontsize=10)
    return common.save_figure(fig, name)


def main_worker(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True)
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)
    common.emit_result(worker(json.loads(args.worker)))


if __name__ == "__main__":
    main_worker()
