"""DenseDPOTrainer on image rows (tiny LLaVA and Qwen2-VL): TRL parity, the NOTES formula, caching, guards.

Expected values come from full logits of each row run alone (unpadded), built here from the processor: the prompt
with its image through the processor, the completion tokenized separately (as any chat model sees it), changed
tokens found by decoding token prefixes.
"""

import copy
import difflib

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from PIL import Image
from test_trainer import BETA, assert_close_grads, assert_tiled_head_matches_stock_trl, grads, rows_with_spans

from rlhfv import DenseDPOConfig, DenseDPOTrainer
from rlhfv.tiny_models import build_llava, build_qwen2_vl, build_tokenizer


COLOURS = [(200, 30, 30), (30, 160, 40), (20, 40, 220)]


def image_rows():
    rows = rows_with_spans()
    for row, colour in zip(rows, COLOURS, strict=True):
        row["images"] = [Image.new("RGB", (40, 40), colour)]
    return rows


@pytest.fixture(scope="module", params=["llava", "qwen2_vl"])
def vlm(request):
    if request.param == "llava":
        model, processor = build_llava(build_tokenizer(), seed=0)
        reference, _ = build_llava(build_tokenizer(), seed=1)
    else:
        model, processor = build_qwen2_vl(build_tokenizer(image_token="<|image_pad|>"), seed=0)
        reference, _ = build_qwen2_vl(build_tokenizer(image_token="<|image_pad|>"), seed=1)
    return request.param, model, reference, processor


@pytest.fixture(scope="module")
def llava():
    model, processor = build_llava(build_tokenizer(), seed=0)
    reference, _ = build_llava(build_tokenizer(), seed=1)
    return "llava", model, reference, processor


@pytest.fixture(scope="module")
def dataset():
    return Dataset.from_list(image_rows())


def make_args(tmp_path, **overrides):
    settings = dict(
        output_dir=str(tmp_path / "out"), use_cpu=True, bf16=False, report_to=[], beta=BETA,
        gradient_checkpointing=False, per_device_train_batch_size=3, save_strategy="no", max_length=None,
        ref_cache_dir=str(tmp_path / "ref_cache"),
    )  # fmt: skip
    settings.update(overrides)
    return DenseDPOConfig(**settings)


def make_trainer(vlm, dataset, args, with_ref=True):
    _, model, reference, processor = vlm
    return DenseDPOTrainer(
        copy.deepcopy(model),
        ref_model=copy.deepcopy(reference) if with_ref else None,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
    )


def first_batch(trainer, n=3):
    rows = trainer._remove_unused_columns(trainer.train_dataset)
    return trainer.data_collator([rows[i] for i in range(n)])


# ------------------------------------------------------------------------------- independent reference


def reference_rows(processor, example, max_length=None):
    tokenizer = processor.tokenizer
    user = example["prompt"][0]["content"]
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": user}]}]
    prompt_text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    encoded = processor(images=example["images"], text=[prompt_text], return_tensors="pt", add_special_tokens=False)
    prompt_ids = encoded["input_ids"][0].tolist()
    out = {}
    for side in ("chosen", "rejected"):
        answer = example[side][0]["content"]
        full = processor.apply_chat_template(
            prompt + [{"role": "assistant", "content": [{"type": "text", "text": answer}]}], tokenize=False
        )
        completion_text = full[len(prompt_text) :]
        assert completion_text.startswith(answer)  # the answer opens the completion in this template
        completion_ids = tokenizer(completion_text, add_special_tokens=False)["input_ids"]
        ends = [len(tokenizer.decode(completion_ids[: k + 1])) for k in range(len(completion_ids))]
        starts = [0, *ends[:-1]]
        spans = example[f"{side}_spans"]
        changed = [False] * len(prompt_ids) + [
            any(s < b and e > a for a, b in spans) for s, e in zip(starts, ends, strict=True)
        ]
        is_completion = [False] * len(prompt_ids) + [True] * len(completion_ids)
        ids = prompt_ids + completion_ids
        extras = {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask")}
        if "mm_token_type_ids" in extras:
            extras["mm_token_type_ids"] = torch.cat(
                [extras["mm_token_type_ids"], torch.zeros(1, len(completion_ids), dtype=torch.long)], dim=1
            )
        if max_length is not None:
            ids, is_completion, changed = ids[:max_length], is_completion[:max_length], changed[:max_length]
            if "mm_token_type_ids" in extras:
                extras["mm_token_type_ids"] = extras["mm_token_type_ids"][:, :max_length]
        out[side] = (ids, is_completion, changed, extras)
    return out


def dense_score(model, ids, is_completion, changed, extras, gamma, average):
    input_ids = torch.tensor([ids])
    logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **extras).logits[0, :-1].float()
    token_logps = F.log_softmax(logits, dim=-1).gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1)
    weights = torch.tensor(
        [(gamma if c else 1.0) if m else 0.0 for m, c in zip(is_completion[1:], changed[1:], strict=True)]
    )
    total = (weights * token_logps).sum()
    return total / weights.sum() if average else total


