"""The tiled CPU log-prob head against full logits + log_softmax (written here) and against TRL's own head."""

import pytest
import torch

from rlhfv.tiled_logprob_head import TiledLogProbFunction, weighted_token_log_probs


def _inputs(batch=2, seq=37, hidden=24, vocab=1000, seed=0, with_bias=False):
    generator = torch.Generator().manual_seed(seed)
    hidden_states = torch.randn(batch, seq, hidden, generator=generator, dtype=torch.float64).float()
    weight = (torch.randn(vocab, hidden, generator=generator, dtype=torch.float64) * 0.5).float()
    bias = torch.randn(vocab, generator=generator).float() if with_bias else None
    labels = torch.randint(0, vocab, (batch, seq), generator=generator)
    labels[0, :5] = -100  # a prompt
    labels[1, -3:] = -100  # padding
    weights = torch.ones(batch, seq)
    weights[:, 10:14] = 5.0  # changed tokens
    weights[0, 20] = 0.0  # a zero weight is skipped, not scored
    weights = weights / weights.sum(-1, keepdim=True)
    return hidden_states.requires_grad_(), weight.requires_grad_(), bias, labels, weights


def _full_logits_reference(hidden_states, weight, bias, labels, weights, scale=1.0):
    """What RLHF-V's code does: full logits, log_softmax, gather, weight, mask (in float64 for a tight reference)."""
    logits = hidden_states.double() @ weight.double().t()
    if bias is not None:
        logits = logits + bias.double()
    log_probs = (logits * scale).log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    weighted = log_probs * weights.double()
    return weighted.masked_fill(labels == -100, 0.0)


