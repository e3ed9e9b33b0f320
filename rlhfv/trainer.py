"""`DenseDPOTrainer`: Dense DPO (RLHF-V) as a thin extension of `trl.DPOTrainer`.

TRL computes per-token log-probs with a fused LM head (`model(..., fused_lm_head=True).log_probs`, zero outside the
completion) and sums them per row. This trainer puts the token scales s_t = w_t / N (or w_t when `score_average` is
off) into the batch; TRL hands them to the policy and reference forwards with the rest of the batch, where they
multiply the per-token log-probs as they leave the head (`rlhfv._compat.wrap_fused_head_forward`). TRL's unmodified
sums are then Dense DPO's scores, every TRL loss, reward and metric applies to them, and no extra memory is used.

Beside it: changed-token flags (`changed_tokens`, `collators`), per-token reference precompute (`ref_precompute`),
the `dense/*` metrics (`metrics`) and the model card (`model_card`). See docs/trainer.md.
"""

from __future__ import annotations

import logging
import math
import textwrap

import torch
from accelerate.utils import is_peft_model
from datasets import Dataset, IterableDataset
from trl import DPOTrainer

from . import _compat, ref_precompute, tiled_head_dispatch
from .changed_tokens import text_row_changed_flags
from .collators import promote_collator
from .config import DenseDPOConfig, validate_dense_args
from .dataset_checks import check_span_columns, drop_pairs_identical_after_truncation
from .metrics import log_dense_metrics
from .model_card import RunRecord, write_model_card
from .ref_cache import REF_COLUMNS


logger = logging.getLogger(__name__)


