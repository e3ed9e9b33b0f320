"""Best-of-N with RLAIF-V's self-feedback: rank sampled answers by the policy's implicit reward.

A DPO-trained policy pi defines an implicit reward against its reference model pi_ref. RLAIF-V normalises it by the
answer's length T (in tokens) so long answers are not favoured:

    r(y) = (beta / T) * sum_t [log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)]

The answer's tokens are the generated ones up to and including the end-of-sequence token (the choice to stop is
part of the answer). The reference is a second model, or, for a PEFT policy, its base model with the adapter
disabled.
"""

from __future__ import annotations

import inspect


def answer_log_probs(model, prompt_inputs: dict, answers: list[list[int]], pad_id: int):
    """Per answer: (sum of the answer tokens' log-probs, number of answer tokens), given one prompt.

    `prompt_inputs` is the processor's output for a single unpadded prompt. Answers are right-padded after it, so
    the prompt's positions are the same for every answer; only the last T + 1 positions' logits are computed when
    the model supports `logits_to_keep`.
    """
    import torch

    input_ids = prompt_inputs["input_ids"]
    if input_ids.shape[0] != 1:
        raise ValueError("answer_log_probs scores the answers of one prompt at a time")
    n, prompt_len = len(answers), input_ids.shape[1]
    width = max(len(a) for a in answers)
    device = input_ids.device
    answer_ids = torch.full((n, width), pad_id, dtype=input_ids.dtype, device=device)
    answer_mask = torch.zeros((n, width), dtype=torch.long, device=device)
    for i, answer in enumerate(answers):
        answer_ids[i, : len(answer)] = torch.tensor(answer, dtype=input_ids.dtype, device=device)
        answer_mask[i, : len(answer)] = 1

    batch = {}
    for key, value in prompt_inputs.items():
        if not torch.is_tensor(value):
            batch[key] = value
        elif key == "input_ids":
            batch[key] = torch.cat([value.expand(n, -1), answer_ids], dim=1)
        elif key == "attention_mask":
            batch[key] = torch.cat([value.expand(n, -1), answer_mask], dim=1)
        elif value.dim() >= 2 and value.shape[:2] == (1, prompt_len):
            # per-token side inputs (token type ids ...): the answer tokens are plain text
            batch[key] = torch.cat([value.expand(n, -1), torch.zeros_like(answer_ids)], dim=1)
        elif "image_grid_thw" in prompt_inputs and key in ("pixel_values", "image_grid_thw"):
            batch[key] = value.repeat(n, *[1] * (value.dim() - 1))  # Qwen2-VL: patches of all images, stacked
        elif value.shape[0] == 1:
            batch[key] = value.expand(n, *value.shape[1:])
        else:
            batch[key] = value
    kwargs = {}
    if "logits_to_keep" in inspect.signature(_unwrap(model).forward).parameters:
        kwargs["logits_to_keep"] = width + 1
    with torch.no_grad():
        logits = model(**batch, **kwargs).logits
    # logits at position p predict token p + 1: the answer's tokens are predicted by the `width` positions before them
    logits = logits[:, -(width + 1) : -1].float()
    log_probs = torch.log_softmax(logits, dim=-1).gather(-1, answer_ids.unsqueeze(-1)).squeeze(-1)
    sums = (log_probs * answer_mask).sum(dim=1)
    return sums, answer_mask.sum(dim=1)


def _unwrap(model):
    """The transformers model under a PEFT wrapper (whose forward takes **kwargs)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def implicit_rewards(policy, reference, prompt_inputs: dict, answers: list[list[int]], pad_id: int, beta: float):
    """(beta / T) * sum_t log(pi / pi_ref) for each answer; `reference=None` uses the policy with its adapter off."""
    policy_sums, lengths = answer_log_probs(policy, prompt_inputs, answers, pad_id)
    if reference is None:
        with policy.disable_adapter():
            reference_sums, _ = answer_log_probs(policy, prompt_inputs, answers, pad_id)
    else:
        reference_sums, _ = answer_log_probs(reference, prompt_inputs, answers, pad_id)
    return (beta * (policy_sums - reference_sums) / lengths).tolist()


def pick_best(loaded, reference, row: dict, candidates: list[list[int]], beta: float) -> tuple[int, list[float]]:
    """Index of the candidate with the highest implicit reward, and every candidate's reward."""
    from rlhfv.generation.inputs import build_inputs

    prompt_inputs = build_inputs(loaded, [row])
    if reference is not None and reference.model.device != loaded.model.device:
        raise ValueError("the policy and the reference must be on the same device")
    pad_id = loaded.tokenizer.pad_token_id
    pad_id = pad_id if pad_id is not None else 0
    rewards = implicit_rewards(
        loaded.model, None if reference is None else reference.model, dict(prompt_inputs), candidates, pad_id, beta
    )
    best = max(range(len(rewards)), key=lambda i: rewards[i])
    return best, rewards
