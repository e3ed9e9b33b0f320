"""Per-token (weighted) log-probabilities of the LM head's output, in cache-sized tiles, for devices without Triton.

TRL's fused LM head (`trl.kernels.ChunkedLogProbFunction`) never builds the `[tokens, vocab]` logits, which is what
makes DPO fit in memory. On Triton devices (CUDA, XPU) its kernels are the right tool and this module defers to them.
On CPU, TRL folds each tile with plain torch ops, and two choices make it slower than full logits there
(`bench/loss_head.py` measures it):

- it scores every position, prompt and padding included (it keeps tile shapes fixed for compilers), although only the
  answer's tokens count in DPO;
- its tiles are 4096 tokens x 32768 vocabulary entries (512 MB in fp32), and each tile goes through about ten
  out-of-place elementwise ops, so the elementwise work streams several GB through main memory per tile.

`weighted_token_log_probs` scores only the positions that count (label != -100 and, when per-token weights are
given, weight != 0), in tiles small enough to stay in the CPU's last-level cache, and folds each tile with in-place
ops: three passes in the forward (max, exp, sum) and three in the backward (exp, scale, scatter of the target term).
The GEMMs are the same as TRL's: one in the forward, three in the backward (recompute, grad of hidden, grad of the
head). Values match TRL's head and full `log_softmax` logits to float32 rounding (`tests/test_tiled_logprob_head.py`).
`TiledLogProbFunction` can also return the per-token entropy, mean logit and top-1 flag that TRL's DPO metrics read;
`rlhfv/tiled_head_dispatch.py` uses it to serve `DenseDPOTrainer`'s forwards on CPU (`tiled_cpu_head=True`).

    log_probs = weighted_token_log_probs(hidden, lm_head.weight, labels, token_weights=weights)  # [B, T]
    score = log_probs.sum(-1)  # the Dense DPO score when `weights` are w_t / N
"""

from __future__ import annotations

import contextlib
import sys

import torch


# Tile shape on CPU: 1024 x 4096 fp32 is 16 MB, which stays in a typical server last-level cache while the tile is
# folded, and is still large enough for the GEMM to run at full speed (`rlhfv bench --only tile_shapes` compares).
CPU_TOKEN_CHUNK = 1024
CPU_VOCAB_CHUNK = 4096
# What `TiledLogProbFunction` can return per row, in its output order (TRL's field names)
OUTPUTS = ("log_probs", "entropy", "mean_logits", "is_top1")


def _zero3_gathered(weight, bias):
    """TRL's gather of a ZeRO-3 partitioned head for the backward's recompute; a null context without DeepSpeed.

    ZeRO-3 cannot be on unless `deepspeed` is imported, so that is checked first: it spares callers of the head outside
    a trainer the ~6 s import of `trl.trainer.utils` (rlhfv._compat, entry 10).
    """
    if "deepspeed" not in sys.modules:
        return contextlib.nullcontext()
    from rlhfv._compat import maybe_gather_lm_head_ctx

    return maybe_gather_lm_head_ctx(weight, bias)