class TrainingDivergedError(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; the step that produced it was not applied."""


class DenseDPOTrainer(DPOTrainer):
    """Dense DPO (RLHF-V): DPO whose sequence scores weigh the tokens of corrected segments by `gamma`.

    Same signature and behaviour as [`trl.DPOTrainer`]; `args` must be a [`rlhfv.DenseDPOConfig`]. The dataset is
    TRL's conversational preference format plus `chosen_spans`/`rejected_spans` (docs/data_format.md), or any
    preference dataset with `segment_source="rlhfv_token_diff"`. Every card it writes is the Dense DPO card
    (`rlhfv.model_card`); set `trainer.run_record` to add the command and recipe.
    """

    _tag_names = ["trl", "dpo", "rlhfv", "dense-dpo", "rlhf-v"]
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
            model_name = model if isinstance(model, str) else _compat.get_config_model_id(model.config)
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
            and not _compat.get_config_model_id(model.config)
        ):
            # TRL would try to load a reference copy from the model's name or path, which an in-memory model lacks
            raise ValueError(
                "The model was built in memory (it has no name or path), so no reference copy can be loaded. Pass "
                "ref_model=copy.deepcopy(model), use peft_config (the reference is the model with adapters "
                "disabled), or set precompute_ref_log_probs=True."
            )
        self._head_calls = _compat.FusedHeadCalls()
        self._dense_forwards_installed = False
        self._dense_warned: set[str] = set()
        # What the model card says beyond the trainer's own state (set by `rlhfv train`; optional for library users)
        self.run_record: RunRecord | None = None
        if args.segment_source == "spans":
            check_span_columns(train_dataset, eval_dataset)

        with _compat.precompute_flag_hidden_from_vision_check(args, train_dataset) as hidden:
            self._restore_precompute = hidden
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
        self.data_collator = promote_collator(self.data_collator, args.segment_source)
        self._install_dense_forwards()

    def _install_dense_forwards(self) -> None:
        """Wrap the policy's and the reference's fused-head forwards (once; TRL adds the heads in its `__init__`)."""
        if self._dense_forwards_installed:
            return
        self._dense_forwards_installed = True
        if self.args.tiled_cpu_head and not tiled_head_dispatch.install():
            self.args.tiled_cpu_head = False
        scoring = None
        if self.args.tiled_cpu_head:

            def scoring(kwargs):
                return tiled_head_dispatch.scoring_positions(kwargs.get("labels"), kwargs.get("shift_labels"))

        if is_peft_model(self.model):
            peft_model = self.model

            def policy_role():
                # Without a separate reference, TRL scores the reference with the adapters off (or its "ref" adapter)
                return _compat.REFERENCE if _compat.peft_reference_active(peft_model) else _compat.POLICY

            _compat.wrap_fused_head_forward(self.model.get_base_model(), policy_role, self._head_calls, scoring)
        else:
            _compat.wrap_fused_head_forward(self.model, lambda: _compat.POLICY, self._head_calls, scoring)
        if self.ref_model is not None:
            reference = self.accelerator.unwrap_model(self.ref_model)
            _compat.wrap_fused_head_forward(reference, lambda: _compat.REFERENCE, self._head_calls, scoring)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        target = model if model is not None else self.model
        if self.is_fsdp_enabled or not _compat.load_checkpoint_with_model_keys(target, resume_from_checkpoint, self):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def create_accelerator_and_postprocess(self):
        super().create_accelerator_and_postprocess()
        # accelerate would train FSDP or DeepSpeed on CPU processes as unsharded DDP (rlhfv._compat, entries 14, 18)
        if _compat.enable_fsdp2_on_cpu(self.accelerator, self.args.fsdp_plugin_args):
            self.is_fsdp_enabled = True
        elif _compat.enable_deepspeed_on_cpu(self.accelerator, self.args):
            self.is_deepspeed_enabled = True
        if getattr(self, "_restore_precompute", False):
            self.args.precompute_ref_log_probs = True
            self.precompute_ref_logps = True

    # ------------------------------------------------------------- divergence

    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        if not torch.isfinite(loss).all():
            raise TrainingDivergedError(self._divergence_message("loss", loss.detach().float().cpu().tolist()))
        return loss

    def _get_grad_norm(self, model, grad_norm=None):
        # The step's gradient norm, before the optimizer applies it (rlhfv._compat, entry 7)
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        if grad_norm is not None and not math.isfinite(float(grad_norm)):
            raise TrainingDivergedError(self._divergence_message("gradient norm", float(grad_norm)))
        return grad_norm

    def _divergence_message(self, what: str, value) -> str:
        return (
            f"training diverged at step {self.state.global_step + 1}: the {what} is {value}. That step was not "
            "applied and no final model is saved (checkpoints written before it are kept). Lower `learning_rate` "
            f"(now {self.args.learning_rate:g}), keep `max_grad_norm` > 0 (now {self.args.max_grad_norm:g}) to "
            "clip large gradients, or check the data of this step's batch."
        )

    def save_model(self, output_dir=None, _internal_call=False):
        # A checkpoint keeps its shards; the output folder needs the whole model (rlhfv._compat, entry 15). Written
        # before transformers' own save_model, which then pushes it when `push_to_hub` is set
        if not _internal_call:
            _compat.save_full_model_of_sharded_run(self, output_dir)
        super().save_model(output_dir, _internal_call)

    def _save_optimizer_and_scheduler(self, output_dir):
        # Sharded optimizer states must cover every trainable parameter to be loadable (rlhfv._compat, entry 16)
        if self.is_fsdp_enabled:
            _compat.materialize_missing_optimizer_state(self.optimizer)
        super()._save_optimizer_and_scheduler(output_dir)

    def create_model_card(self, model_name=None, dataset_name=None, tags=None, **kwargs):
        """TRL's hook for every card it writes (final model, checkpoints, Hub pushes): the Dense DPO card."""
        if self.is_world_process_zero():
            write_model_card(self, model_name=model_name, dataset_name=dataset_name, tags=tags, **kwargs)

    # ------------------------------------------------------------------ data

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        rows_in = len(dataset) if isinstance(dataset, Dataset) else None
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if rows_in is not None and len(dataset) < rows_in:
            logger.warning(
                f"{rows_in - len(dataset)} of {rows_in} rows of the {dataset_name} dataset were dropped: their prompt "
                f"alone fills max_length={args.max_length}, leaving no completion token. Raise max_length to keep them."
            )
        if isinstance(dataset, Dataset) and args.max_length is not None:
            dataset = drop_pairs_identical_after_truncation(dataset, args, dataset_name)
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
        if _compat.is_vision_dataset(self):
            extra = ["id", "chosen_spans", "rejected_spans", *REF_COLUMNS]
        else:
            extra = ["id", "chosen_changed", "rejected_changed", *REF_COLUMNS]
        _compat.keep_signature_columns(self, extra)

    # ------------------------------------------------------- reference cache

    def _precompute_ref_logps(self, dataset: Dataset, name: str, batch_size: int) -> Dataset:
        """Per-token reference log-probs of every row (TRL calls this for train and eval; see `ref_precompute`)."""
        self.data_collator = promote_collator(self.data_collator, self.args.segment_source)
        self._install_dense_forwards()
        return ref_precompute.add_reference_token_logps(self, dataset, name, batch_size)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        # TRL precomputes reference log-probs for a dataset handed to `evaluate` only for text; do images too
        if _compat.is_vision_dataset(self) and self.precompute_ref_logps and eval_dataset is not None:
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
        # TRL passes this key to the policy and reference forwards, whose wrappers scale the head's log-probs by it
        inputs[_compat.DENSE_SCALE_KEY] = scale

        with self._head_calls.recording() as calls:
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, outputs = result if return_outputs else (result, None)

        policy_calls, reference_calls = calls.of(_compat.POLICY), calls.of(_compat.REFERENCE)
        expected_reference = 0 if self.precompute_ref_logps else 1
        if len(policy_calls) != 1 or len(reference_calls) != expected_reference:
            raise RuntimeError(
                f"The token weights were applied to {len(policy_calls)} policy and {len(reference_calls)} reference "
                f"forward passes instead of 1 and {expected_reference}: the model's forward was replaced after the "
                "trainer was built (e.g. by a kernel patch), so the scores would silently be plain DPO. Apply such "
                "patches before building the trainer."
            )
        policy_logps, policy_scaled = policy_calls[0]
        ref_logps = ref_token_logps[:, 1:] if self.precompute_ref_logps else reference_calls[0][0]
        mode = "train" if self.model.training else "eval"
        if self.args.sft_weight:
            chosen_scores = policy_scaled.chunk(2)[0].sum(dim=1)
            sft_loss = -chosen_scores.mean()
            loss = loss + self.args.sft_weight * sft_loss
            _compat.trainer_metrics(self, mode)["dense/sft_loss"].append(
                self.accelerator.gather_for_metrics(sft_loss.detach()).mean().item()
            )
        log_dense_metrics(
            self, mode, policy_logps, ref_logps, scale, changed_mask, inputs["completion_mask"], changed_before
        )
        return (loss, outputs) if return_outputs else loss
