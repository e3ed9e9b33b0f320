"""The training runs of tests/test_sharded.py: each one in a single process, or sharded in every process of a
2-process launch (`python sharded_worker.py OUT fsdp|zero3`, started by `accelerate launch` with the FSDP2 or the
DeepSpeed ZeRO-3 config of recipes/accelerate_configs).

A run trains Dense DPO for a few steps on the tiny Llama or the tiny LLaVA and writes `OUT/<run>/result-<rank>.json`
(its log history, and how its parameters are sharded) and, from the last step, `OUT/<run>/gathered.safetensors`
(every parameter as a whole tensor, gathered here with `DTensor.full_tensor` or DeepSpeed's `GatheredParameters`,
not through the trainer's own save).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from datasets import Dataset
from PIL import Image


sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_trainer import rows_with_spans  # noqa: E402

from rlhfv import DenseDPOConfig, DenseDPOTrainer  # noqa: E402
from rlhfv.tiny_models import build_llava, build_text_model, build_tokenizer  # noqa: E402


STEPS = 3
GLOBAL_BATCH = 4  # pairs per optimizer step: 4 in one process, 2 in each of two
# The text run checkpoints sharded (its own `fsdp_config`, which wins over the launch's accelerate config); the image
# run takes every FSDP setting from recipes/accelerate_configs/fsdp.yaml (full state dict) through the launch
TEXT_FSDP = {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "state_dict_type": "SHARDED_STATE_DICT"}
# (model, variant) of every run of each launch; a sharded launch also resumes each full run from its step-2 checkpoint
RUNS = {
    "fsdp": [(kind, variant) for kind in ("llama", "llava") for variant in ("full", "precompute", "lora")],
    "zero3": [("llava", "full"), ("llava", "precompute")],  # the paper's setting: LLaVA, full fine-tuning, ZeRO-3
}
COLOURS = [(200, 30, 30), (30, 160, 40), (20, 40, 220), (230, 200, 20)]


def dataset(kind: str) -> Dataset:
    """Twelve pairs (three steps of four): the hand-marked pairs of test_trainer, each with four different images."""
    rows = []
    for k, colour in enumerate(COLOURS):
        for row in rows_with_spans():
            row = {**row, "id": f"{row['id']}-{k}"}
            if kind == "llava":
                row["images"] = [Image.new("RGB", (40, 40), colour)]
            rows.append(row)
    return Dataset.from_list(rows)


def models(kind: str):
    """(policy, reference, processing class). The reference differs from the policy, so that from the first step
    the loss depends on the token scales of both."""
    tokenizer = build_tokenizer()
    if kind == "llama":
        return build_text_model(tokenizer, seed=0), build_text_model(tokenizer, seed=1), tokenizer
    policy, processor = build_llava(tokenizer, seed=0)
    reference, _ = build_llava(tokenizer, seed=1)
    return policy, reference, processor


def build_trainer(kind: str, variant: str, out: Path, processes: int, backend: str = "fsdp", **overrides):
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    # A previous ZeRO-3 trainer in this process leaves its config registered, under which transformers would build
    # the next models partitioned; models built in memory must start whole, like the one-process run's
    unset_hf_deepspeed_config()
    policy, reference, processing_class = models(kind)
    peft_config = None
    if variant == "lora":
        from peft import LoraConfig

        # Random A and B (not B = 0): the policy differs from its reference (adapters off) from the first step
        peft_config = LoraConfig(
            r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        )
        reference = None
    sharded = processes > 1
    settings = dict(
        output_dir=str(out / f"{kind}-{variant}"),
        use_cpu=True,
        bf16=False,
        report_to=[],
        seed=0,
        activation_checkpointing=False,
        per_device_train_batch_size=GLOBAL_BATCH // processes,
        max_steps=STEPS,
        logging_steps=1,
        learning_rate=1e-3,
        warmup_steps=0,
        max_length=None,
        gamma=5.0,
        beta=0.1,
        save_strategy="steps" if variant == "full" else "no",
        save_steps=2,
        disable_tqdm=True,
        precompute_ref_log_probs=variant == "precompute",
        ref_cache_dir=str(out / f"ref-cache-{kind}"),
        dataset_num_proc=None,
    )
    if sharded and backend == "fsdp" and kind == "llama":
        settings.update(fsdp=True, fsdp_config=dict(TEXT_FSDP))
    settings.update(overrides)
    return DenseDPOTrainer(
        policy,
        ref_model=reference,
        args=DenseDPOConfig(**settings),
        train_dataset=dataset(kind),
        processing_class=processing_class,
        peft_config=peft_config,
    )


def shard_report(model) -> dict:
    """How many parameters are sharded, and how many values this process holds of how many."""
    from torch.distributed.tensor import DTensor

    params = list(model.parameters())
    local = total = sharded = 0
    for p in params:
        if isinstance(p, DTensor):
            sharded, local, total = sharded + 1, local + p.to_local().numel(), total + p.numel()
        elif hasattr(p, "ds_tensor"):  # DeepSpeed ZeRO-3: the partition, padded to a multiple of the processes
            sharded, local, total = sharded + 1, local + p.ds_tensor.numel(), total + p.ds_numel
        else:
            local, total = local + p.numel(), total + p.numel()
    return {"params": len(params), "sharded": sharded, "local": local, "total": total}


def gathered_weights(model) -> dict[str, torch.Tensor]:
    """Every parameter as a whole tensor (a collective: every process calls it), under its in-memory name."""
    from torch.distributed.tensor import DTensor

    named = list(model.named_parameters())
    if any(hasattr(p, "ds_tensor") for _, p in named):
        import deepspeed

        with deepspeed.zero.GatheredParameters([p for _, p in named]):
            return {name: p.detach().clone().contiguous() for name, p in named}
    return {
        name: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone().contiguous() for name, p in named
    }


def train(kind, variant, out: Path, processes: int, backend: str = "fsdp", name: str | None = None, **overrides):
    """Train one run to the end, save it, and return {log_history, shards, reference_shards}."""
    trainer = build_trainer(kind, variant, out, processes, backend, **overrides)
    trainer.train(resume_from_checkpoint=overrides.get("resume_from_checkpoint"))
    trainer.save_model()
    weights = gathered_weights(trainer.model)
    result = {
        "world": trainer.accelerator.num_processes,
        "backend": "fsdp" if trainer.is_fsdp_enabled else "zero3" if trainer.is_deepspeed_enabled else None,
        "log_history": trainer.state.log_history,
        "shards": shard_report(trainer.model),
        "reference_shards": None if trainer.ref_model is None else shard_report(trainer.ref_model),
    }
    run_dir = out / (name or f"{kind}-{variant}")
    run_dir.mkdir(parents=True, exist_ok=True)
    rank = trainer.accelerator.process_index
    (run_dir / f"result-{rank}.json").write_text(json.dumps(result))
    if rank == 0:
        from safetensors.torch import save_file

        save_file(weights, str(run_dir / "gathered.safetensors"))
    trainer.accelerator.wait_for_everyone()
    return result


def main(out: Path, backend: str) -> None:
    torch.set_num_threads(1)
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    for kind, variant in RUNS[backend]:
        train(kind, variant, out, processes, backend)
        if variant == "full":
            checkpoint = out / f"{kind}-full" / "checkpoint-2"
            train(
                kind,
                variant,
                out,
                processes,
                backend,
                name=f"{kind}-resumed",
                resume_from_checkpoint=str(checkpoint),
                output_dir=str(out / f"{kind}-resumed"),
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