def reference_loss(policy, reference, rows, gamma, average):
    losses = []
    for row in rows:
        scores = {side: dense_score(policy, *row[side], gamma, average) for side in ("chosen", "rejected")}
        with torch.no_grad():
            ref = {side: dense_score(reference, *row[side], gamma, average) for side in ("chosen", "rejected")}
        margin = (scores["chosen"] - ref["chosen"]) - (scores["rejected"] - ref["rejected"])
        losses.append(-F.logsigmoid(BETA * margin))
    return torch.stack(losses).mean()


# ------------------------------------------------------------------------------------------------ tests


def test_gamma_one_sums_reproduce_stock_dpo_exactly(tmp_path, llava, dataset, head_calls):
    from trl import DPOConfig, DPOTrainer

    _, model, reference, processor = llava
    dense = make_trainer(llava, dataset, make_args(tmp_path, gamma=1.0, score_average=False))
    stock_args = DPOConfig(
        output_dir=str(tmp_path / "stock"), use_cpu=True, bf16=False, report_to=[], beta=BETA,
        gradient_checkpointing=False, max_length=None, save_strategy="no",
    )  # fmt: skip
    stock = DPOTrainer(
        copy.deepcopy(model), ref_model=copy.deepcopy(reference), args=stock_args, train_dataset=dataset,
        processing_class=processor,
    )  # fmt: skip
    dense_batch = first_batch(dense)
    stock_rows = stock._remove_unused_columns(stock.train_dataset)
    stock_batch = stock.data_collator([stock_rows[i] for i in range(3)])
    for key, value in stock_batch.items():
        assert torch.equal(dense_batch[key], value), key
    assert_tiled_head_matches_stock_trl(dense, dense_batch, stock, stock_batch, head_calls)


@pytest.mark.parametrize("max_length", [None, "cut"])
def test_loss_and_grads_match_formula(tmp_path, vlm, dataset, max_length):
    name, _, _, processor = vlm
    if max_length == "cut":
        # Keep every prompt (image tokens included), cut the answers
        # (the shortest such cut that leaves every pair different: a pair cut to the same tokens is refused)
        prompt = max(reference_rows(processor, ex)["chosen"][1].count(False) for ex in dataset)

        def all_pairs_differ(length):
            cut = [reference_rows(processor, ex, length) for ex in dataset]
            return all(row["chosen"][0] != row["rejected"][0] for row in cut)

        max_length = next(prompt + extra for extra in range(2, 64) if all_pairs_differ(prompt + extra))
    rows = [reference_rows(processor, example, max_length) for example in dataset]
    if max_length is not None:
        full = [reference_rows(processor, example) for example in dataset]
        sides = ("chosen", "rejected")
        # at least two answers are cut (a shorter cut would make pair-2's answers identical, which is refused)
        assert sum(len(r[s][0]) < len(f[s][0]) for r, f in zip(rows, full, strict=True) for s in sides) >= 2
        assert all(any(r[s][1]) for r in rows for s in sides)
    trainer = make_trainer(vlm, dataset, make_args(tmp_path, max_length=max_length))
    batch = first_batch(trainer)
    # Rows are padded differently: prompts of different lengths are left-padded, answers right-padded
    assert len({int(m.nonzero()[0]) for m in batch["completion_mask"]}) > 1
    for gamma in (2.0, 5.0):
        for average in (True, False):
            trainer.args.gamma, trainer.args.score_average = gamma, average
            loss = trainer.compute_loss(trainer.model, batch)
            expected = reference_loss(trainer.model, trainer.ref_model, rows, gamma, average)
            assert abs(loss.item() - expected.item()) < 1e-5, (name, gamma, average)
            assert_close_grads(grads(loss, trainer.model), grads(expected, trainer.model), atol=1e-5)