class TiledLogProbFunction(torch.autograd.Function):
    """`log_softmax(hidden @ weight.T * scale + bias)[i, targets[i]]` for each row `i`, without the `[N, V]` logits.

    `scale` is `logit_scale / temperature`, as in TRL's head. Statistics and gradients are accumulated in fp32; the
    GEMMs run in the inputs' dtype (or the autocast dtype). Besides the log-probs it can return, per row, the
    entropy of the distribution, the mean logit and whether the target is the (first) argmax: the per-token fields
    TRL's DPO metrics read (`outputs`; `None` when not asked for). Those are for logging: only the log-probs carry a
    gradient.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, scale, token_chunk, vocab_chunk, outputs=("log_probs",)):
        unknown = set(outputs) - set(OUTPUTS)
        if unknown:
            raise ValueError(f"TiledLogProbFunction cannot compute {sorted(unknown)}; it computes {list(OUTPUTS)}.")
        want_entropy, want_mean, want_top1 = (name in outputs for name in OUTPUTS[1:])
        device = hidden.device
        n_tokens, vocab = hidden.shape[0], weight.shape[0]
        compute_dtype = (
            torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else hidden.dtype
        )
        stats = {
            name: torch.zeros(n_tokens, device=device, dtype=torch.float32)
            for name in ("log_z", "target_logit", "x_sum", "z_sum")
        }
        argmax = torch.zeros(n_tokens, device=device, dtype=torch.long) if want_top1 else None
        rows_max = min(n_tokens, token_chunk)
        buffer = torch.empty((rows_max, vocab_chunk), device=device, dtype=torch.float32)
        # exp(z - max) needs its own tile when the entropy also needs z - max
        exp_buffer = torch.empty_like(buffer) if want_entropy else None
        with torch.autocast(device.type, enabled=False):
            for token_start in range(0, n_tokens, token_chunk):
                token_end = min(token_start + token_chunk, n_tokens)
                rows = token_end - token_start
                hidden_chunk = hidden[token_start:token_end].to(compute_dtype)
                chunk_targets = targets[token_start:token_end]
                target_logit = stats["target_logit"][token_start:token_end]
                running_max = torch.full((rows,), float("-inf"), device=device, dtype=torch.float32)
                running_sum = torch.zeros(rows, device=device, dtype=torch.float32)
                x_sum = stats["x_sum"][token_start:token_end]  # sum_j exp(z_j - running_max) * z_j
                for start in range(0, vocab, vocab_chunk):
                    end = min(start + vocab_chunk, vocab)
                    tile = _project(buffer[:rows, : end - start], hidden_chunk, weight, bias, start, end, scale)
                    in_tile = (chunk_targets >= start) & (chunk_targets < end)
                    local = (chunk_targets - start).clamp(0, end - start - 1)
                    picked = tile.gather(1, local.unsqueeze(1)).squeeze(1)
                    target_logit.copy_(torch.where(in_tile, picked, target_logit))
                    if want_mean:
                        stats["z_sum"][token_start:token_end] += tile.sum(1)
                    if want_top1:
                        # max(dim) returns the first maximal index; a strictly larger later tile takes over, so ties
                        # resolve to the lowest vocabulary index, as argmax does
                        tile_max, tile_arg = tile.max(1)
                        argmax[token_start:token_end] = torch.where(
                            tile_max > running_max, tile_arg + start, argmax[token_start:token_end]
                        )
                    else:
                        tile_max = tile.amax(1)
                    # Online logsumexp: fold this tile's sum of exp into the running one, rescaled to the new max
                    shifted = tile.sub_(tile_max.unsqueeze(1))
                    if want_entropy:
                        exp_tile = torch.exp(shifted, out=exp_buffer[:rows, : end - start])
                        tile_sum = exp_tile.sum(1)
                        # sum_j e_j * z_j = sum_j e_j * (z_j - max) + max * sum_j e_j, as a batched row dot product
                        tile_x = torch.bmm(exp_tile.unsqueeze(1), shifted.unsqueeze(2)).view(rows)
                        tile_x = tile_x + tile_max * tile_sum
                    else:
                        tile_sum = shifted.exp_().sum(1)
                    new_max = torch.maximum(running_max, tile_max)
                    old_factor, tile_factor = torch.exp(running_max - new_max), torch.exp(tile_max - new_max)
                    running_sum = running_sum * old_factor + tile_sum * tile_factor
                    if want_entropy:
                        x_sum.copy_(x_sum * old_factor + tile_x * tile_factor)
                    running_max = new_max
                stats["log_z"][token_start:token_end] = running_max + torch.log(running_sum)
                if want_entropy:
                    x_sum.div_(running_sum)  # now the expected logit under the distribution
        log_z = stats["log_z"]
        log_probs = stats["target_logit"] - log_z
        entropy = log_z - stats["x_sum"] if want_entropy else None
        mean_logits = stats["z_sum"] / vocab if want_mean else None
        is_top1 = argmax == targets if want_top1 else None
        ctx.save_for_backward(hidden, weight, bias, targets, log_z)
        ctx.scale, ctx.token_chunk, ctx.vocab_chunk, ctx.compute_dtype = scale, token_chunk, vocab_chunk, compute_dtype
        ctx.mark_non_differentiable(*(x for x in (entropy, mean_logits, is_top1) if x is not None))
        ctx.set_materialize_grads(False)
        return log_probs, entropy, mean_logits, is_top1

    @staticmethod
    def backward(ctx, grad_log_probs, *_):
        hidden, weight, bias, targets, log_z = ctx.saved_tensors
        scale, token_chunk, vocab_chunk, compute_dtype = ctx.scale, ctx.token_chunk, ctx.vocab_chunk, ctx.compute_dtype
        needs_hidden, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        if grad_log_probs is None:
            return (None,) * 8
        device = hidden.device
        # Under DeepSpeed ZeRO-3 the head's weight is gathered for the backward too, as TRL's head does
        with _zero3_gathered(weight, bias), torch.autocast(device.type, enabled=False):
            n_tokens, vocab = hidden.shape[0], weight.shape[0]
            grad_hidden = torch.zeros(hidden.shape, device=device, dtype=torch.float32) if needs_hidden else None
            grad_weight = torch.zeros(weight.shape, device=device, dtype=torch.float32) if needs_weight else None
            grad_bias = torch.zeros(bias.shape, device=device, dtype=torch.float32) if needs_bias else None
            grad_log_probs = grad_log_probs.float()
            buffer = torch.empty((min(n_tokens, token_chunk), vocab_chunk), device=device, dtype=torch.float32)
            for token_start in range(0, n_tokens, token_chunk):
                token_end = min(token_start + token_chunk, n_tokens)
                rows = token_end - token_start
                hidden_chunk = hidden[token_start:token_end].to(compute_dtype)
                chunk_targets = targets[token_start:token_end]
                grad_rows = grad_log_probs[token_start:token_end]
                # d log p_target / d z_j = 1[j = target] - p_j, times the incoming gradient and the logit scale
                neg_grad = (-grad_rows * scale).unsqueeze(1)
                for start in range(0, vocab, vocab_chunk):
                    end = min(start + vocab_chunk, vocab)
                    tile = _project(buffer[:rows, : end - start], hidden_chunk, weight, bias, start, end, scale)
                    tile.sub_(log_z[token_start:token_end].unsqueeze(1)).exp_().mul_(neg_grad)
                    in_tile = ((chunk_targets >= start) & (chunk_targets < end)).nonzero().squeeze(1)
                    tile.index_put_(
                        (in_tile, chunk_targets[in_tile] - start), grad_rows[in_tile] * scale, accumulate=True
                    )
                    grad_tile = tile.to(compute_dtype)
                    if grad_hidden is not None:
                        _accumulate_mm(grad_hidden[token_start:token_end], grad_tile, weight[start:end])
                    if grad_weight is not None:
                        _accumulate_mm(grad_weight[start:end], grad_tile.t(), hidden_chunk)
                    if grad_bias is not None:
                        grad_bias[start:end] += tile.sum(0)
        return (
            None if grad_hidden is None else grad_hidden.to(hidden.dtype),
            None if grad_weight is None else grad_weight.to(weight.dtype),
            None if grad_bias is None else grad_bias.to(bias.dtype),
            None,
            None,
            None,
            None,
            None,
        )


def _accumulate_mm(acc, a, b):
    """`acc += a @ b` into the fp32 accumulator `acc`; `b` is cast to `a`'s dtype for the GEMM."""
    b = b.to(a.dtype)
    if a.dtype == torch.float32:
        acc.addmm_(a, b)
    else:
        acc.add_((a @ b).float())


