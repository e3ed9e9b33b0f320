"""Tiny models, tokenizers and processors built in-process from configs: no Hub access needed.

They serve the demo recipe, the tests and the benchmarks. The tokenizer is a byte-level BPE trained on a few
sentences, so it can encode any text; the chat template is ChatML-like and renders image parts as `<image>`.

    tokenizer = build_tokenizer()
    model = build_text_model(tokenizer)                  # Llama, ~100k parameters
    model, processor = build_llava(tokenizer)            # CLIP tower + Llama
    model, processor = build_qwen2_vl(tokenizer)         # Qwen2-VL, no video processor (needs no torchvision)
"""

from __future__ import annotations

from collections.abc import Iterable


IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", IMAGE_TOKEN]
# Qwen2-VL's processor needs these in the vocabulary: it expands <|image_pad|> between the vision markers
QWEN_SPECIAL_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

# ChatML-like. Image parts render as the image token; string content renders as is. The assistant turn ends with
# <|im_end|> so that the answer's template tokens are part of the completion, as in real chat models.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ IMAGE }}{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

DEFAULT_CORPUS = [
    "The image shows a red circle next to a blue square on a white background.",
    "There is a green triangle above a yellow star, and a small purple heart in the corner.",
    "Describe the image in detail. What objects are there and what colour are they?",
    "A cat sits on a wooden table beside a cup of coffee and a laptop.",
    "Two people ride bicycles along a street with cars, a bus and a traffic light.",
    "The answer is yes. The answer is no. Please answer yes or no.",
    "A dog runs across the grass; a frisbee flies over its head!",
]


def build_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 512, image_token: str = IMAGE_TOKEN):
    """A byte-level BPE tokenizer trained on `corpus`, wrapped in `PreTrainedTokenizerFast`, with a chat template.

    Byte-level means every string is encodable, so answers outside the corpus still tokenize (in more pieces).
    Offsets are returned on request (`return_offsets_mapping=True`), which the trainer relies on.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = SPECIAL_TOKENS if image_token == IMAGE_TOKEN else [*SPECIAL_TOKENS, image_token]
    specials = specials + [t for t in QWEN_SPECIAL_TOKENS if t not in specials]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(corpus or DEFAULT_CORPUS), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token=None,
        extra_special_tokens={"image_token": image_token},
    )
    tokenizer.chat_template = CHAT_TEMPLATE.replace("IMAGE", repr(image_token))
    tokenizer.padding_side = "left"
    return tokenizer


def _llama_text_config(
    tokenizer,
    hidden_size: int = 64,
    num_layers: int = 2,
    vocab_size: int | None = None,
    intermediate_size: int | None = None,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    max_positions: int = 1024,
    tie_word_embeddings: bool = False,
):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=tie_word_embeddings,
    )


def build_text_model(tokenizer, hidden_size: int = 64, num_layers: int = 2, seed: int = 0, **text_shape):
    """A tiny Llama causal LM sized to `tokenizer` (`text_shape`: vocab_size, intermediate_size, num_heads, ...)."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(_llama_text_config(tokenizer, hidden_size, num_layers, **text_shape))


def build_llava(
    tokenizer=None,
    hidden_size: int = 64,
    num_layers: int = 2,
    image_size: int = 32,
    seed: int = 0,
    patch_size: int = 8,
    vision_hidden_size: int = 32,
    vision_layers: int = 2,
    vision_heads: int = 2,
    vision_intermediate_size: int | None = None,
    **text_shape,
):
    """A tiny LLaVA (CLIP vision tower + Llama) and its processor. Returns `(model, processor)`.

    The defaults give a 2-layer tower and a 2-layer Llama of hidden size 64 (~140k parameters); the benchmarks pass
    larger shapes (`text_shape`: vocab_size, intermediate_size, num_heads, ... of the Llama).
    """
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = tokenizer or build_tokenizer()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token=tokenizer.image_token,
        chat_template=tokenizer.chat_template,
    )
    vision_config = CLIPVisionConfig(
        hidden_size=vision_hidden_size,
        intermediate_size=vision_intermediate_size or vision_hidden_size * 2,
        num_hidden_layers=vision_layers,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=vision_hidden_size,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=_llama_text_config(tokenizer, hidden_size, num_layers, **text_shape),
        image_token_id=tokenizer.convert_tokens_to_ids(tokenizer.image_token),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=(image_size // patch_size) ** 2,
    )
    torch.manual_seed(seed)
    return LlavaForConditionalGeneration(config), processor


def build_qwen2_vl(tokenizer=None, hidden_size: int = 64, num_layers: int = 2, seed: int = 0):
    """A tiny Qwen2-VL and its processor, built without a video processor (which would need torchvision).

    Images are resized to 56x56 pixels: 4x4 patches of 14 px, merged 2x2, so 4 image tokens per image.
    """
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor

    tokenizer = tokenizer or build_tokenizer(image_token="<|image_pad|>")
    if tokenizer.image_token != "<|image_pad|>":
        raise ValueError("build_qwen2_vl needs a tokenizer built with build_tokenizer(image_token='<|image_pad|>')")
    # Qwen2-VL's own template wraps the image pad between vision markers; the processor expands the pad
    template = tokenizer.chat_template.replace("'<|image_pad|>'", "'<|vision_start|><|image_pad|><|vision_end|>'")
    tokenizer.chat_template = template
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56, patch_size=14, merge_size=2)
    processor = _qwen2_vl_image_only_processor_class()(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=template
    )
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": hidden_size * 2,
            "num_hidden_layers": num_layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 1024,
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": hidden_size,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_chans": 3,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    )
    torch.manual_seed(seed)
    return Qwen2VLForConditionalGeneration(config), processor


def _qwen2_vl_image_only_processor_class():
    """Qwen2VLProcessor without its video processor.

    The stock processor insists on a video processor, whose class needs torchvision (which does not load beside a
    CPU-only torch). ProcessorMixin derives the sub-processors from `__init__`'s signature, so this subclass drops the
    `video_processor` argument and sets up the same token attributes as the parent.
    """
    from transformers import ProcessorMixin, Qwen2VLProcessor

    class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = getattr(tokenizer, "image_token", "<|image_pad|>")
            self.video_token = "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return Qwen2VLImageOnlyProcessor
