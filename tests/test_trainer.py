"""DenseDPOTrainer on text rows (tiny Llama): exact parity with TRL, the NOTES formula, LoRA, caching, guards.

(Over 350 lines on purpose: every test shares the independent full-logits computation and the fixtures below.)

The expected values are computed here from full logits (`model(...).logits`, log_softmax, gather), one unpadded row
at a time, with changed tokens found by decoding token prefixes: nothing from rlhfv's code is used to build them.
"""

import copy
import json
import logging
import os

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset

from rlhfv import DenseDPOConfig, DenseDPOTrainer
from rlhfv.tiny_models import build_text_model, build_tokenizer


BETA = 0.1


def rows_with_spans():
    """Three pairs of different lengths; spans marked by hand on known words (one on a repeated word)."""

    def span(text, word, nth=0):
        at = -1
        for _ in range(nth + 1):
            at = text.index(word, at + 1)
        return [at, at + len(word)]

    pairs = [
        ("Describe the image.", "A red circle next to a red square.", "A red circle next to a blue square.",
         [("red", 1)], [("blue", 0)]),
        ("What is there?", "A cat sits on a wooden table beside a cup of coffee.", "A dog sits on a table.",
         [("cat", 0), ("wooden", 0), ("beside a cup of coffee", 0)], [("dog", 0)]),
        ("Two people ride bicycles along a street with cars. What colour is the bus?", "The bus is yellow.",
         "The bus is red.", [("yellow", 0)], [("red", 0)]),
    ]  # fmt: skip
    rows = []
    for k, (prompt, chosen, rejected, chosen_words, rejected_words) in enumerate(pairs):
        rows.append(
            {
                "id": f"pair-{k}",
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "chosen_spans": [span(chosen, w, n) for w, n in chosen_words],
                "rejected_spans": [span(rejected, w, n) for w, n in rejected_words],
            }
        )
    return rows


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def pristine(tokenizer):
    """Policy and reference weights that no trainer touches: every trainer gets deep copies."""
    return build_text_model(tokenizer, seed=0), build_text_model(tokenizer, seed=1)


@pytest.fixture(scope="module")
def dataset():
    return Dataset.from_list(rows_with_spans())


def make_args(tmp_path, **overrides):
    settings = dict(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        bf16=False,
        report_to=[],
        beta=BETA,
        gradient_checkpointing=False,
        per_device_train_batch_size=3,
        save_strategy="no",
        max_length=None,
        ref_cache_dir=str(tmp_path / "ref_cache"),
        dataset_num_proc=None,
    )
    settings.update(overrides)
    return DenseDPOConfig(**settings)


def make_trainer(pristine, tokenizer, dataset, args, with_ref=True, **kwargs):
    policy, reference = (copy.deepcopy(m) for m in pristine)
    return DenseDPOTrainer(
        policy,
        ref_model=reference if with_ref else None,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        **kwargs,
    )


def first_batch(trainer, n=3):
    rows = trainer._remove_unused_columns(trainer.train_dataset)
    return trainer.data_collator([rows[i] for i in range(n)])


# ------------------------------------------------------------------------------- independent reference


def reference_rows(tokenizer, example, max_length=None, truncation_mode="keep_start"):
    """For each side: (token ids, completion flags, changed flags) of the row as the model should see it."""
    prompt_text = tokenizer.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    out = {}
    for side in ("chosen", "rejected"):
        full = tokenizer.apply_chat_template(example["prompt"] + example[side], tokenize=False)
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        assert ids[: len(prompt_ids)] == prompt_ids and tokenizer.decode(ids) == full
        ends = [len(tokenizer.decode(ids[: k + 1])) for k in range(len(ids))]
        starts = [0, *ends[:-1]]
        spans = [(a + len(prompt_text), b + len(prompt_text)) for a, b in example[f"{side}_spans"]]
        is_completion = [k >= len(prompt_ids) for k in range(len(ids))]
        changed = [
            c and any(s < b and e > a for a, b in spans) for c, s, e in zip(is_completion, starts, ends, strict=True)
        ]
        if max_length is not None:
            keep = slice(None, max_length) if truncation_mode == "keep_start" else slice(-max_length, None)
            ids, is_completion, changed = ids[keep], is_completion[keep], changed[keep]
        out[side] = (ids, is_completion, changed)
    return out


