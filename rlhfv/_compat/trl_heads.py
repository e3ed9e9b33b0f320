"""rlhfv's hooks on TRL's fused LM head and the kernels it runs with (`rlhfv._compat` entries 1, 2 and 6).

Written for: trl 1.16, peft 0.21, liger-kernel 0.8.5. Each entry says why it exists and when it can go.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable

import torch

from .distributed import unshard_trained_fsdp_head


# ---------------------------------------------------------------------------------------------------------------
# 1. Per-token weights on TRL's fused LM head.
#    Why: trl.DPOTrainer has no per-token weight hook; it sums `model(..., fused_lm_head=True).log_probs` per row.
#    How: the trainer puts the batch's token scales under `DENSE_SCALE_KEY`; TRL passes every batch key except
#    `completion_mask` and the reference log-prob keys to the policy and reference forwards (public behaviour of
#    `DPOTrainer._compute_loss`), and the wrapper below pops the key and scales the head's per-token log-probs, so
#    TRL's own sums become the Dense DPO scores. Remove when TRL accepts per-token weights.

DENSE_SCALE_KEY = "dense_token_scale"
POLICY, REFERENCE = "policy", "reference"


class FusedHeadCalls:
    """What the wrapped forwards saw while a batch was being scored: (role, raw per-token log-probs, scaled)."""

    def __init__(self):
        self.active = False
        self.calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []

    @contextlib.contextmanager
    def recording(self):
        self.calls, self.active = [], True
        try:
            yield self
        finally:
            self.active = False

    def record(self, role: str, raw: torch.Tensor, scaled: torch.Tensor) -> None:
        if self.active:
            self.calls.append((role, raw, scaled))

    def of(self, role: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(raw, scaled) for call_role, raw, scaled in self.calls if call_role == role]


def peft_reference_active(peft_model) -> bool:
    """Whether a PEFT model currently acts as DPO's reference: adapters disabled, or TRL's `ref` adapter active.

    Pins peft 0.21's `PeftModel._adapters_disabled` (set by `disable_adapter()`, which TRL's `use_adapter(model, None)`
    enters) and TRL's adapter name "ref" (`DPOTrainer._compute_loss`). Remove when TRL tells the forward its role.
    """
    return (
        bool(getattr(peft_model, "_adapters_disabled", False)) or getattr(peft_model, "active_adapter", None) == "ref"
    )


def wrap_fused_head_forward(
    module: torch.nn.Module,
    role_of_call: Callable[[], str],
    calls: FusedHeadCalls,
    scoring_context: Callable[[dict], contextlib.AbstractContextManager] | None = None,
) -> None:
    """Make `module.forward(..., fused_lm_head=True, dense_token_scale=s)` return log-probs multiplied by `s`.

    `module` is the transformers model whose `forward` TRL replaced with its fused head (an instance attribute, which
    DDP, DeepSpeed and PEFT end up calling). `role_of_call()` says whether this call is the policy's or the
    reference's (constant for a separate reference model; for a PEFT model it depends on the adapter state). Calls
    are recorded in `calls` while it is recording. `scoring_context(kwargs)` optionally wraps
    the forward (the tiled CPU head). Prompt-learning PEFT prepends virtual tokens: the scale covers the last positions.
    """
    inner = module.forward
    if getattr(inner, "_rlhfv_wrapped", False):
        return

    @functools.wraps(inner)
    def forward(*args, **kwargs):
        scale = kwargs.pop(DENSE_SCALE_KEY, None)
        use_head = kwargs.get("fused_lm_head", False)
        context = scoring_context(kwargs) if (scoring_context is not None and use_head) else contextlib.nullcontext()
        if use_head:
            unshard_trained_fsdp_head(module)  # entry 17
        with context:
            output = inner(*args, **kwargs)
        if not use_head:
            return output
        log_probs = output.log_probs
        width = scale.size(1) if scale is not None else log_probs.size(1)
        raw = log_probs[:, -width:]
        scaled = raw if scale is None else raw * scale.to(raw.device, raw.dtype)
        if scale is not None:
            output.log_probs = scaled if log_probs.size(1) == width else torch.cat([log_probs[:, :-width], scaled], 1)
        calls.record(role_of_call(), raw.detach(), scaled)
        return output

    forward._rlhfv_wrapped = True
    module.forward = forward


# ---------------------------------------------------------------------------------------------------------------
# 2. rlhfv's tiled CPU head in place of TRL's chunked head.
#    Why: on devices without Triton, TRL's head scores every position in 4096 x 32768 tiles (slower than plain logits
#    on CPU; docs/benchmarks.md). TRL's fused forward looks its head up as the module global
#    `trl.trainer.utils._ChunkedLogProbFunction` on each call, and decides Triton use with the private
#    `trl.kernels.chunked_logprob._use_triton`. Remove when TRL's CPU path scores only the labelled positions.


def trl_head_uses_triton(device: torch.device) -> bool:
    from trl.kernels.chunked_logprob import _use_triton

    return _use_triton(device)


def replace_trl_chunked_head(replacement) -> object | None:
    """Put `replacement` in place of TRL's chunked head; returns TRL's head (None when this TRL has no such global)."""
    import trl.trainer.utils as trl_utils

    current = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if current is None:
        return None
    if current is not replacement:
        trl_utils._ChunkedLogProbFunction = replacement
        return current
    return getattr(replacement, "trl_head", None)


# ---------------------------------------------------------------------------------------------------------------
# 6. Liger's layer kernels on the reference model.
#    Why: transformers' `Trainer.train` patches only the policy, with Liger's private
#    `liger_kernel.transformers._apply_liger_kernel_to_instance` (liger-kernel 0.8.5); without the same kernels on the
#    reference, rewards do not start at zero. Remove when TRL patches the reference itself.


def apply_liger_kernels_to_instance(model, **kwargs) -> None:
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    _apply_liger_kernel_to_instance(model=model, **kwargs)