@pytest.mark.parametrize("token_chunk,vocab_chunk", [(7, 128), (1024, 4096), (16, 999)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_full_logits_values_and_gradients(token_chunk, vocab_chunk, with_bias):
    hidden_states, weight, bias, labels, weights = _inputs(with_bias=with_bias)
    if bias is not None:
        bias.requires_grad_()
    ours = weighted_token_log_probs(
        hidden_states, weight, labels, weights, lm_head_bias=bias, token_chunk=token_chunk, vocab_chunk=vocab_chunk
    )
    upstream = torch.randn(ours.shape, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad(
        (ours * upstream).sum(), [hidden_states, weight] + ([bias] if bias is not None else [])
    )

    leaves = [x.detach().double().requires_grad_() for x in (hidden_states, weight)]
    ref_bias = bias.detach().double().requires_grad_() if bias is not None else None
    reference = _full_logits_reference(leaves[0], leaves[1], ref_bias, labels, weights)
    ref_grads = torch.autograd.grad(
        (reference * upstream.double()).sum(), leaves + ([ref_bias] if ref_bias is not None else [])
    )

    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), reference, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)
    # Positions that do not count are exact zeros
    assert ours[0, :5].eq(0).all() and ours[1, -3:].eq(0).all() and ours[0, 20] == 0


def test_matches_trl_head_with_temperature_and_logit_scale():
    from trl.kernels import ChunkedLogProbFunction

    hidden_states, weight, _, labels, _ = _inputs(seed=3)
    mask = labels != -100
    ours = weighted_token_log_probs(hidden_states, weight, labels, temperature=0.7, logit_scale=1.3, vocab_chunk=300)
    trl_log_probs = ChunkedLogProbFunction.apply(
        hidden_states[mask], weight, None, labels[mask], 0.7, 256, None, 1.3, ("log_probs",)
    )[0]
    torch.testing.assert_close(ours[mask], trl_log_probs, atol=1e-5, rtol=1e-5)

    upstream = torch.linspace(-1, 1, int(mask.sum()))
    ours_grads = torch.autograd.grad((ours[mask] * upstream).sum(), [hidden_states, weight])
    trl_grads = torch.autograd.grad((trl_log_probs * upstream).sum(), [hidden_states, weight])
    for got, want in zip(ours_grads, trl_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_all_masked_batch_is_a_differentiable_zero():
    hidden_states, weight, _, labels, _ = _inputs()
    labels = torch.full_like(labels, -100)
    out = weighted_token_log_probs(hidden_states, weight, labels)
    assert out.eq(0).all()
    out.sum().backward()
    assert hidden_states.grad is not None and hidden_states.grad.eq(0).all()


def test_autocast_bf16_is_close_to_fp32():
    hidden_states, weight, _, labels, weights = _inputs(vocab=300)
    exact = weighted_token_log_probs(hidden_states, weight, labels, weights)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        approx = weighted_token_log_probs(hidden_states, weight, labels, weights)
    assert approx.dtype == torch.float32
    torch.testing.assert_close(approx, exact, atol=2e-2, rtol=2e-2)
    approx.sum().backward()
    assert torch.isfinite(hidden_states.grad).all() and torch.isfinite(weight.grad).all()


def test_shape_errors_say_what_to_pass():
    hidden_states, weight, _, labels, weights = _inputs()
    with pytest.raises(ValueError, match="already shifted"):
        weighted_token_log_probs(hidden_states[:, :-1], weight, labels)
    with pytest.raises(ValueError, match="token_weights"):
        weighted_token_log_probs(hidden_states, weight, labels, weights[:, :-1])


@pytest.mark.parametrize("token_chunk,vocab_chunk", [(4, 64), (1024, 4096), (5, 333)])
def test_function_returns_trl_metric_fields_matching_full_logits(token_chunk, vocab_chunk):
    # The autograd function itself: rows in, per-row log-prob, entropy, mean logit and top-1 flag out, each checked
    # against the full distribution computed here in float64
    hidden_states, weight, _, labels, _ = _inputs(seq=25)
    rows, targets = hidden_states[1], labels[1].clamp(min=0)
    # Row 0: vocabulary entries 100 and 700 (different tiles) tie at the top and the target is 700, so it is not
    # "top 1" (argmax takes the first). Row 1's target is its lone argmax.
    weight = weight.detach().clone()
    weight[100] = weight[700] = rows[0].detach() * 3
    targets[0] = 700
    logits = (rows.double() @ weight.double().t()) * 1.7
    targets[1] = int(logits[1].argmax())
    weight.requires_grad_()

    log_probs, entropy, mean_logits, is_top1 = TiledLogProbFunction.apply(
        rows, weight, None, targets, 1.7, token_chunk, vocab_chunk, ("log_probs", "entropy", "mean_logits", "is_top1")
    )
    log_softmax = logits.log_softmax(-1)
    torch.testing.assert_close(
        log_probs.double(), log_softmax.gather(-1, targets.unsqueeze(-1)).squeeze(-1), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(entropy.double(), -(log_softmax.exp() * log_softmax).sum(-1), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(mean_logits.double(), logits.mean(-1), atol=1e-5, rtol=1e-5)
    assert torch.equal(is_top1, logits.argmax(-1) == targets)
    assert not is_top1[0] and is_top1[1]
    # Only the log-probs carry a gradient
    assert log_probs.requires_grad and not entropy.requires_grad and not mean_logits.requires_grad


def test_function_without_optional_outputs_returns_none():
    hidden_states, weight, _, labels, _ = _inputs(seq=21)
    log_probs, entropy, mean_logits, is_top1 = TiledLogProbFunction.apply(
        hidden_states[0], weight, None, labels[0].clamp(min=0), 1.0, 4, 64
    )
    assert log_probs.shape == (21,) and entropy is None and mean_logits is None and is_top1 is None
    with pytest.raises(ValueError, match="log_sum_sq_probs"):
        TiledLogProbFunction.apply(
            hidden_states[0], weight, None, labels[0].clamp(min=0), 1.0, 4, 64, ("log_probs", "log_sum_sq_probs")
        )