def dense_score(model, ids, is_completion, changed, gamma, average):
    """score = sum_t w_t log p(y_t) / N (N = sum w_t, or 1), w_t = gamma on changed tokens, 1 on other completion."""
    logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    token_logps = F.log_softmax(logits, dim=-1).gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1)
    weights = torch.tensor(
        [(gamma if c else 1.0) if m else 0.0 for m, c in zip(is_completion[1:], changed[1:], strict=True)]
    )
    total = (weights * token_logps).sum()
    return total / weights.sum() if average else total


def reference_loss(policy, reference, rows, gamma, average, sft_weight=0.0, ref_forward=None):
    losses, chosen_scores = [], []
    for row in rows:
        scores = {}
        for side in ("chosen", "rejected"):
            scores[side] = dense_score(policy, *row[side], gamma, average)
            with torch.no_grad():
                if ref_forward is None:
                    scores[f"ref_{side}"] = dense_score(reference, *row[side], gamma, average)
                else:
                    with ref_forward():
                        scores[f"ref_{side}"] = dense_score(policy, *row[side], gamma, average)
        margin = (scores["chosen"] - scores["ref_chosen"]) - (scores["rejected"] - scores["ref_rejected"])
        losses.append(-F.logsigmoid(BETA * margin))
        chosen_scores.append(scores["chosen"])
    return torch.stack(losses).mean() - sft_weight * torch.stack(chosen_scores).mean()


def grads(loss, model):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, params, allow_unused=True)


def assert_tiled_head_matches_stock_trl(dense, dense_batch, stock, stock_batch, head_calls):
    """Dense DPO at gamma 1 with sums on rlhfv's tiled CPU head == stock TRL on its own head: loss, grads, metrics."""
    dense_loss = dense.compute_loss(dense.model, dense_batch)
    assert head_calls == {"tiled": 2, "trl": 0}  # policy and reference, on rlhfv's CPU head
    stock_loss = stock.compute_loss(stock.model, stock_batch)
    assert head_calls == {"tiled": 2, "trl": 2}  # stock TRL keeps its own head
    assert abs(dense_loss.item() - stock_loss.item()) < 1e-6
    assert_close_grads(grads(dense_loss, dense.model), grads(stock_loss, stock.model), atol=1e-6)
    # TRL's metrics read the head's entropy, mean logit and top-1 flags: the tiled head gives the same
    compared = [
        "entropy",
        "logits/chosen",
        "logits/rejected",
        "mean_token_accuracy",
        "logps/chosen",
        "rewards/margins",
    ]
    for key in compared:
        assert dense._metrics["train"][key] == pytest.approx(stock._metrics["train"][key], abs=1e-5), key


def assert_close_grads(got, expected, atol):
    for g, e in zip(got, expected, strict=True):
        if e is None:
            assert g is None or torch.count_nonzero(g) == 0
        else:
            torch.testing.assert_close(g, e, atol=atol, rtol=1e-4)


# ----------------------------------------------------------------------------------------------- parity


def test_gamma_one_sums_reproduce_stock_dpo_exactly(tmp_path, pristine, tokenizer, dataset, head_calls):
    from trl import DPOConfig, DPOTrainer

    dense = make_trainer(pristine, tokenizer, dataset, make_args(tmp_path, gamma=1.0, score_average=False))
    stock_args = DPOConfig(
        output_dir=str(tmp_path / "stock"), use_cpu=True, bf16=False, report_to=[], beta=BETA,
        gradient_checkpointing=False, max_length=None, save_strategy="no",
    )  # fmt: skip
    policy, reference = (copy.deepcopy(m) for m in pristine)
    stock = DPOTrainer(policy, ref_model=reference, args=stock_args, train_dataset=dataset, processing_class=tokenizer)
    dense_batch = first_batch(dense)
    stock_rows = stock._remove_unused_columns(stock.train_dataset)
    stock_batch = stock.data_collator([stock_rows[i] for i in range(3)])
    assert torch.equal(dense_batch["input_ids"], stock_batch["input_ids"])
    assert_tiled_head_matches_stock_trl(dense, dense_batch, stock, stock_batch, head_calls)


