"""Benchmark 2: one optimizer step of `DenseDPOTrainer` vs stock `trl.DPOTrainer`, same model, same batch.

(Over 350 lines on purpose: one worker protocol serves the memory runs, the interleaved timing and the epoch runs, and
splitting it would spread one measurement method over several files.)

Contenders (`DEVICE_CONTENDERS`): stock `trl.DPOTrainer`; `DenseDPOTrainer` on TRL's fused head
(`tiled_cpu_head=False`: the path it takes on CUDA/XPU, so this pair isolates what the dense weighting costs); and, on
CPU, `DenseDPOTrainer` as it runs there by default, on rlhfv's tiled head.

Time: all contenders train in one process, from copies of the same random-init model on the same synthetic pairs,
and take turns step by step (`interleaved_worker`): `warmup` rounds, then `steps` measured rounds, each round one
optimizer step per contender, in the order A B C, then C B A, and so on. Every trainer runs its own `train()`, in its
own thread; a callback lets only the contender whose turn it is start a step, so steps never overlap. A change of the
machine's speed therefore hits all contenders alike, and the ratio to TRL is the median over rounds of the ratio of
the steps of one round (paired). On this kind of shared machine single steps vary by 10% or more, which separate
processes run one after the other cannot tell from a 3% cost.

Memory: one more run per contender, each in a process of its own (`common.run_worker`) so that its memory is its
own. On CPU it runs under a fixed glibc allocator (`common.EXACT_MEMORY_ENV`: every block of 64 KiB or more is its
own mapping, returned when freed), where the RSS follows the live tensors: the default allocator's heap reuse moves
the peak RSS of identical runs by up to 4%, more than the 2% being measured, while under this setting identical runs
agree to 0.02%. The peak-RSS mark is reset after one warm-up step (the optimizer state exists by then), and the
figure is the peak RSS during the next step minus the RSS just before it: activations, gradients and temporaries of
a step. The process's total peak RSS is reported too. On GPU: `torch.cuda.max_memory_allocated()`, same window.

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
import threading
import time

from bench import common
from bench.head_calls import count_head_calls


CONTENDERS = ("trl_dpo", "dense_dpo_trl_head", "dense_dpo")
LABELS = {
    "trl_dpo": "trl.DPOTrainer",
    "dense_dpo_trl_head": "rlhfv.DenseDPOTrainer on TRL's head",
    "dense_dpo": "rlhfv.DenseDPOTrainer (CPU default: tiled head)",
}
# `tiled_cpu_head` does nothing on CUDA/XPU, so there DenseDPOTrainer runs once, on TRL's head
DEVICE_CONTENDERS = {"cpu": CONTENDERS, "cuda": ("trl_dpo", "dense_dpo_trl_head")}

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
# Words of prompt / answer per row, pairs per batch (rows per batch = 2 x pairs: chosen then rejected), warm-up and
# measured rounds of the timing run (one step per contender per round)
FULL_DATA = {"prompt_words": 20, "answer_words": 60, "pairs": 1, "warmup": 2, "steps": 4}
QUICK_DATA = {"prompt_words": 8, "answer_words": 20, "pairs": 1, "warmup": 1, "steps": 2}


# ---------------------------------------------------------------- models and data


def build_model(shape: dict, seed: int = 0):
    """A random-init model of `shape` and its processing class (tokenizer, or LLaVA processor)."""
    from rlhfv.tiny_models import build_llava, build_text_model, build_tokenizer

    tokenizer = build_tokenizer()
    text_shape = {
        "hidden_size": shape["hidden"],
        "num_layers": shape["layers"],
        "vocab_size": shape["vocab"],
        "intermediate_size": shape.get("intermediate", int(shape["hidden"] * 2.75)),
        "num_heads": shape["heads"],
        "num_kv_heads": shape["kv_heads"],
        "max_positions": 4096,
        "tie_word_embeddings": shape["kind"] == "llama",
        "seed": seed,
    }
    if shape["kind"] == "llama":
        return build_text_model(tokenizer, **text_shape), tokenizer
    return build_llava(
        tokenizer,
        image_size=shape["image_size"],
        patch_size=shape["patch_size"],
        vision_hidden_size=shape["vision_hidden"],
        vision_intermediate_size=shape["vision_hidden"] * 4,
        vision_layers=shape["vision_layers"],
        vision_heads=4,
        **text_shape,
    )


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
    if spec["contender"].startswith("dense_dpo"):
        from rlhfv.config import DenseDPOConfig
        from rlhfv.trainer import DenseDPOTrainer

        tiled = spec["contender"] == "dense_dpo"
        args = DenseDPOConfig(**common_args, gamma=5.0, ref_cache_dir=output_dir, tiled_cpu_head=tiled)
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
        if spec.get("mode") == "interleaved":
            return interleaved_worker(spec, model, processing_class, dataset, output_dir, sync)
        spec = {**spec, "max_steps": spec["warmup"] + spec["steps"]}
        trainer = make_trainer(spec, model, processing_class, dataset, output_dir, [probe])
        token_counts = _tokens_per_batch(trainer)
        counts = count_head_calls()
        served = dict(counts)
        trainer.train()
        head_calls = {path: counts[path] - served[path] for path in served}
    measured = probe.times[spec["warmup"] :]
    step_peak = peak()
    return {
        "step_times_s": measured,
        "warmup_times_s": probe.times[: spec["warmup"]],
        "step_peak_extra_bytes": step_peak - probe.before,
        "process_peak_bytes": max(step_peak, probe.setup_peak or 0) if not on_gpu else step_peak,
        "tokens_per_step": token_counts,
        "params": sum(p.numel() for p in model.parameters()),
        "head_calls": head_calls,  # how many fused-head calls of the steps rlhfv's tiled head and TRL's head served
    }


def round_schedule(contenders, warmup: int, steps: int) -> list[str]:
    """Turn order of the timing run: warm-up rounds A B C, then measured rounds alternating A B C / C B A."""
    schedule = list(contenders) * warmup
    for index in range(steps):
        schedule += list(contenders) if index % 2 == 0 else list(reversed(contenders))
    return schedule


class _Turns:
    """Lets one trainer step at a time, in the order of a schedule; a failed trainer releases the others."""

    def __init__(self, schedule: list[str]):
        self.schedule, self.position, self.failed = schedule, 0, None
        self.condition = threading.Condition()

    def wait_for(self, name: str):
        with self.condition:
            self.condition.wait_for(
                lambda: self.failed or self.position == len(self.schedule) or self.schedule[self.position] == name
            )
            if self.failed:
                raise RuntimeError(f"{name} stopped: {self.failed}")
            if self.position == len(self.schedule):
                raise RuntimeError(f"{name} asked for a step after the last of the schedule")

    def done(self):
        with self.condition:
            self.position += 1
            self.condition.notify_all()

    def fail(self, reason: str):
        with self.condition:
            self.failed = self.failed or reason
            self.condition.notify_all()


def interleaved_worker(spec: dict, model, processing_class, dataset, output_dir, sync) -> dict:
    """Every contender of `spec["contenders"]` trains from its own copy of `model`; steps taken in turns (see above)."""
    import os

    from transformers import TrainerCallback

    counts = count_head_calls()
    contenders = spec["contenders"]
    schedule = round_schedule(contenders, spec["warmup"], spec["steps"])
    turns = _Turns(schedule)
    times = {name: [] for name in contenders}
    step_log = []  # (contender, start, end) of every step, in the order they ran
    head_calls = {name: {path: 0 for path in counts} for name in contenders}

    class TakeTurns(TrainerCallback):
        def __init__(self, name):
            self.name = name

        def on_step_begin(self, args, state, control, **kwargs):
            turns.wait_for(self.name)
            sync()
            self.served = dict(counts)
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            end = time.perf_counter()
            times[self.name].append(end - self.start)
            step_log.append((self.name, self.start, end))
            for path, count in counts.items():
                head_calls[self.name][path] += count - self.served[path]
            turns.done()

    run_spec = {**spec, "max_steps": spec["warmup"] + spec["steps"]}
    trainers = {}
    for name in contenders:  # built one after the other: set-up never overlaps a step
        trainers[name] = make_trainer(
            {**run_spec, "contender": name},
            copy.deepcopy(model),
            processing_class,
            dataset,
            os.path.join(output_dir, name),
            [TakeTurns(name)],
        )
    token_counts = _tokens_per_batch(trainers[contenders[0]])
    errors = {}

    def train(name):
        try:
            trainers[name].train()
        except BaseException as error:  # reported below; the other trainers must not wait for this one's turns
            errors[name] = error
            turns.fail(f"{name} failed: {error!r}")

    threads = [threading.Thread(target=train, args=(name,), name=name) for name in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        name, error = next(iter(errors.items()))
        raise RuntimeError(f"{name} failed in the interleaved timing run") from error
    warmup = spec["warmup"]
    return {
        "schedule": schedule,
        "step_log": step_log,
        "step_times_s": {name: times[name][warmup:] for name in contenders},
        "warmup_times_s": {name: times[name][:warmup] for name in contenders},
        "head_calls": head_calls,
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
    """Per model: one interleaved timing run of every contender, then one memory run per contender."""
    from tqdm import tqdm

    models = models or (QUICK_MODELS if quick else MODELS)
    data = data or (QUICK_DATA if quick else FULL_DATA)
    contenders = list(DEVICE_CONTENDERS[device])
    rows, raw = [], {}
    bar = tqdm(total=len(models) * (1 + len(contenders)), desc="train step", unit="run")
    for model_name, shape in models.items():
        spec = {"model": shape, "device": device, **data, **extra}
        bar.set_postfix_str(f"{model_name} timing, in turns")
        timing = common.run_worker("bench.train_step", {**spec, "mode": "interleaved", "contenders": contenders})
        for contender in contenders:
            _checked(timing["head_calls"][contender], contender, device)
        bar.update()
        memory = {}
        for contender in contenders:
            bar.set_postfix_str(f"{model_name} {contender} memory")
            # One warm-up step creates the optimizer state; the measured step after it is the steady state
            memory_spec = {**spec, "contender": contender, "warmup": 1, "steps": 1}
            result = common.run_worker("bench.train_step", memory_spec, exact_memory=device == "cpu")
            memory[contender] = result
            _checked(result["head_calls"], contender, device)
            bar.update()
        raw[model_name] = {"timing": timing, "memory": memory}
        steps = timing["step_times_s"]
        base_steps, base_memory = steps["trl_dpo"], memory["trl_dpo"]
        for contender in contenders:
            mem = memory[contender]
            median_s = common.median(steps[contender])
            rows.append(
                {
                    "model": model_name,
                    "params_m": timing["params"] / 1e6,
                    "tokens": timing["tokens_per_step"],
                    "contender": contender,
                    "label": LABELS[contender],
                    "step_s": median_s,
                    "tokens_per_s": timing["tokens_per_step"] / median_s,
                    "step_mem_gib": mem["step_peak_extra_bytes"] / common.GIB,
                    "process_mem_gib": mem["process_peak_bytes"] / common.GIB,
                    # Paired: each round's step against TRL's step of the same round, then the median over rounds
                    "time_vs_trl": common.median([t / b for t, b in zip(steps[contender], base_steps, strict=True)]),
                    "step_mem_vs_trl": mem["step_peak_extra_bytes"] / base_memory["step_peak_extra_bytes"],
                    "process_mem_vs_trl": mem["process_peak_bytes"] / base_memory["process_peak_bytes"],
                }
            )
    bar.close()
    return {
        "title": f"Training step: DenseDPOTrainer vs trl.DPOTrainer ({device})",
        "models": models,
        "data": data,
        "contenders": contenders,
        "schedule": round_schedule(contenders, data["warmup"], data["steps"]),
        "rows": rows,
        "raw": raw,
        "targets": {"time_vs_trl": 1.03, "step_mem_vs_trl": 1.02},
    }


def _checked(head_calls: dict, contender: str, device: str) -> dict:
    """Refuse a run whose steps were not scored by the head its label names."""
    tiled = head_calls["tiled"]
    expected_tiled = contender == "dense_dpo" and device == "cpu"
    if (tiled > 0) != expected_tiled:
        raise RuntimeError(
            f"{contender} on {device}: rlhfv's tiled head served {tiled} head calls, expected "
            f"{'some' if expected_tiled else 'none'}; the benchmark would compare the wrong heads."
        )
    return head_calls


COLUMNS = [
    ("model", "model"),
    ("params_m", "params (M)"),
    ("tokens", "tokens/step"),
    ("label", "trainer"),
    ("step_s", "step s (median)"),
    ("tokens_per_s", "tokens/s"),
    ("step_mem_gib", "step peak extra GiB"),
    ("process_mem_gib", "process peak GiB"),
    ("time_vs_trl", "time / TRL (paired)"),
    ("step_mem_vs_trl", "step mem / TRL"),
    ("process_mem_vs_trl", "process mem / TRL"),
]


def notes(payload: dict) -> list[str]:
    data = payload["data"]
    return [
        f"{data['pairs']} pair(s) per batch (chosen + rejected rows); AdamW, fp32 on CPU, reference = a copy of the "
        "initial policy.",
        f"Time: all contenders in one process, taking turns step by step: {data['warmup']} warm-up round(s), then "
        f"{data['steps']} measured rounds (turns, warm-up included: {' '.join(payload['schedule'])}); step s = "
        "median of a contender's steps; time / TRL = median over rounds of its step / TRL's step of the same round.",
        "Step memory: peak RSS during a measured step minus RSS before it, one process per contender with "
        "glibc's mmap threshold fixed at 64 KiB so that RSS follows the live tensors; process peak: the whole "
        "process's peak RSS, model, reference and optimizer state included.",
        "Targets: dense weighting costs at most 3% time (time / TRL <= 1.03) and 2% memory (step mem / TRL <= 1.02): "
        "the row 'on TRL's head' is the weighting alone (the path on CUDA/XPU); the CPU default also changes the "
        "head.",
    ]


def _time_ratio_range(payload: dict, model: str, contender: str) -> tuple[float, float] | None:
    """(lowest, highest) of the per-round step-time ratios contender / trl.DPOTrainer (rounds interleaved)."""
    timing = ((payload.get("raw") or {}).get(model) or {}).get("timing") or {}
    times = timing.get("step_times_s") or {}
    if contender not in times or "trl_dpo" not in times:
        return None
    ratios = [c / t for c, t in zip(times[contender], times["trl_dpo"], strict=False) if t]
    return (min(ratios), max(ratios)) if ratios else None


def plot(payload: dict, name: str):
    rows = payload["rows"]
    fig, axes = common.new_figure(2, width=10, height=4.6)
    models = list(dict.fromkeys(r["model"] for r in rows))
    contenders = payload["contenders"]
    width = 0.8 / len(contenders)
    for axis, key, title, ylabel in (
        (axes[0][0], "time_vs_trl", "step time", "step time / trl.DPOTrainer's (1 = same)"),
        (axes[0][1], "step_mem_vs_trl", "step peak memory", "step peak memory / trl.DPOTrainer's (1 = same)"),
    ):
        for index, contender in enumerate(contenders):
            values = [next(r[key] for r in rows if r["model"] == m and r["contender"] == contender) for m in models]
            positions = [i + (index - (len(contenders) - 1) / 2) * width for i in range(len(models))]
            errors = None
            if key == "time_vs_trl":
                spans = [_time_ratio_range(payload, m, contender) for m in models]
                if all(spans):
                    errors = [[v - lo for v, (lo, _) in zip(values, spans, strict=True)],
                              [hi - v for v, (_, hi) in zip(values, spans, strict=True)]]  # fmt: skip
            axis.bar(positions, values, width, yerr=errors, capsize=3, label=LABELS[contender])
        axis.axhline(1.0, color="gray", lw=0.8)
        axis.set_xticks(range(len(models)), models)
        axis.set_xlabel("model")
        axis.set_ylabel(ylabel, fontsize=8)
        axis.set_ylim(0, max(1.2, max(r[key] for r in rows) * 1.25))
        axis.set_title(title)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(contenders), fontsize=8, bbox_to_anchor=(0.5, 0.95))
    fig.suptitle(payload["title"], fontsize=10, y=0.995)
    path = common.save_figure(
        fig,
        name,
        payload,
        "Time bars: ratio of median step times over the interleaved rounds; whiskers: lowest and "
        "highest per-round ratio. Memory bars: one measurement each.",
        top=0.88,
    )
    return path


def main_worker(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True)
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)
    common.emit_result(worker(json.loads(args.worker)))


if __name__ == "__main__":
    main_worker()
