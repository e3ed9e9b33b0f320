"""The tables of `rlhfv._compat`: the `trl.trainer` internals loaded on first use (entry 10), the private trainer
members rlhfv's trainers override with the library signature each was written for (entry 12), and every private
library name rlhfv uses with its entry (LIBRARY_PRIVATE_NAMES). tests/test_trl_contract.py reads all three.
"""

from __future__ import annotations


# ---------------------------------------------------------------------------------------------------------------
# 10. Internals of `trl.trainer.*` (trl 1.16) that rlhfv builds on.
#    Why: TRL exports neither its DPO collators nor these helpers at the top level: `DataCollatorForPreference` and
#    `DataCollatorForVisionPreference` (trl.trainer.dpo_trainer; rlhfv's collators extend them), `get_config_model_id`
#    (the base model's id for the model card), `maybe_gather_lm_head_ctx` (gathers a ZeRO-3 partitioned LM head) and
#    the private `_CHUNKED_LOGPROB_CHUNK_SIZE` (the tile size TRL's Triton head uses; the tiled head passes the same).
#    They are loaded on first use (importing trl.trainer takes seconds). Remove each when TRL exports it.

TRL_TRAINER_INTERNALS = {
    "DataCollatorForPreference": "trl.trainer.dpo_trainer",
    "DataCollatorForVisionPreference": "trl.trainer.dpo_trainer",
    "get_config_model_id": "trl.trainer.utils",
    "maybe_gather_lm_head_ctx": "trl.trainer.utils",
}
# `rlhfv._compat.__getattr__` loads each of these on first use.


def trl_chunk_size() -> int:
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    return _CHUNKED_LOGPROB_CHUNK_SIZE


# ---------------------------------------------------------------------------------------------------------------
# 12. Private methods and class attributes of TRL / transformers trainers that rlhfv's trainers override.
#    Why: each is the only hook at that point (see the override's comment in its trainer). The signature TRL or
#    transformers has today is pinned by tests/test_trl_contract.py, so an upgrade that changes one fails there.
#    Remove an entry when its override goes. Keys: "module:Class.name"; values: the library class it overrides and
#    the expected signature (None for a class attribute).

TRAINER_OVERRIDES = {
    "rlhfv.trainer:DenseDPOTrainer._tag_names": ("trl.DPOTrainer", None),
    "rlhfv.trainer:DenseDPOTrainer._name": ("trl.DPOTrainer", None),
    "rlhfv.trainer:DenseDPOTrainer._paper": ("trl.DPOTrainer", None),
    "rlhfv.trainer:DenseDPOTrainer._load_from_checkpoint": (
        "trl.DPOTrainer",
        "(self, resume_from_checkpoint: str, model: torch.nn.modules.module.Module | None = None) -> None",
    ),
    "rlhfv.trainer:DenseDPOTrainer._get_grad_norm": ("trl.DPOTrainer", "(self, model, grad_norm=None)"),
    "rlhfv.trainer:DenseDPOTrainer._prepare_dataset": (
        "trl.DPOTrainer",
        "(self, dataset: datasets.arrow_dataset.Dataset | datasets.iterable_dataset.IterableDataset, "
        "processing_class: transformers.tokenization_utils_base.PreTrainedTokenizerBase | "
        "transformers.processing_utils.ProcessorMixin, args: trl.trainer.dpo_config.DPOConfig, dataset_name: str) "
        "-> datasets.arrow_dataset.Dataset | datasets.iterable_dataset.IterableDataset",
    ),
    "rlhfv.trainer:DenseDPOTrainer._set_signature_columns_if_needed": ("trl.DPOTrainer", "(self)"),
    "rlhfv.trainer:DenseDPOTrainer._precompute_ref_logps": (
        "trl.DPOTrainer",
        "(self, dataset: datasets.arrow_dataset.Dataset, name: str, batch_size: int) -> datasets.arrow_dataset.Dataset",
    ),
    # entry 16: the sharded optimizer state of parameters that never get a gradient, created before each save
    "rlhfv.trainer:DenseDPOTrainer._save_optimizer_and_scheduler": (
        "trl.DPOTrainer",
        "(self, output_dir: str) -> None",
    ),
    "rlhfv.reward.trainer:VisionRewardTrainer._tag_names": ("trl.RewardTrainer", None),
    # transformers' hooks of a custom PreTrainedModel: the attention kernels it supports and its weight init
    "rlhfv.reward.model:VisionRewardModel._supports_sdpa": ("transformers.PreTrainedModel", None),
    "rlhfv.reward.model:VisionRewardModel._supports_flash_attn": ("transformers.PreTrainedModel", None),
    "rlhfv.reward.model:VisionRewardModel._init_weights": ("transformers.PreTrainedModel", "(self, module)"),
    "rlhfv.reward.trainer:VisionRewardTrainer._prepare_dataset": (
        "trl.RewardTrainer",
        "(self, dataset: datasets.arrow_dataset.Dataset | datasets.iterable_dataset.IterableDataset, "
        "processing_class: transformers.tokenization_utils_base.PreTrainedTokenizerBase, "
        "args: trl.trainer.reward_config.RewardConfig, dataset_name: str) "
        "-> datasets.arrow_dataset.Dataset | datasets.iterable_dataset.IterableDataset",
    ),
    "rlhfv.reward.trainer:VisionRewardTrainer._set_signature_columns_if_needed": ("trl.RewardTrainer", "(self)"),
    "rlhfv.reward.trainer:VisionRewardTrainer._save": (
        "trl.RewardTrainer",
        "(self, output_dir: str | None = None, state_dict: dict | None = None) -> None",
    ),
}

# Every private name of a library that rlhfv uses, with its entry (in the module of `rlhfv._compat` that holds it).
# Outside the package a listed name may appear only as an override in TRAINER_OVERRIDES (its definition, and its `super()` call); tests/test_trl_contract.py
# scans rlhfv and data_tools for any other use, and for private names not listed here.
LIBRARY_PRIVATE_NAMES = {
    "_adapters_disabled": 1,
    "_rlhfv_wrapped": 1,  # rlhfv's own marker on a wrapped forward
    "_use_triton": 2,
    "_ChunkedLogProbFunction": 2,
    "_issue_warnings_after_load": 4,
    "_load_from_checkpoint": 4,
    "_apply_liger_kernel_to_instance": 6,
    "_get_grad_norm": 7,
    "_metrics": 8,
    "_is_vision_dataset": 8,
    "_signature_columns": 8,
    "_set_signature_columns_if_needed": 8,
    "_prepare_dataset": 8,
    "_precompute_ref_logps": 8,
    "_precompute_model_hash": 8,
    "_precompute_engine": 8,
    "_tag_names": 9,
    "_name": 9,
    "_paper": 9,
    "_is_vlm": 9,
    "_CHUNKED_LOGPROB_CHUNK_SIZE": 10,
    "_fingerprint": 11,
    "_save": 12,
    "_supports_sdpa": 12,
    "_supports_flash_attn": 12,
    "_init_weights": 12,
    "_ddp_params_and_buffers_to_ignore": 13,
    "_shared_state": 14,
    "_save_optimizer_and_scheduler": 16,
}