def test_tiled_cpu_head_off_uses_trl_head_with_the_same_result(tmp_path, pristine, tokenizer, dataset, head_calls):
    results = {}
    for tiled in (True, False):
        trainer = make_trainer(pristine, tokenizer, dataset, make_args(tmp_path, tiled_cpu_head=tiled))
        served = dict(head_calls)
        loss = trainer.compute_loss(trainer.model, first_batch(trainer))
        used = {path: head_calls[path] - served[path] for path in served}
        assert used == ({"tiled": 2, "trl": 0} if tiled else {"tiled": 0, "trl": 2})
        results[tiled] = (loss, grads(loss, trainer.model))
    assert abs(results[True][0].item() - results[False][0].item()) < 1e-6
    assert_close_grads(results[True][1], results[False][1], atol=1e-6)


@pytest.mark.parametrize("gamma", [2.0, 5.0])
@pytest.mark.parametrize("average", [True, False])
def test_loss_and_grads_match_formula(tmp_path, pristine, tokenizer, dataset, gamma, average):
    trainer = make_trainer(pristine, tokenizer, dataset, make_args(tmp_path, gamma=gamma, score_average=average))
    loss = trainer.compute_loss(trainer.model, first_batch(trainer))
    rows = [reference_rows(tokenizer, example) for example in dataset]
    expected = reference_loss(trainer.model, trainer.ref_model, rows, gamma, average)
    assert abs(loss.item() - expected.item()) < 1e-5
    assert_close_grads(grads(loss, trainer.model), grads(expected, trainer.model), atol=1e-5)


@pytest.mark.parametrize("truncation_mode", ["keep_start", "keep_end"])
def test_truncation_cutting_the_answers(tmp_path, pristine, tokenizer, dataset, truncation_mode):
    prompt_lengths = [len(reference_rows(tokenizer, ex)["chosen"][0]) - 1 for ex in dataset]
    max_length = 32  # cuts every answer of the longest prompt and the long chosen answer
    rows = [reference_rows(tokenizer, ex, max_length, truncation_mode) for ex in dataset]
    full = [reference_rows(tokenizer, ex) for ex in dataset]
    assert any(len(r["chosen"][0]) < len(f["chosen"][0]) for r, f in zip(rows, full, strict=True)), prompt_lengths
    # A pair cut to the same tokens on both sides carries no preference and is left out (tested below)
    rows = [row for row in rows if row["chosen"][0] != row["rejected"][0]]
    args = make_args(tmp_path, gamma=5.0, score_average=True, max_length=max_length, truncation_mode=truncation_mode)
    trainer = make_trainer(pristine, tokenizer, dataset, args)
    assert len(trainer.train_dataset) == len(rows) >= 2
    loss = trainer.compute_loss(trainer.model, first_batch(trainer, n=len(rows)))
    expected = reference_loss(trainer.model, trainer.ref_model, rows, 5.0, True)
    assert abs(loss.item() - expected.item()) < 1e-5
    assert_close_grads(grads(loss, trainer.model), grads(expected, trainer.model), atol=1e-5)


def test_pairs_cut_to_the_same_tokens_are_left_out_and_reported(tmp_path, pristine, tokenizer, dataset, caplog):
    full = [reference_rows(tokenizer, example) for example in dataset]
    # The first token where pair-0's answers differ ("red" / "blue" square): cut just before it
    chosen_ids, rejected_ids = full[0]["chosen"][0], full[0]["rejected"][0]
    max_length = next(k for k, (a, b) in enumerate(zip(chosen_ids, rejected_ids, strict=False)) if a != b)
    expected_kept, expected_reported = [], []
    for example, row in zip(dataset, full, strict=True):
        prompt_length = row["chosen"][1].count(False)
        if prompt_length >= max_length:
            continue  # TRL drops rows whose prompt alone fills max_length
        same = row["chosen"][0][:max_length] == row["rejected"][0][:max_length]
        (expected_reported if same else expected_kept).append(example["id"])
    assert expected_reported == ["pair-0"] and expected_kept  # the setup exercises both outcomes

    trainer = make_trainer(pristine, tokenizer, dataset, make_args(tmp_path, max_length=max_length))
    assert trainer.train_dataset["id"] == expected_kept
    assert any("rows 'pair-0'" in r.message and "no preference" in r.message for r in caplog.records)

    with pytest.raises(ValueError, match="Nothing is left to train on"):
        make_trainer(pristine, tokenizer, dataset.select([0]), make_args(tmp_path, max_length=max_length))


