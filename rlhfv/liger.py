"""Liger's fused Triton layer kernels (RMSNorm, RoPE, SwiGLU, ...) for `use_liger_kernel: true`.

transformers' `Trainer.train` patches the policy with Liger's instance patcher
(for a VLM that reaches its language backbone and vision tower), and TRL forces `fused_linear_cross_entropy` off
so that its fused log-prob LM head, which Dense DPO weights per token, stays in place. This module adds the two
things missing around that:
- a check at start, because Liger's kernels need a GPU and on CPU they fail deep inside the first forward
  ("0 active drivers");
- the same kernels on the reference model, so that policy and reference compute identical log-probs at step 0
  (rewards start at exactly zero, as without Liger).
"""

from __future__ import annotations

import logging

from data_tools.errors import CommandError


logger = logging.getLogger(__name__)


def check_liger_can_run(training_args) -> None:
    """Fail at start, with the fix, when `use_liger_kernel` is on but cannot work here."""
    if not training_args.use_liger_kernel:
        return
    config = training_args.liger_kernel_config or {}
    if config.get("fused_linear_cross_entropy"):
        raise CommandError(
            "`liger_kernel_config.fused_linear_cross_entropy: true` would replace the fused log-prob LM head that "
            "Dense DPO weights per token: remove it (the layer kernels still apply)"
        )
    try:
        import liger_kernel  # noqa: F401
    except ImportError as error:
        raise CommandError(
            "`use_liger_kernel: true` needs the liger-kernel package: pip install 'liger-kernel>=0.8.5'"
        ) from error
    import torch

    if training_args.use_cpu or not torch.cuda.is_available():
        where = "`use_cpu: true` is set" if training_args.use_cpu else "no CUDA GPU is visible"
        raise CommandError(
            f"`use_liger_kernel: true` needs a CUDA GPU (Liger's kernels are Triton GPU kernels) but {where}: set "
            "`use_liger_kernel: false` (or pass `--use_liger_kernel false`) to train on this machine"
        )


def liger_kernel_kwargs(training_args) -> dict:
    """The keyword arguments transformers hands to Liger, with TRL's fused LM head kept."""
    return {**(training_args.liger_kernel_config or {}), "fused_linear_cross_entropy": False}


def apply_liger_to_reference(trainer) -> bool:
    """Patch the trainer's reference model with the kernels `Trainer.train` applies to the policy.

    Returns whether a reference model was patched (with PEFT, or with precomputed reference log-probs, there is none).
    """
    if not trainer.args.use_liger_kernel or getattr(trainer, "ref_model", None) is None:
        return False
    from transformers.trainer_utils import unwrap_peft_model

    from rlhfv._compat import apply_liger_kernels_to_instance

    reference = unwrap_peft_model(trainer.accelerator.unwrap_model(trainer.ref_model))
    apply_liger_kernels_to_instance(reference, **liger_kernel_kwargs(trainer.args))
    logger.info("Applied Liger kernels to the reference model (%s)", type(reference).__name__)
    return True
