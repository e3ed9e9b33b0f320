"""A few bf16 Dense DPO steps of a realistic-shape model on CUDA (Llama: hidden 1024, 4 layers, vocab 32k).

Skipped on machines without a GPU (tests/conftest.py). Checks that training runs on the GPU code path (Triton fused
LM head, bf16 autocast), that the loss is finite and moves the weights, that the dense metrics are logged, and that
the precomputed per-token reference gives the on-the-fly loss.
"""

import copy

import pytest
import torch
from datasets import Dataset


pytestmark = pytest.mark.gpu


def realistic_rows(n_rows=16, repeats=12):
    """Pairs with answers of a few hundred tokens and a few changed words each."""
    rows = []
    for k in range(n_rows):
        stem = " ".join(["The image shows a red circle next to a blue square on a white background."] * repeats)
        chosen = f"{stem} A cat sits on a wooden table number {k}."
        rejected = f"{stem} A dog sits on a metal table number {k}."
        c0, r0 = chosen.index("cat"), rejected.index("dog")
        c1, r1 = chosen.index("wooden"), rejected.index("metal")
        rows.append(
            {
                "id": f"gpu-{k}",
                "prompt": [{"role": "user", "content": f"Describe the image in detail ({k})."}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "chosen_spans": [[c0, c0 + 3], [c1, c1 + 6]],
                "rejected_spans": [[r0, r0 + 3], [r1, r1 + 5]],
            }
        )
    return rows


def build_model(tokenizer, hidden_size=1024, num_layers=4, vocab_size=32000, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=max(vocab_size, len(tokenizer)),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=16,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def run_steps(tmp_path, device_settings, model_kwargs=None):
    from rlhfv import DenseDPOConfig, DenseDPOTrainer
    from rlhfv.tiny_models import build_tokenizer

    tokenizer = build_tokenizer()
    policy = build_model(tokenizer, **(model_kwargs or {}))
    dataset = Dataset.from_list(realistic_rows())

    def args(**extra):
        return DenseDPOConfig(
            output_dir=str(tmp_path / "out"), report_to=[], per_device_train_batch_size=4, max_steps=3,
            logging_steps=1, learning_rate=1e-4, save_strategy="no", max_length=1024, gamma=5.0,
            ref_cache_dir=str(tmp_path / "cache"), **device_settings, **extra,
        )  # fmt: skip

    live = DenseDPOTrainer(
        copy.deepcopy(policy), ref_model=copy.deepcopy(policy), args=args(), train_dataset=dataset,
        processing_class=tokenizer,
    )  # fmt: skip
    cached = DenseDPOTrainer(
        copy.deepcopy(policy), args=args(precompute_ref_log_probs=True), train_dataset=dataset,
        processing_class=tokenizer,
    )  # fmt: skip
    rows = live._remove_unused_columns(live.train_dataset)
    batch = live._prepare_inputs(live.data_collator([rows[i] for i in range(4)]))
    assert batch["completion_mask"].sum(dim=1).min() > 200
    with torch.no_grad():
        live_loss = live.compute_loss(live.model, batch)
    rows = cached._remove_unused_columns(cached.train_dataset)
    cached_batch = cached._prepare_inputs(cached.data_collator([rows[i] for i in range(4)]))
    with torch.no_grad():
        cached_loss = cached.compute_loss(cached.model, cached_batch)
    assert abs(live_loss.item() - cached_loss.item()) < 2e-3

    before = [p.detach().clone() for p in live.model.parameters()]
    live.train()
    assert sum(not torch.equal(b, p) for b, p in zip(before, live.model.parameters(), strict=True)) > len(before) // 2
    logged = [e for e in live.state.log_history if "dense/changed_share" in e]
    assert len(logged) == 3
    for entry in logged:
        assert torch.isfinite(torch.tensor(entry["loss"]))
        assert 0 < entry["dense/changed_share"] < 0.1
        assert entry["dense/pairs_without_changes"] == 0
    return live


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_steps_on_cuda(tmp_path):
    trainer = run_steps(tmp_path, {"bf16": True})
    assert next(trainer.model.parameters()).device.type == "cuda"
