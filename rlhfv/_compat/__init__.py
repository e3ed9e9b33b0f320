"""Every place where rlhfv depends on behaviour of TRL, transformers, PEFT, accelerate, torch, Liger or datasets that
is not public API: no module of rlhfv or data_tools outside this package uses a private name of those libraries or
imports from `trl.trainer.*` (the trainers' overrides of private methods excepted, listed in TRAINER_OVERRIDES).

Each numbered entry says the version it was written for, why it exists, and when it can go. `tests/test_trl_contract.py`
pins the behaviour each one relies on, so an upgrade fails there with a message naming what changed, not deep in
training, and scans the source for private names used outside this package or missing from LIBRARY_PRIVATE_NAMES.
Written for: trl 1.16, transformers 5.23, peft 0.21, torch 2.13, liger-kernel 0.8.5 (setup.cfg pins the minors).

The entries, by module (import every name from `rlhfv._compat` itself; the modules are how the code is organised):
- `trl_heads`: 1 per-token weights on TRL's fused LM head, 2 the tiled CPU head in place of TRL's chunked head,
  6 Liger's kernels on the reference model.
- `trainer_state`: 3 reference precompute with image datasets, 4 resuming LLaVA / Qwen2-VL checkpoints, 7 stopping at
  the first non-finite gradient, 8 TRL trainer state rlhfv reads or extends, 9 TRL's model-card fields,
  11 `datasets`' fingerprint.
- `distributed`: 5 the gloo deadlock at exit, 13 DDP's ignored buffers, 14 FSDP2 on CPU processes, 15 the final model
  of a sharded FSDP run, 16 optimizer state of parameters without gradients, 17 the FSDP2 LM head's gradient,
  18 DeepSpeed ZeRO on CPU processes.
- `tables`: 10 the `trl.trainer` internals (loaded on first use, below), 12 TRAINER_OVERRIDES, LIBRARY_PRIVATE_NAMES.
"""

from __future__ import annotations

from .distributed import (
    enable_deepspeed_on_cpu,
    enable_fsdp2_on_cpu,
    ignore_bool_buffers_in_ddp,
    materialize_missing_optimizer_state,
    release_ddp_wrapper,
    save_full_model_of_sharded_run,
    unshard_trained_fsdp_head,
)
from .tables import LIBRARY_PRIVATE_NAMES, TRAINER_OVERRIDES, TRL_TRAINER_INTERNALS, trl_chunk_size
from .trainer_state import (
    dataset_fingerprint,
    deepspeed_precompute_engine,
    is_vision_dataset,
    keep_signature_columns,
    load_checkpoint_with_model_keys,
    precompute_flag_hidden_from_vision_check,
    reference_model_hash,
    set_signature_columns_if_unset,
    trainer_card_fields,
    trainer_metrics,
)
from .trl_heads import (
    DENSE_SCALE_KEY,
    POLICY,
    REFERENCE,
    FusedHeadCalls,
    apply_liger_kernels_to_instance,
    peft_reference_active,
    replace_trl_chunked_head,
    trl_head_uses_triton,
    wrap_fused_head_forward,
)


__all__ = [
    "DENSE_SCALE_KEY",
    "LIBRARY_PRIVATE_NAMES",
    "POLICY",
    "REFERENCE",
    "TRAINER_OVERRIDES",
    "TRL_TRAINER_INTERNALS",
    "FusedHeadCalls",
    "apply_liger_kernels_to_instance",
    "dataset_fingerprint",
    "deepspeed_precompute_engine",
    "enable_deepspeed_on_cpu",
    "enable_fsdp2_on_cpu",
    "ignore_bool_buffers_in_ddp",
    "is_vision_dataset",
    "keep_signature_columns",
    "load_checkpoint_with_model_keys",
    "materialize_missing_optimizer_state",
    "peft_reference_active",
    "precompute_flag_hidden_from_vision_check",
    "reference_model_hash",
    "release_ddp_wrapper",
    "replace_trl_chunked_head",
    "save_full_model_of_sharded_run",
    "set_signature_columns_if_unset",
    "trainer_card_fields",
    "trainer_metrics",
    "trl_chunk_size",
    "trl_head_uses_triton",
    "unshard_trained_fsdp_head",
    "wrap_fused_head_forward",
]


def __getattr__(name: str):
    # entry 10: module attributes loaded on first use (PEP 562): `from rlhfv._compat import DataCollatorForPreference`
    if name in TRL_TRAINER_INTERNALS:
        import importlib

        return getattr(importlib.import_module(TRL_TRAINER_INTERNALS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