def test_sft_weight_adds_rlhfv_sft_term(tmp_path, pristine, tokenizer, dataset):
    trainer = make_trainer(pristine, tokenizer, dataset, make_args(tmp_path, gamma=3.0, sft_weight=0.7))
    loss = trainer.compute_loss(trainer.model, first_batch(trainer))
    rows = [reference_rows(tokenizer, example) for example in dataset]
    expected = reference_loss(trainer.model, trainer.ref_model, rows, 3.0, True, sft_weight=0.7)
    assert abs(loss.item() - expected.item()) < 1e-5
    assert_close_grads(grads(loss, trainer.model), grads(expected, trainer.model), atol=1e-5)
    assert "dense/sft_loss" in trainer._metrics["train"]


def test_lora_reference_is_the_base_model(tmp_path, pristine, tokenizer, dataset):
    from peft import LoraConfig

    peft_config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    args = make_args(tmp_path, gamma=5.0)
    trainer = make_trainer(pristine, tokenizer, dataset, args, with_ref=False, peft_config=peft_config)
    assert trainer.ref_model is None
    torch.manual_seed(3)
    with torch.no_grad():  # move the adapters away from their zero init so policy and reference differ
        for name, param in trainer.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    loss = trainer.compute_loss(trainer.model, first_batch(trainer))
    rows = [reference_rows(tokenizer, example) for example in dataset]
    expected = reference_loss(trainer.model, None, rows, 5.0, True, ref_forward=trainer.model.disable_adapter)
    assert abs(loss.item()) > 0 and abs(loss.item() - expected.item()) < 1e-5
    assert_close_grads(grads(loss, trainer.model), grads(expected, trainer.model), atol=1e-5)


# -------------------------------------------------------------------------------------- reference cache


def test_precomputed_reference_matches_on_the_fly_and_survives_a_gamma_change(
    tmp_path, pristine, tokenizer, dataset, ref_computations
):
    for gamma in (5.0, 2.0):
        cached = make_trainer(
            pristine,
            tokenizer,
            dataset,
            make_args(tmp_path, gamma=gamma, precompute_ref_log_probs=True),
            with_ref=False,
        )
        assert (
            cached.ref_model is None and ref_computations["computed"] == 1
        )  # computed for gamma 5, reused for gamma 2
        # The on-the-fly reference of full fine-tuning is the untouched initial policy
        live = DenseDPOTrainer(
            copy.deepcopy(pristine[0]), ref_model=copy.deepcopy(pristine[0]),
            args=make_args(tmp_path, gamma=gamma), train_dataset=dataset, processing_class=tokenizer,
        )  # fmt: skip
        cached_loss = cached.compute_loss(cached.model, first_batch(cached))
        live_loss = live.compute_loss(live.model, first_batch(live))
        assert abs(cached_loss.item() - live_loss.item()) < 1e-6
        assert_close_grads(grads(cached_loss, cached.model), grads(live_loss, live.model), atol=1e-6)
    assert len(os.listdir(tmp_path / "ref_cache")) == 1


def test_mismatched_reference_cache_is_refused(tmp_path, pristine, tokenizer, dataset, ref_computations):
    args = make_args(tmp_path, precompute_ref_log_probs=True)
    make_trainer(pristine, tokenizer, dataset, args, with_ref=False)
    (entry,) = (tmp_path / "ref_cache").iterdir()
    meta = json.loads((entry / "meta.json").read_text())

    # Stored key says another reference model: refused at construction
    tampered = copy.deepcopy(meta)
    tampered["key"]["reference_model"] = "0" * 64
    (entry / "meta.json").write_text(json.dumps(tampered))
    with pytest.raises(ValueError, match="computed for other settings.*reference_model"):
        make_trainer(pristine, tokenizer, dataset, make_args(tmp_path, precompute_ref_log_probs=True), with_ref=False)
    (entry / "meta.json").write_text(json.dumps(meta))

    # Per-token values that do not fit the tokenised rows: refused when the batch is built
    table = Dataset.load_from_disk(str(entry / "data"))
    short = table.map(lambda row: {"ref_chosen_token_logps": row["ref_chosen_token_logps"][:-1]})
    short.save_to_disk(str(tmp_path / "short"))
    import shutil

    shutil.rmtree(entry / "data")
    shutil.copytree(tmp_path / "short", entry / "data")
    computed = ref_computations["computed"]
    trainer = make_trainer(
        pristine, tokenizer, dataset, make_args(tmp_path, precompute_ref_log_probs=True), with_ref=False
    )
    assert ref_computations["computed"] == computed  # the (tampered) cache entry was read, not recomputed
    with pytest.raises(ValueError, match="row id='pair-0'.*reference cache is stale"):
        first_batch(trainer)


