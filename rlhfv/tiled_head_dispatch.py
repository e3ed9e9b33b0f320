"""Route TRL's fused LM head to rlhfv's tiled head on CPU, for the forwards `DenseDPOTrainer` scores.

On devices without Triton, TRL's fused head (`add_fused_lm_head`) scores every position, prompt and padding included,
in 4096 x 32768 tiles folded by out-of-place torch ops, slower than plain full logits on CPU (docs/benchmarks.md).
`rlhfv.tiled_logprob_head.TiledLogProbFunction` computes the same per-token values for the completion tokens only,
in cache-sized tiles.

TRL's patched forward looks its head up as a module global on each call. `install()` puts `_HeadDispatcher` in its
place (through `rlhfv._compat.replace_trl_chunked_head`, where the dependency on TRL's internals is recorded), which hands every call to TRL's own head unchanged unless it
runs inside `scoring_positions(...)`, which the trainer's forward wrapper opens around the forwards it scores. Inside,
on CPU, it scores the positions whose label is not -100 (the ones TRL keeps) with the tiled head and returns TRL's
five per-token fields in TRL's layout. Calls it cannot serve exactly (Triton devices, logit soft-capping, the WPO
field `log_sum_sq_probs`, a hidden-state count that does not match the labels) go to TRL's head.
"""

from __future__ import annotations

import contextlib
import logging
from contextvars import ContextVar

import torch

from ._compat import replace_trl_chunked_head, trl_head_uses_triton
from .tiled_logprob_head import CPU_TOKEN_CHUNK, CPU_VOCAB_CHUNK, OUTPUTS, TiledLogProbFunction


logger = logging.getLogger(__name__)

# The flattened `labels != -100` of the forward being scored; None outside `scoring_positions`
_POSITIONS: ContextVar[torch.Tensor | None] = ContextVar("rlhfv_scoring_positions", default=None)


class _HeadDispatcher:
    """Drop-in for `trl.kernels.ChunkedLogProbFunction` (same `apply` arguments and outputs)."""

    trl_head = None  # TRL's own head, which serves every call the tiled head does not

    @staticmethod
    def apply(
        hidden,
        weight,
        bias,
        targets,
        temperature,
        chunk_size,
        final_logit_softcapping=None,
        logit_scale=1.0,
        outputs=("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1"),
    ):
        positions = _POSITIONS.get()
        if positions is None or not _tiled_head_serves(hidden, positions, final_logit_softcapping, outputs):
            return _HeadDispatcher.trl_head.apply(
                hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping, logit_scale, outputs
            )
        positions = positions.to(hidden.device)
        rows = positions.nonzero().squeeze(1)
        wanted = tuple(name for name in OUTPUTS if name in outputs or name == "log_probs")
        log_probs, entropy, mean_logits, is_top1 = TiledLogProbFunction.apply(
            hidden.index_select(0, rows),
            weight,
            bias,
            targets.index_select(0, rows),
            logit_scale / temperature,
            CPU_TOKEN_CHUNK,
            CPU_VOCAB_CHUNK,
            wanted,
        )
        # Back to TRL's layout: one value per position, zero where the label is -100. masked_scatter keeps an
        # all-masked batch connected to the graph, as TRL's head does
        per_token = [
            None if x is None else x.new_zeros(positions.shape).masked_scatter(positions, x)
            for x in (log_probs, entropy, mean_logits, is_top1)
        ]
        log_probs, entropy, mean_logits, is_top1 = per_token
        return log_probs, entropy, None, mean_logits, is_top1


def _tiled_head_serves(hidden, positions, final_logit_softcapping, outputs) -> bool:
    return (
        not trl_head_uses_triton(hidden.device)
        and final_logit_softcapping is None
        and "log_sum_sq_probs" not in outputs
        and hidden.dim() == 2
        and hidden.shape[0] == positions.numel()
    )


def install() -> bool:
    """Put the dispatcher in front of TRL's head (once per process). False when this TRL has no such global."""
    trl_head = replace_trl_chunked_head(_HeadDispatcher)
    if trl_head is None:
        logger.warning(
            "This TRL version has no `trl.trainer.utils._ChunkedLogProbFunction`, so rlhfv's tiled CPU head cannot be "
            "used; TRL's own head scores every batch (same values, slower on CPU). Set tiled_cpu_head=False to "
            "silence this."
        )
        return False
    _HeadDispatcher.trl_head = trl_head
    return True


@contextlib.contextmanager
def scoring_positions(labels: torch.Tensor | None, shift_labels: torch.Tensor | None = None):
    """Let the tiled head serve the fused-head forward run inside, scoring the positions TRL's head keeps.

    `labels`/`shift_labels` are the forward's own arguments: TRL scores `labels[:, 1:]`, or `shift_labels` as given.
    """
    scored = shift_labels if shift_labels is not None else None if labels is None else labels[:, 1:]
    token = _POSITIONS.set(None if scored is None else (scored != -100).reshape(-1))
    try:
        yield
    finally:
        _POSITIONS.reset(token)
