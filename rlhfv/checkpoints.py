"""Resuming from a checkpoint with the model's own parameter names."""

from __future__ import annotations

import logging
import os


logger = logging.getLogger(__name__)


def load_checkpoint_weights(model, checkpoint: str, trainer) -> bool:
    """Load a checkpoint's `model.safetensors` into `model`, renaming its keys to the model's own; False if not done.

    `save_pretrained` writes weights under the checkpoint format of the model's family (LLaVA, Qwen2-VL, ... keep
    their original Hub key names), while `Trainer._load_from_checkpoint` loads them with a plain, non-strict
    `load_state_dict`: for those models no key matches and the resumed run silently restarts from the initial
    weights. The renaming here is the one `from_pretrained` applies.
    """
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
    result = model.load_state_dict(state_dict, strict=False)
    trainer._issue_warnings_after_load(result)
    logger.info("Loaded the model weights of %s", checkpoint)
    return True
