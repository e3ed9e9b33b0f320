"""Best-of-N (RLAIF-V self-feedback): rewards against an independent full-logit computation, and the pick."""

import copy
import json

import pytest
import torch

from experiments.synthetic import write_prompts
from rlhfv.generation.best_of_n import implicit_rewards
from rlhfv.generation.generate import GenerationOptions, LoadedModel, build_inputs, generate_answers, read_prompts


BETA = 0.5


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from rlhfv.tiny_models import build_llava, build_tokenizer

    tokenizer = build_tokenizer()
    policy, processor = build_llava(tokenizer, seed=1)
    reference, _ = build_llava(tokenizer, seed=2)
    prompts = write_prompts(tmp_path_factory.mktemp("prompts"), n=2, seed=0)
    return policy.eval(), reference.eval(), processor, prompts


def full_logit_reward(policy, reference, inputs, answer):
    """beta / T * sum_t [log pi(y_t) - log pi_ref(y_t)], one answer at a time, from the full logits."""
    total = 0.0
    for model, sign in [(policy, 1.0), (reference, -1.0)]:
        ids = torch.cat([inputs["input_ids"], torch.tensor([answer])], dim=1)
        with torch.no_grad():
            logits = model(
                input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=inputs["pixel_values"]
            ).logits
        log_probs = torch.log_softmax(logits[0].double(), dim=-1)
        start = inputs["input_ids"].shape[1]
        total += sign * sum(log_probs[start + t - 1, token].item() for t, token in enumerate(answer))
    return BETA * total / len(answer)


def candidates_for(processor):
    eos = processor.tokenizer.eos_token_id
    texts = ["A red cup is on the left.", "There is a blue kite at the top and a cat.", "Yes.", "The image shows"]
    return [processor.tokenizer(t, add_special_tokens=False)["input_ids"] + [eos] for t in texts[:3]] + [
        processor.tokenizer(texts[3], add_special_tokens=False)["input_ids"]  # cut short: no end token
    ]


def test_rewards_match_full_logits_and_best_is_argmax(world):
    policy, reference, processor, prompts = world
    row = read_prompts(prompts)[0]
    inputs = build_inputs(LoadedModel(policy, processor, "in-memory"), [row])
    answers = candidates_for(processor)
    assert len({len(a) for a in answers}) > 1  # different lengths exercise padding and the 1/T normalisation
    rewards = implicit_rewards(policy, reference, dict(inputs), answers, processor.tokenizer.pad_token_id, BETA)
    expected = [full_logit_reward(policy, reference, inputs, a) for a in answers]
    assert rewards == pytest.approx(expected, abs=1e-5)
    assert max(range(4), key=rewards.__getitem__) == max(range(4), key=expected.__getitem__)


def test_peft_reference_is_the_base_with_the_adapter_off(world):
    from peft import LoraConfig, get_peft_model

    policy, _, processor, prompts = world
    base_copy = copy.deepcopy(policy)
    # random (non-zero) LoRA weights, so the adapter changes the policy
    adapted = get_peft_model(
        copy.deepcopy(policy), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    ).eval()
    row = read_prompts(prompts)[1]
    inputs = build_inputs(LoadedModel(adapted, processor, "in-memory"), [row])
    answers = candidates_for(processor)
    rewards = implicit_rewards(adapted, None, dict(inputs), answers, processor.tokenizer.pad_token_id, BETA)
    expected = [full_logit_reward(adapted, base_copy, inputs, a) for a in answers]
    assert rewards == pytest.approx(expected, abs=1e-5)
    assert any(abs(r) > 1e-3 for r in rewards)


def test_generate_best_of_n_keeps_the_highest_reward(tmp_path, world):
    policy, reference, processor, prompts = world
    out = tmp_path / "answers.jsonl"
    options = GenerationOptions(max_new_tokens=5, batch_size=2, do_sample=True, temperature=1.0, best_of=4, beta=BETA)
    generate_answers(
        "in-memory", prompts, out, options, progress=False,
        loaded=LoadedModel(policy, processor, "policy"), reference=LoadedModel(reference, processor, "reference"),
    )  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert len(row["candidates"]) == 4
        best = max(row["candidates"], key=lambda c: c["reward"])
        assert row["answer"] == best["answer"]
        assert len({c["reward"] for c in row["candidates"]}) > 1