# ------------------------------------------------------------------------------------ training + metrics


def test_training_moves_parameters_and_logs_dense_metrics(tmp_path, pristine, tokenizer, dataset):
    args = make_args(tmp_path, max_steps=3, logging_steps=1, learning_rate=1e-2)
    trainer = make_trainer(pristine, tokenizer, dataset, args)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    moved = [n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert len(moved) > len(before) // 2

    rows = [reference_rows(tokenizer, example) for example in dataset]
    changed = sum(sum(r[side][2]) for r in rows for side in ("chosen", "rejected"))
    completion = sum(sum(r[side][1][1:]) for r in rows for side in ("chosen", "rejected"))
    steps = [entry for entry in trainer.state.log_history if "dense/changed_share" in entry]
    assert len(steps) == 3
    for entry in steps:
        assert 0 < entry["dense/changed_share"] < 1
        assert entry["dense/changed_share"] == pytest.approx(changed / completion, abs=1e-6)
        assert entry["dense/pairs_without_changes"] == 0
        # The changed and unchanged parts add up to TRL's reward
        for side in ("chosen", "rejected"):
            parts = entry[f"dense/rewards/changed_{side}"] + entry[f"dense/rewards/unchanged_{side}"]
            assert parts == pytest.approx(entry[f"rewards/{side}"], abs=1e-6)
        for key in ("dense/logps/changed_margin", "dense/logps/unchanged_margin", "dense/rewards/changed_margin"):
            assert key in entry
    # Learning rate 1e-2 for 3 steps on the same 3 pairs: the margin on changed tokens grows
    assert steps[-1]["dense/rewards/changed_margin"] > steps[0]["dense/rewards/changed_margin"]


def test_token_diff_source_marks_rlhfv_changes(tmp_path, pristine, tokenizer, dataset):
    import difflib

    trainer = make_trainer(pristine, tokenizer, dataset, make_args(tmp_path, segment_source="rlhfv_token_diff"))
    batch = first_batch(trainer)
    for i, example in enumerate(dataset):
        ref = reference_rows(tokenizer, example)
        chosen, rejected = ref["chosen"][0], ref["rejected"][0]
        blocks = [m for m in difflib.SequenceMatcher(None, rejected[1:], chosen[1:]).get_matching_blocks()]
        kept = [m for m in blocks[:-1] if m.size >= 3] + [blocks[-1]]
        expected, at_a, at_b = set(), 0, 0
        for m in kept:
            if m.a > at_a and m.b > at_b:
                expected |= {j + 1 for j in range(at_b, m.b)}
            at_a, at_b = m.a + m.size, m.b + m.size
        got = set(batch["changed_mask"][i].nonzero().squeeze(1).tolist())
        assert got == expected and got
    loss = trainer.compute_loss(trainer.model, batch)
    assert torch.isfinite(loss)


# ------------------------------------------------------------------------------------------------ guards


@pytest.mark.parametrize(
    "field, value",
    [("gamma", 0.0), ("gamma", -1.0), ("gamma", float("inf")), ("gamma", float("nan")), ("beta", 0.0),
     ("beta", -0.5), ("beta", float("inf")), ("beta", float("nan")), ("sft_weight", float("nan"))],
)  # fmt: skip
def test_settings_that_cannot_mean_what_the_user_wants_are_refused(field, value):
    with pytest.raises(ValueError, match=f"`{field}` must be"):
        DenseDPOConfig(output_dir="x", use_cpu=True, bf16=False, **{field: value})


def test_settings_changed_after_construction_are_checked_again_by_the_trainer(tmp_path, pristine, tokenizer, dataset):
    args = make_args(tmp_path)
    args.beta = -0.5  # after __post_init__, as a script or notebook might do
    with pytest.raises(ValueError, match="`beta` must be"):
        make_trainer(pristine, tokenizer, dataset, args)


def test_config_guards():
    with pytest.raises(ValueError, match="segment_source"):
        DenseDPOConfig(output_dir="x", segment_source="words", use_cpu=True, bf16=False)
    refusals = [
        ({"loss_type": ["sigmoid", "sft"]}, "sft_weight"),
        ({"loss_type": "sigmoid_norm"}, "score_average=True"),
        ({"loss_type": "ipo"}, "score_average=False"),
        ({"ld_alpha": 0.5}, "ld_alpha"),
        ({"use_weighting": True}, "WPO"),
    ]
    for overrides, message in refusals:
        with pytest.raises(ValueError, match=message):
            DenseDPOConfig(output_dir="x", use_cpu=True, bf16=False, **overrides)
    DenseDPOConfig(output_dir="x", use_cpu=True, bf16=False, loss_type="ipo", score_average=False)


def test_trainer_guards(tmp_path, pristine, tokenizer, dataset):
    from trl import DPOConfig

    with pytest.raises(TypeError, match="DenseDPOConfig"):
        make_trainer(pristine, tokenizer, dataset, DPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False))
    bad = rows_with_spans()
    bad[1]["rejected_spans"] = [[0, 500]]
    with pytest.raises(ValueError, match=r"row id='pair-1': rejected_spans\[0\] = \[0, 500\) lies outside"):
        make_trainer(pristine, tokenizer, Dataset.from_list(bad), make_args(tmp_path))
    with pytest.raises(ValueError, match="built in memory"):
        make_trainer(pristine, tokenizer, dataset, make_args(tmp_path), with_ref=False)
    with pytest.raises(TypeError, match="collator"):
        make_trainer(pristine, tokenizer, dataset, make_args(tmp_path), data_collator=lambda rows: rows)