def _project(out, hidden_chunk, weight, bias, start, end, scale):
    """`out = (hidden_chunk @ weight[start:end].T + bias[start:end]) * scale`, in fp32, written into `out`."""
    w_chunk = weight[start:end].to(hidden_chunk.dtype)
    if hidden_chunk.dtype == torch.float32:
        torch.mm(hidden_chunk, w_chunk.t(), out=out)
    else:
        out.copy_(hidden_chunk @ w_chunk.t())
    if bias is not None:
        out.add_(bias[start:end].float())
    if scale != 1.0:
        out.mul_(scale)
    return out


def weighted_token_log_probs(
    hidden_states: torch.Tensor,
    lm_head_weight: torch.Tensor,
    labels: torch.Tensor,
    token_weights: torch.Tensor | None = None,
    lm_head_bias: torch.Tensor | None = None,
    temperature: float = 1.0,
    logit_scale: float = 1.0,
    token_chunk: int | None = None,
    vocab_chunk: int | None = None,
) -> torch.Tensor:
    """Per-token log-probabilities of `labels` under the LM head, multiplied by `token_weights` when given.

    Args:
        hidden_states: `[B, T, H]` backbone outputs already aligned with `labels` (shifted by the caller, as TRL does
            with `last_hidden_state[:, :-1]` and `labels[:, 1:]`).
        lm_head_weight: `[V, H]` output embedding.
        labels: `[B, T]` next-token ids, `-100` where the token does not count (prompt, padding).
        token_weights: `[B, T]` per-token weights (e.g. Dense DPO's `w_t / N`); positions with weight 0 are skipped.
        temperature, logit_scale: as in TRL's fused head (`logits * logit_scale / temperature`).
        token_chunk, vocab_chunk: tile shape; defaults suit CPUs. On CUDA/XPU, TRL's Triton head is used instead.

    Returns:
        `[B, T]` float32 tensor, zero where the label is -100 (or the weight is 0), connected to the graph even when
        no position counts.
    """
    if hidden_states.shape[:-1] != labels.shape:
        raise ValueError(
            f"hidden_states {tuple(hidden_states.shape)} and labels {tuple(labels.shape)} disagree: pass hidden "
            "states already shifted to line up with the next-token labels ([B, T, H] with [B, T])."
        )
    if token_weights is not None and token_weights.shape != labels.shape:
        raise ValueError(
            f"token_weights {tuple(token_weights.shape)} must have the labels' shape {tuple(labels.shape)}."
        )
    mask = labels != -100
    if token_weights is not None:
        mask &= token_weights != 0
    hidden = hidden_states[mask]
    targets = labels[mask]
    scale = logit_scale / temperature
    if hidden.device.type in ("cuda", "xpu"):
        from trl.kernels import ChunkedLogProbFunction

        from rlhfv._compat import trl_chunk_size

        log_probs = ChunkedLogProbFunction.apply(
            hidden,
            lm_head_weight,
            lm_head_bias,
            targets,
            temperature,
            trl_chunk_size(),
            None,
            logit_scale,
            ("log_probs",),
        )[0]
    else:
        log_probs = TiledLogProbFunction.apply(
            hidden,
            lm_head_weight,
            lm_head_bias,
            targets,
            scale,
            token_chunk or CPU_TOKEN_CHUNK,
            vocab_chunk or CPU_VOCAB_CHUNK,
        )[0]
    if token_weights is not None:
        log_probs = log_probs * token_weights[mask].to(log_probs.dtype)
    # masked_scatter keeps an all-masked batch connected to the graph (a differentiable zero), as TRL's head does
    return log_probs.new_zeros(mask.shape).masked_scatter(mask, log_probs)
