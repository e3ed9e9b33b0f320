"""TRL / transformers / datasets trainer state that rlhfv reads, extends or works around (`rlhfv._compat` entries 3,
4, 7, 8, 9 and 11).

Written for: trl 1.16, transformers 5.23, datasets 5.2. Each entry says why it exists and when it can go.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable


logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# 3. `precompute_ref_log_probs` with image datasets.
#    Why: trl.DPOTrainer.__init__ refuses the flag for image datasets (it caches summed log-probs computed up front);
#    Dense DPO caches per-token values through the vision collator. The flag is hidden from that one check and restored
#    in `create_accelerator_and_postprocess`, which `Trainer.__init__` calls before TRL reads the flag again (reference
#    model, model hash, precompute). Remove when TRL supports reference precompute for vision datasets.


@contextlib.contextmanager
def precompute_flag_hidden_from_vision_check(args, train_dataset):
    """Inside: `args.precompute_ref_log_probs` reads False for an image dataset. Yields whether it was hidden."""
    sample = next(iter(train_dataset)) if train_dataset is not None else {}
    hide = bool(args.precompute_ref_log_probs) and ("image" in sample or "images" in sample)
    if hide:
        args.precompute_ref_log_probs = False
    try:
        yield hide
    finally:
        if hide:
            args.precompute_ref_log_probs = True


# ---------------------------------------------------------------------------------------------------------------
# 4. Resuming LLaVA / Qwen2-VL checkpoints.
#    Why: `save_pretrained` writes weights under the checkpoint key names of the model's family, while
#    `Trainer._load_from_checkpoint` (transformers 5.23) loads them with a plain non-strict `load_state_dict`: for those
#    models no key matches and a resumed run silently restarts from the initial weights. The renaming here is the one
#    `from_pretrained` applies (private `transformers.conversion_mapping` / `core_model_loading`). Remove when
#    transformers' resume applies the conversion mapping.


def load_checkpoint_with_model_keys(model, checkpoint: str, trainer) -> bool:
    """Load a checkpoint's `model.safetensors` into `model` with keys renamed to the model's own; False if not done."""
    from accelerate.utils import is_peft_model
    from safetensors.torch import load_file
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key
    from transformers.utils import SAFE_WEIGHTS_NAME

    path = os.path.join(checkpoint, SAFE_WEIGHTS_NAME)
    if is_peft_model(model) or not os.path.isfile(path):
        return False  # adapters and sharded checkpoints keep their own names: transformers loads them as they are
    transforms = get_model_conversion_mapping(model)
    if any(isinstance(transform, WeightConverter) for transform in transforms):
        return False  # many-to-one conversions (fused weights) need `from_pretrained`'s full machinery
    renamings = [transform for transform in transforms if isinstance(transform, WeightRenaming)]
    own = model.state_dict()
    state_dict = {}
    for key, tensor in load_file(path, device="cpu").items():
        name = key if key in own else rename_source_key(key, renamings, [], model.base_model_prefix, own)[0]
        state_dict[name] = tensor
    result = model.load_state_dict(state_dict, strict=True)
    trainer._issue_warnings_after_load(result)
    logger.info("Loaded the model weights of %s", checkpoint)
    return True


# ---------------------------------------------------------------------------------------------------------------
# 7. Stopping at the first non-finite gradient, before the optimizer applies it.
#    Why: transformers 5.23 computes each step's gradient norm in the private `Trainer._get_grad_norm`, between the
#    backward and `optimizer.step()`, and otherwise trains on: NaN losses are logged as the running average
#    (`logging_nan_inf_filter`) and NaN weights are saved as the final model. `DenseDPOTrainer._get_grad_norm` checks
#    the (all-reduced, so rank-consistent) norm there. Remove when transformers offers a public pre-step hook with the
#    gradient norm.


# ---------------------------------------------------------------------------------------------------------------
# 8. TRL trainer state that rlhfv reads or extends (trl 1.16).
#    Why: DPOTrainer keeps its logged metrics in `_metrics[mode][name]` (lists averaged at each log), whether the
#    dataset has images in `_is_vision_dataset`, the columns its collator keeps in transformers'
#    `Trainer._signature_columns`, and its reference precompute's model hash and DeepSpeed engine in
#    `_precompute_model_hash` / `_precompute_engine`. Dense DPO logs its own metrics beside TRL's, keeps its extra
#    columns, and keys its per-token reference cache with TRL's hash. Remove when TRL exposes a public metrics logger,
#    the vision flag, a column hook, and per-token reference precompute.


def trainer_metrics(trainer, mode: str) -> dict:
    """TRL's metric lists of `mode` ("train" / "eval"): append a value to log its mean at the next log step."""
    return trainer._metrics[mode]


def is_vision_dataset(trainer) -> bool:
    return bool(trainer._is_vision_dataset)


def keep_signature_columns(trainer, extra: list[str]) -> None:
    """Add `extra` to the columns the trainer keeps for its collator (after `_set_signature_columns_if_needed`)."""
    trainer._signature_columns = list(dict.fromkeys([*(trainer._signature_columns or []), *extra]))


def set_signature_columns_if_unset(trainer, columns: list[str]) -> None:
    if trainer._signature_columns is None:
        trainer._signature_columns = list(columns)


def reference_model_hash(trainer) -> str:
    """TRL's hash of the reference model's weights and settings (set in DPOTrainer.__init__ for precompute)."""
    return trainer._precompute_model_hash


def deepspeed_precompute_engine(trainer, build: Callable[[], object]):
    """TRL's cached DeepSpeed inference engine for reference precompute, built with `build()` on first use."""
    if trainer._precompute_engine is None:
        trainer._precompute_engine = build()
    return trainer._precompute_engine


# ---------------------------------------------------------------------------------------------------------------
# 9. TRL's model-card fields of a trainer class (trl 1.16).
#    Why: TRL's trainers describe themselves for `create_model_card` through the class attributes `_tag_names`,
#    `_name` and `_paper` (dict with title, id, citation) and flag VLMs with `_is_vlm`; rlhfv's trainers set the first
#    three (TRAINER_OVERRIDES) and rlhfv's model card reads them. Remove when TRL makes them public.


def trainer_card_fields(trainer) -> dict:
    """{tags, name, paper (title, id, citation), is_vlm} as TRL's trainers declare them."""
    return {
        "tags": list(getattr(trainer, "_tag_names", []) or []),
        "name": trainer._name,
        "paper": trainer._paper,
        "is_vlm": bool(getattr(trainer, "_is_vlm", False)),
    }


# ---------------------------------------------------------------------------------------------------------------
# 11. `datasets.Dataset._fingerprint` (datasets 5.2).
#    Why: the hash `datasets` keeps of a dataset's content and transforms; rlhfv names the cache of a converted Hub
#    dataset with it, so that a new revision converts again. Remove when `datasets` exposes it publicly.


def dataset_fingerprint(dataset) -> str:
    return dataset._fingerprint