def test_forward_patched_after_construction_is_detected(tmp_path, pristine, tokenizer, dataset):
    from trl.trainer.utils import add_fused_lm_head

    trainer = make_trainer(pristine, tokenizer, dataset, make_args(tmp_path))
    # Replaces the wrapped forward, as a kernel patch applied after construction would
    add_fused_lm_head(trainer.model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    with pytest.raises(RuntimeError, match="silently be plain DPO"):
        trainer.compute_loss(trainer.model, first_batch(trainer))


def test_pairs_without_changes_and_truncated_changes_are_counted(tmp_path, pristine, tokenizer, dataset, caplog):
    rows = rows_with_spans()
    rows[0]["chosen_spans"], rows[0]["rejected_spans"] = [], []
    # pair-2's answers also differ in an unmarked first word, so cutting its marked change ("yellow"/"red" at the end
    # of a long prompt) leaves a pair that still differs: it trains, with all of its changed tokens truncated
    rows[2]["rejected"] = [{"role": "assistant", "content": "A bus is red."}]
    rows[2]["rejected_spans"] = [[len("A bus is "), len("A bus is red")]]
    # pair-1's only rejected change is "dog" near the start, its chosen changes reach the end
    max_length = 32
    with caplog.at_level(logging.WARNING, logger="rlhfv.trainer"):
        trainer = make_trainer(
            pristine, tokenizer, Dataset.from_list(rows), make_args(tmp_path, max_length=max_length)
        )
        batch = first_batch(trainer)
        trainer.compute_loss(trainer.model, batch)
    expected_truncated = 0
    for example in rows[1:]:
        cut = reference_rows(tokenizer, example, max_length)
        whole = reference_rows(tokenizer, example)
        had = any(any(whole[s][2]) for s in ("chosen", "rejected"))
        kept = any(any(cut[s][2]) for s in ("chosen", "rejected"))
        expected_truncated += had and not kept
    assert expected_truncated == 1
    metrics = trainer._metrics["train"]
    assert metrics["dense/pairs_without_changes"] == [1]
    assert metrics["dense/pairs_changes_truncated"] == [expected_truncated]
    text = caplog.text
    assert "1 of 3 pairs of the train dataset have no changed segment" in text
    assert "no changed token" in text and f"max_length={max_length} cut every changed token" in text
    # A pair without changes trains as plain DPO: its weights are 1 on every completion token
    assert batch["changed_mask"][0].sum() == 0 and batch["changed_mask"][3].sum() == 0
