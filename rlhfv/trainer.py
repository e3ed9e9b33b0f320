"""`DenseDPOTrainer`: Dense DPO (RLHF-V) as a thin extension of `trl.DPOTrainer`.

TRL computes per-token log-probs with a fused LM head (`model(..., fused_lm_head=True).log_probs`, zero outside the
completion) and sums them per row. This trainer multiplies those per-token log-probs by s_t = w_t / N (or w_t when
`score_average=False`) as they leave the head, for the policy and the reference alike, so TRL's unmodified sums are
Dense DPO's scores and every TRL loss, reward and metric applies to them, with no extra memory. The multiplication
is a wrapper around the forward that TRL itself patches (instance attribute of the underlying transformers model),
which is what DDP, DeepSpeed and PEFT end up calling. It is active only inside `compute_loss`, for one batch.

Also here: per-token reference caching for text and image datasets (`precompute_ref_log_probs`), RLHF-V's SFT term
(`sft_weight`), and the `dense/*` metrics. See docs/trainer.md.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import textwrap
import weakref
from collections.abc import Callable
from typing import Any

import torch
from accelerate.utils import broadcast_object_list, is_peft_model, tqdm
from datasets import Dataset, IterableDataset, concatenate_datasets
from torch.utils.data import DataLoader
from trl import DPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import get_config_model_id, use_adapter

from . import tiled_head_dispatch
from .checkpoints import load_checkpoint_weights
from .collators import DENSE_BATCH_KEYS, promote_collator
from .config import DenseDPOConfig, validate_dense_args
from .metrics import SEGMENTS, dense_batch_stats
from .ref_cache import CACHE_FORMAT, REF_COLUMNS, RefLogpsCache, dataset_content_digest
from .weights import scan_span_columns, text_row_changed_flags


logger = logging.getLogger(__name__)


class _DenseBatch:
    """The scales of the batch being scored, and what the wrapped forwards saw (in call order)."""

    def __init__(self, scale: torch.Tensor):
        self.scale = scale
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []  # (raw per-token log-probs, scaled)

    def apply(self, output):
        log_probs = output.log_probs
        width = self.scale.size(1)
        # Prompt-learning PEFT prepends virtual tokens: the real positions are the last `width`
        raw = log_probs[:, -width:]
        scaled = raw * self.scale.to(raw.device)
        output.log_probs = scaled if log_probs.size(1) == width else torch.cat([log_probs[:, :-width], scaled], 1)
        self.calls.append((raw.detach(), scaled))
        return output


def _wrap_forward(module: torch.nn.Module, trainer_ref: Callable[[], DenseDPOTrainer | None]) -> None:
    """Make `module.forward(..., fused_lm_head=True)` return scaled log-probs while a batch is being scored.

    With `tiled_cpu_head`, every fused-head forward also runs inside `tiled_head_dispatch.scoring_positions`, so on
    CPU rlhfv's tiled head scores it (policy, reference and precompute alike).
    """
    inner = module.forward
    if getattr(inner, "_rlhfv_dense_forward", False):
        return

    @functools.wraps(inner)
    def forward(*args, **kwargs):
        trainer = trainer_ref()
        tiled = trainer is not None and trainer.args.tiled_cpu_head and kwargs.get("fused_lm_head")
        with (
            tiled_head_dispatch.scoring_positions(kwargs.get("labels"), kwargs.get("shift_labels"))
            if tiled
            else contextlib.nullcontext()
        ):
            output = inner(*args, **kwargs)
        state = None if trainer is None else trainer._dense_batch
        if state is None or not kwargs.get("fused_lm_head"):
            return output
        return state.apply(output)

    forward._rlhfv_dense_forward = True
    module.forward = forward


class DenseDPOTrainer(DPOTrainer):
    """Dense DPO (RLHF-V): DPO whose sequence scores weigh the tokens of corrected segments by `gamma`.

    Same signature and behaviour as [`trl.DPOTrainer`]; `args` must be a [`rlhfv.DenseDPOConfig`]. The dataset is
    TRL's conversational preference format plus `chosen_spans`/`rejected_spans` (docs/data_format.md), or any
    preference dataset with `segment_source="rlhfv_token_diff"`.
    """

    _tag_names = ["trl", "dpo", "rlhfv", "dense-dpo"]
    _name = "Dense DPO"
    _paper = {
        "title": "RLHF-V: Towards Trustworthy MLLMs via Behavior Alignment from Fine-grained Correctional Human "
        "Feedback",
        "id": "2312.00849",
        # docstyle-ignore
        "citation": textwrap.dedent("""\
            @inproceedings{yu2024rlhfv,
                title        = {{RLHF-V: Towards Trustworthy MLLMs via Behavior Alignment from Fine-grained Correctional Human Feedback}},
                author       = {Tianyu Yu and Yuan Yao and Haoye Zhang and Taiwen He and Yifeng Han and Ganqu Cui and Jinyi Hu and Zhiyuan Liu and Hai-Tao Zheng and Maosong Sun and Tat-Seng Chua},
                year         = 2024,
                booktitle    = {IEEE/CVF Conference on Computer Vision and Pattern Recognition, CVPR 2024},
            }"""),
    }

    def __init__(
        self,
        model,
        ref_model=None,
        args: DenseDPOConfig | None = None,
        data_collator=None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset=None,
        processing_class=None,
        compute_metrics=None,
        callbacks=None,
        optimizers=(None, None),
        quantization_config=None,
        peft_config=None,
    ):
        if args is None:
            model_name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = DenseDPOConfig(f"{model_name.split('/')[-1] or 'model'}-DenseDPO")
        elif not isinstance(args, DenseDPOConfig):
            raise TypeError(
                f"DenseDPOTrainer needs `args` to be a rlhfv.DenseDPOConfig, got {type(args).__name__}. Build it with "
                "DenseDPOConfig(...) (it accepts every DPOConfig field)."
            )
        validate_dense_args(args)
        if (
            ref_model is None
            and peft_config is None
            and not isinstance(model, str)
            and not is_peft_model(model)
            and not args.precompute_ref_log_probs
            and not get_config_model_id(model.config)
        ):
            # TRL would try to load a reference copy from the model's name or path, which an in-memory model lacks
            raise ValueError(
                "The model was built in memory (it has no name or path), so no reference copy can be loaded. Pass "
                "ref_model=copy.deepcopy(model), use peft_config (the reference is the model with adapters "
                "disabled), or set precompute_ref_log_probs=True."
            )
        self._dense_batch: _DenseBatch | None = None
        self._dense_warned: set[str] = set()
        self.ref_cache_hits = 0  # entries reused from the reference cache (visible for tests and logs)

        # Bad spans fail here, before any model work; image columns are not decoded
        if args.segment_source == "spans":
            datasets = {"train": train_dataset}
            if isinstance(eval_dataset, dict):
                datasets.update({f"eval[{k}]": v for k, v in eval_dataset.items()})
            elif eval_dataset is not None:
                datasets["eval"] = eval_dataset
            for name, dataset in datasets.items():
                if isinstance(dataset, Dataset):
                    stats = scan_span_columns(dataset, name)
                    if stats["pairs_without_changes"]:
                        logger.warning(
                            f"{stats['pairs_without_changes']} of {stats['pairs']} pairs of the {name} dataset have no "
                            "changed segment: they train as plain DPO (logged as dense/pairs_without_changes)."
                        )

        # TRL refuses `precompute_ref_log_probs` for image datasets before any hook (it can only cache summed
        # log-probs, computed upfront). Dense DPO caches per-token values computed through the vision collator, so
        # the flag is hidden from that one check and restored in `create_accelerator_and_postprocess`, which
        # `Trainer.__init__` calls before TRL reads the flag again (reference model, model hash, precompute).
        sample = next(iter(train_dataset)) if train_dataset is not None else {}
        self._restore_precompute = ("image" in sample or "images" in sample) and args.precompute_ref_log_probs
        if self._restore_precompute:
            args.precompute_ref_log_probs = False
        try:
            super().__init__(
                model=model,
                ref_model=ref_model,
                args=args,
                data_collator=data_collator,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                processing_class=processing_class,
                compute_metrics=compute_metrics,
                callbacks=callbacks,
                optimizers=optimizers,
                quantization_config=quantization_config,
                peft_config=peft_config,
            )
        finally:
            if self._restore_precompute:
                args.precompute_ref_log_probs = True
        self.data_collator = promote_collator(self.data_collator, args.segment_source)

        if args.tiled_cpu_head and not tiled_head_dispatch.install():
            args.tiled_cpu_head = False
        # Scale the fused head's output of the policy (the transformers model under PEFT) and of the reference
        trainer_ref = weakref.ref(self)
        _wrap_forward(self.model.get_base_model() if is_peft_model(self.model) else self.model, trainer_ref)
        if self.ref_model is not None:
            _wrap_forward(self.accelerator.unwrap_model(self.ref_model), trainer_ref)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        # transformers' own loader matches no key of LLaVA/Qwen2-VL checkpoints and silently keeps the initial
        # weights; load them with the renaming `from_pretrained` applies instead (see rlhfv/checkpoints.py)
        target = model if model is not None else self.model
        if self.is_fsdp_enabled or not load_checkpoint_weights(target, resume_from_checkpoint, self):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def create_accelerator_and_postprocess(self):
        super().create_accelerator_and_postprocess()
        if getattr(self, "_restore_precompute", False):
            self.args.precompute_ref_log_probs = True
            self.precompute_ref_logps = True

    # ------------------------------------------------------------------ data

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        rows_in = len(dataset) if isinstance(dataset, Dataset) else None
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if rows_in is not None and len(dataset) < rows_in:
            logger.warning(
                f"{rows_in - len(dataset)} of {rows_in} rows of the {dataset_name} dataset were dropped: their prompt "
                f"alone fills max_length={args.max_length}, leaving no completion token. Raise max_length to keep them."
            )
        column_names = dataset.column_names or list(next(iter(dataset)).keys())
        if args.segment_source == "spans" and "chosen_changed" not in column_names:
            map_kwargs = {}
            if isinstance(dataset, Dataset):
                map_kwargs = {"num_proc": args.dataset_num_proc, "desc": f"Marking changed tokens of {dataset_name}"}
            dataset = dataset.map(
                text_row_changed_flags,
                with_indices=True,
                fn_kwargs={"processing_class": processing_class},
                **map_kwargs,
            )
        return dataset

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self._is_vision_dataset:
            extra = ["id", "chosen_spans", "rejected_spans", *REF_COLUMNS]
        else:
            extra = ["id", "chosen_changed", "rejected_changed", *REF_COLUMNS]
        self._signature_columns = list(dict.fromkeys([*self._signature_columns, *extra]))

    # ------------------------------------------------------- reference cache

    def _ref_cache_key(self, dataset: Dataset, name: str) -> dict[str, Any]:
        from datasets.fingerprint import Hasher

        processor = self.processing_class
        tokenizer = getattr(processor, "tokenizer", processor)
        key = {
            "format": CACHE_FORMAT,
            "split": name,
            "data": dataset_content_digest(dataset),
            "reference_model": self._precompute_model_hash,
            "max_length": self.args.max_length,
            "truncation_mode": self.args.truncation_mode,
            "processor": Hasher.hash(processor),
            "chat_template": Hasher.hash(getattr(processor, "chat_template", None) or tokenizer.chat_template),
            "precision": "bf16" if self.args.bf16 else "fp16" if self.args.fp16 else "fp32",
        }
        # Hashes can differ by rank (e.g. ZeRO-3 shards): every rank uses rank 0's key, like TRL
        holder = [key]
        broadcast_object_list(holder, from_process=0)
        return holder[0]

    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        """Per-token reference log-probs of every row, from the cache when it matches, else computed and cached."""
        if isinstance(dataset, IterableDataset):
            raise ValueError(
                "`precompute_ref_log_probs=True` needs a map-style Dataset (it caches one entry per row), not an "
                "IterableDataset. Use a Dataset or set `precompute_ref_log_probs=False`."
            )
        self.data_collator = promote_collator(self.data_collator, self.args.segment_source)
        dataset = dataset.remove_columns([c for c in REF_COLUMNS if c in dataset.column_names])
        cache = RefLogpsCache(self.args.ref_cache_dir)
        key = self._ref_cache_key(dataset, name)
        table = cache.load(key, len(dataset))
        if table is not None:
            self.ref_cache_hits += 1
            logger.info(f"Reusing per-token reference log-probs of the {name} dataset from {cache.entry_path(key)}")
        else:
            chosen, rejected = self._compute_ref_token_logps(dataset, name, batch_size)
            if self.accelerator.is_main_process:
                path = cache.save(key, chosen, rejected)
                logger.info(f"Cached per-token reference log-probs of the {name} dataset in {path}")
            self.accelerator.wait_for_everyone()
            table = cache.load(key, len(dataset))
        return concatenate_datasets([dataset, table], axis=1)

    def _compute_ref_token_logps(self, dataset: Dataset, name: str, batch_size: int):
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            shuffle=False,
        )
        loader = self.accelerator.prepare(loader)
        # As in TRL: before `train`, DeepSpeed parameters are not placed yet, so run through an inference engine
        if self.ref_model is None and self.is_deepspeed_enabled:
            from trl.models import prepare_deepspeed

            if self._precompute_engine is None:
                self._precompute_engine = prepare_deepspeed(self.model, self.accelerator)
            model = self._precompute_engine
        else:
            model = self.ref_model or self.model
        chosen, rejected = [], []
        for batch in tqdm(
            loader,
            desc=f"Computing per-token reference log-probs for {name} dataset",
            disable=bool(os.environ.get("TQDM_DISABLE", "")),
        ):
            values, lengths = self._reference_token_logps(model, batch)
            values = self.accelerator.pad_across_processes(values, dim=1)
            chosen_values, rejected_values = values.chunk(2)
            chosen_lengths, rejected_lengths = lengths.chunk(2)
            gathered = self.accelerator.gather_for_metrics(
                (chosen_values, chosen_lengths, rejected_values, rejected_lengths)
            )
            for out, (vals, lens) in ((chosen, gathered[:2]), (rejected, gathered[2:])):
                out.extend(v[:n].tolist() for v, n in zip(vals.cpu(), lens.cpu().tolist()))
        return chosen, rejected

    def _reference_token_logps(self, model, batch: dict[str, torch.Tensor]):
        """Reference log-prob of each completion token (positions >= 1), left-aligned per row, and the counts."""
        model_kwargs = {
            k: v
            for k, v in batch.items()
            if k not in {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", *DENSE_BATCH_KEYS}
        }
        model_kwargs["use_cache"] = False
        completion_mask = batch["completion_mask"]
        labels = batch["input_ids"].masked_fill(completion_mask == 0, -100)
        adapter_context = contextlib.nullcontext()
        if self.ref_model is None and is_peft_model(self.model):
            unwrapped = self.accelerator.unwrap_model(self.model)
            adapter_context = use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
        with (
            torch.no_grad(),
            disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
            adapter_context,
            self.accelerator.autocast(),
        ):
            log_probs = model(**model_kwargs, labels=labels, fused_lm_head=True).log_probs
        shift_mask = completion_mask[:, 1:].bool()
        log_probs = log_probs[:, -shift_mask.size(1) :].float()
        lengths = shift_mask.sum(dim=1)
        values = torch.zeros(log_probs.size(0), max(int(lengths.max()), 1), device=log_probs.device)
        for r in range(log_probs.size(0)):
            values[r, : lengths[r]] = log_probs[r][shift_mask[r]]
        return values, lengths

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        # TRL precomputes reference log-probs for a dataset handed to `evaluate` only for text; do images too
        if self._is_vision_dataset and self.precompute_ref_logps and eval_dataset is not None:
            if not isinstance(eval_dataset, str):
                batch_size = self.args.precompute_ref_batch_size or self.args.per_device_eval_batch_size
                if isinstance(eval_dataset, dict):
                    eval_dataset = {
                        name: self._precompute_ref_logps(dataset, name, batch_size)
                        for name, dataset in eval_dataset.items()
                    }
                else:
                    eval_dataset = self._precompute_ref_logps(eval_dataset, "eval", batch_size)
        return super().evaluate(
            eval_dataset=eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix
        )

    # ------------------------------------------------------------------ loss

    def token_scales(self, completion_mask: torch.Tensor, changed_mask: torch.Tensor) -> torch.Tensor:
        """s_t for TRL's shifted per-token log-probs: w_t / N (or w_t), w_t = gamma on changed tokens, 1 else."""
        weights = completion_mask.float() * (1.0 + (self.args.gamma - 1.0) * changed_mask.float())
        weights = weights[:, 1:]
        if not self.args.score_average:
            return weights
        norm = weights.sum(dim=1, keepdim=True)
        # A row whose completion was truncated away scores 0, as in TRL
        return torch.where(norm > 0, weights / norm.clamp(min=torch.finfo(weights.dtype).tiny), 0.0)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        changed_mask = inputs.pop("changed_mask", None)
        changed_before = inputs.pop("changed_before_truncation", None)
        ref_token_logps = inputs.pop("ref_token_logps", None)
        if changed_mask is None:
            raise ValueError(
                "The batch has no `changed_mask`: DenseDPOTrainer needs rlhfv's dense collators (leave "
                "`data_collator=None`)."
            )
        scale = self.token_scales(inputs["completion_mask"], changed_mask)
        if self.precompute_ref_logps:
            if ref_token_logps is None:
                raise ValueError(
                    "precompute_ref_log_probs=True but the batch carries no cached reference log-probs; pass the "
                    "dataset to the trainer at construction or to `evaluate()`, which compute them."
                )
            ref_scores = (ref_token_logps[:, 1:] * scale).sum(dim=1)
            inputs["ref_chosen_logps"], inputs["ref_rejected_logps"] = ref_scores.chunk(2)

        state = _DenseBatch(scale)
        self._dense_batch = state
        try:
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            self._dense_batch = None
        loss, outputs = result if return_outputs else (result, None)

        expected_calls = 1 if self.precompute_ref_logps else 2
        if len(state.calls) != expected_calls:
            raise RuntimeError(
                f"The token weights were applied to {len(state.calls)} forward passes instead of {expected_calls}: the "
                "model's forward was replaced after the trainer was built (e.g. by a kernel patch), so "
                "the scores would silently be plain DPO. Apply such patches before building the trainer."
            )
        policy_logps, policy_scaled = state.calls[0]
        ref_logps = ref_token_logps[:, 1:] if self.precompute_ref_logps else state.calls[1][0]
        mode = "train" if self.model.training else "eval"
        if self.args.sft_weight:
            chosen_scores = policy_scaled.chunk(2)[0].sum(dim=1)
            sft_loss = -chosen_scores.mean()
            loss = loss + self.args.sft_weight * sft_loss
            self._metrics[mode]["dense/sft_loss"].append(
                self.accelerator.gather_for_metrics(sft_loss.detach()).mean().item()
            )
        self._log_dense_metrics(mode, policy_logps, ref_logps, scale, changed_mask, inputs, changed_before)
        return (loss, outputs) if return_outputs else loss

    def _log_dense_metrics(self, mode, policy_logps, ref_logps, scale, changed_mask, inputs, changed_before):
        completion_mask = inputs["completion_mask"][:, 1:]
        if changed_before is None:
            changed_before = changed_mask.sum(dim=1)
        stats = dense_batch_stats(
            policy_logps, ref_logps, scale, changed_mask[:, 1:], completion_mask, changed_before, self.beta
        )
        # One gather for all token sums and counts, one for the per-pair reward parts: a single sync per step
        sums = {
            "pairs_without_changes": stats["pairs_without_changes"],
            "pairs_changes_truncated": stats["pairs_changes_truncated"],
        }
        for key in (
            "changed/tokens",
            "unchanged/tokens",
            "completion/tokens",
            "changed/logp_sum",
            "unchanged/logp_sum",
        ):
            for side, value in zip(("chosen", "rejected"), stats[key].chunk(2)):
                sums[f"{key}/{side}"] = value.sum()
        gathered = self.accelerator.gather(torch.stack(list(sums.values())).unsqueeze(0)).sum(dim=0).tolist()
        sums = dict(zip(sums, gathered))
        # Per-pair reward parts, columns (changed, unchanged) x (chosen, rejected); means and margins in one sync
        pair_rewards = torch.stack(
            [part for segment in SEGMENTS for part in stats[f"{segment}/reward"].chunk(2)], dim=1
        )
        pair_rewards = self.accelerator.gather(pair_rewards)
        reward_means = torch.cat(
            [pair_rewards.mean(dim=0), (pair_rewards[:, 0::2] - pair_rewards[:, 1::2]).mean(dim=0)]
        )
        reward_means = dict(
            zip(
                [f"{segment}_{side}" for segment in SEGMENTS for side in ("chosen", "rejected")]
                + [f"{segment}_margin" for segment in SEGMENTS],
                reward_means.tolist(),
            )
        )

        metrics = self._metrics[mode]
        completion = sums["completion/tokens/chosen"] + sums["completion/tokens/rejected"]
        if completion > 0:
            changed = sums["changed/tokens/chosen"] + sums["changed/tokens/rejected"]
            metrics["dense/changed_share"].append(changed / completion)
        for side in ("chosen", "rejected"):
            if sums[f"completion/tokens/{side}"] > 0:
                share = sums[f"changed/tokens/{side}"] / sums[f"completion/tokens/{side}"]
                metrics[f"dense/changed_share_{side}"].append(share)
        for segment in SEGMENTS:
            for part in ("chosen", "rejected", "margin"):
                metrics[f"dense/rewards/{segment}_{part}"].append(reward_means[f"{segment}_{part}"])
            means = {}
            for side in ("chosen", "rejected"):
                if sums[f"{segment}/tokens/{side}"] > 0:
                    means[side] = sums[f"{segment}/logp_sum/{side}"] / sums[f"{segment}/tokens/{side}"]
                    metrics[f"dense/logps/{segment}_{side}"].append(means[side])
            if len(means) == 2:
                metrics[f"dense/logps/{segment}_margin"].append(means["chosen"] - means["rejected"])
        without, truncated = sums["pairs_without_changes"], sums["pairs_changes_truncated"]
        metrics["dense/pairs_without_changes"].append(without)
        metrics["dense/pairs_changes_truncated"].append(truncated)
        if without and "without" not in self._dense_warned:
            self._dense_warned.add("without")
            logger.warning(
                f"{int(without)} pair(s) in a batch have no changed token: they train as plain DPO. Counted in "
                "dense/pairs_without_changes (this warning is shown once)."
            )
        if truncated and "truncated" not in self._dense_warned:
            self._dense_warned.add("truncated")
            logger.warning(
                f"max_length={self.args.max_length} cut every changed token of {int(truncated)} pair(s) in a batch: "
                "they train as plain DPO on what is left. Raise max_length to keep the corrections; counted in "
                "dense/pairs_changes_truncated (this warning is shown once)."
            )
