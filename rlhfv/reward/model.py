"""A vision-language reward model: a VLM's decoder (no LM head) and a scalar head read at the last token.

`trl.RewardTrainer` trains `AutoModelForSequenceClassification` models, and transformers has no sequence
classification class for image-text-to-text models (LLaVA, Qwen2-VL, ...). `VisionRewardModel` is that class: it
takes the base model of any `AutoModelForImageTextToText` (its `.model`, which returns hidden states), adds a linear
`score` head, and returns a `SequenceClassifierOutput` whose `logits` are the reward of each row, shape `(batch, 1)`,
read at each row's last attended token (left or right padding). It has `config.num_labels == 1`, so it is exactly
what `RewardTrainer.compute_loss` expects.

    model = VisionRewardModel.from_vlm(AutoModelForImageTextToText.from_pretrained(name))
    model.save_pretrained(path); model = load_reward_model(path)
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


# Written into the saved config so that `load_reward_model` can tell a reward model from a plain VLM folder
REWARD_MODEL_MARKER = "rlhfv_vision_reward_model"


class VisionRewardModel(PreTrainedModel):
    """Scalar reward head on the base model of a vision-language model (see the module docstring)."""

    config_class = PretrainedConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(self, config: PretrainedConfig, backbone: nn.Module | None = None):
        super().__init__(config)
        if backbone is None:
            from transformers import AutoModel

            backbone = AutoModel.from_config(config)
        self.model = backbone
        hidden_size = config.get_text_config().hidden_size
        self.score = nn.Linear(hidden_size, 1, bias=False)
        # A small head: the first rewards are near 0 and the loss starts near ln 2
        nn.init.normal_(self.score.weight, std=1.0 / hidden_size)
        self.config.num_labels = 1
        setattr(self.config, REWARD_MODEL_MARKER, True)
        self.post_init()

    def _init_weights(self, module):
        # Weights come from the VLM (or the saved reward model); nothing is re-initialised here
        pass

    @classmethod
    def from_vlm(cls, vlm: PreTrainedModel) -> VisionRewardModel:
        """Wrap an image-text-to-text model: keep its base model, drop its LM head."""
        backbone = getattr(vlm, "model", None)
        if backbone is None:
            raise ValueError(
                f"{type(vlm).__name__} has no `.model` (base model) attribute: pass an image-text-to-text model "
                "loaded with `AutoModelForImageTextToText`"
            )
        model = cls(vlm.config, backbone=backbone)
        return model.to(next(backbone.parameters()).dtype)

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def forward(
        self, input_ids=None, attention_mask=None, margin=None, use_cache=None, **kwargs
    ) -> SequenceClassifierOutput:
        """Reward per row, `(batch, 1)`. Extra keyword arguments (pixel_values, image_grid_thw, ...) go to the VLM.

        `margin` is accepted and ignored: `RewardTrainer` passes its batch to the model as is, margin included.
        """
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
        hidden = outputs.last_hidden_state  # (batch, seq, hidden)
        if attention_mask is None:
            last = torch.full((hidden.size(0),), hidden.size(1) - 1, device=hidden.device)
        else:
            # The last attended position, whatever the padding side
            positions = torch.arange(attention_mask.size(1), device=attention_mask.device)
            last = (attention_mask.bool() * positions).argmax(dim=1)
        pooled = hidden[torch.arange(hidden.size(0), device=hidden.device), last]
        rewards = self.score(pooled.to(self.score.weight.dtype))
        return SequenceClassifierOutput(logits=rewards)


def is_reward_model_dir(path: str) -> bool:
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        return False
    with open(config_path) as handle:
        return bool(json.load(handle).get(REWARD_MODEL_MARKER))


def load_reward_model(path: str, dtype: torch.dtype | str | None = None, **kwargs) -> VisionRewardModel:
    """Load a `VisionRewardModel` saved with `save_pretrained` (sharded or not); `kwargs` go to `from_pretrained`."""
    from transformers import AutoConfig

    if not is_reward_model_dir(path):
        raise ValueError(
            f"{path} is not a reward model saved by `rlhfv reward` (no config.json with {REWARD_MODEL_MARKER}: true)"
        )
    # The saved config is the VLM's (e.g. LlavaConfig); from_pretrained maps the checkpoint's keys back from it
    config = AutoConfig.from_pretrained(path)
    if dtype is not None:
        kwargs["dtype"] = dtype
    return VisionRewardModel.from_pretrained(path, config=config, **kwargs).eval()