def test_precomputed_reference_for_images_matches_on_the_fly(tmp_path, llava, dataset, ref_computations):
    _, model, _, _ = llava
    for gamma in (5.0, 2.0):
        args = make_args(tmp_path, gamma=gamma, precompute_ref_log_probs=True)
        cached = make_trainer(llava, dataset, args, with_ref=False)
        assert (
            cached.ref_model is None and ref_computations["computed"] == 1
        )  # computed for gamma 5, reused for gamma 2
        live = DenseDPOTrainer(
            copy.deepcopy(model), ref_model=copy.deepcopy(model), args=make_args(tmp_path, gamma=gamma),
            train_dataset=dataset, processing_class=llava[3],
        )  # fmt: skip
        cached_loss = cached.compute_loss(cached.model, first_batch(cached))
        live_loss = live.compute_loss(live.model, first_batch(live))
        assert abs(cached_loss.item() - live_loss.item()) < 1e-6
    # The evaluation path precomputes too (TRL does it for text only)
    metrics = cached.evaluate(Dataset.from_list(image_rows()[:2]))
    assert "eval_dense/changed_share" in metrics and "eval_loss" in metrics


def test_truncation_that_cuts_image_tokens_fails_before_the_model(tmp_path, llava, dataset):
    trainer = make_trainer(llava, dataset, make_args(tmp_path, max_length=8))
    with pytest.raises(ValueError, match=r"row id='pair-0': max_length=8 cuts image tokens"):
        first_batch(trainer)


def test_token_diff_source_on_whole_sequences(tmp_path, vlm, dataset):
    _, _, _, processor = vlm
    trainer = make_trainer(vlm, dataset, make_args(tmp_path, segment_source="rlhfv_token_diff"))
    batch = first_batch(trainer)
    for i, example in enumerate(dataset):
        ref = reference_rows(processor, example)
        chosen, rejected = ref["chosen"][0], ref["rejected"][0]
        blocks = difflib.SequenceMatcher(None, rejected[1:], chosen[1:]).get_matching_blocks()
        kept = [m for m in blocks[:-1] if m.size >= 3] + [blocks[-1]]
        expected, at_a, at_b = [], 0, 0
        for m in kept:
            if m.a > at_a and m.b > at_b:
                expected += [chosen[j + 1] for j in range(at_b, m.b)]
            at_a, at_b = m.a + m.size, m.b + m.size
        row = batch["changed_mask"][i].bool()
        assert batch["input_ids"][i][row].tolist() == expected and expected
    assert torch.isfinite(trainer.compute_loss(trainer.model, batch))


def test_training_steps_log_dense_metrics(tmp_path, llava, dataset):
    args = make_args(tmp_path, max_steps=2, logging_steps=1, learning_rate=1e-2)
    trainer = make_trainer(llava, dataset, args)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert (
        sum(not torch.equal(b, p) for b, p in zip(before, trainer.model.parameters(), strict=True)) > len(before) // 2
    )
    _, _, _, processor = llava
    rows = [reference_rows(processor, example) for example in dataset]
    changed = sum(sum(r[s][2]) for r in rows for s in ("chosen", "rejected"))
    completion = sum(sum(r[s][1]) for r in rows for s in ("chosen", "rejected"))
    logged = [e for e in trainer.state.log_history if "dense/changed_share" in e]
    assert len(logged) == 2
    assert all(e["dense/changed_share"] == pytest.approx(changed / completion, abs=1e-6) for e in logged)


def test_image_pair_cut_to_the_same_tokens_is_refused_by_name(tmp_path, llava, dataset):
    processor = llava[3]
    full = reference_rows(processor, dataset[0])
    chosen_ids, rejected_ids = full["chosen"][0], full["rejected"][0]
    # Cut just before the first token where pair-0's answers differ: both rows become the same tokens
    max_length = next(k for k, (a, b) in enumerate(zip(chosen_ids, rejected_ids, strict=False)) if a != b)
    assert full["chosen"][1][:max_length].count(True) > 0  # answer tokens are kept, image tokens are not cut
    trainer = make_trainer(llava, dataset.select([0]), make_args(tmp_path, max_length=max_length))
    with pytest.raises(ValueError, match="row id='pair-0': max_length=.* same tokens"):
        first_batch(trainer, n=1)
    # One more token keeps the difference: the same row collates
    trainer = make_trainer(llava, dataset.select([0]), make_args(tmp_path, max_length=max_length + 1))
    assert first_batch(trainer, n=1)["changed_mask"].sum() > 0
