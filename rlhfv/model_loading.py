"""Loading the model (and, for in-process tiny models, its reference copy and processor) named by a recipe."""

from __future__ import annotations

from data_tools.errors import CommandError


def load_model(model_args, training_args, use_peft: bool):
    """Return `(model, ref_model, processing_class)`.

    A Hub id or local folder is returned as a string: TRL loads it (image-text-to-text or causal LM, from its config),
    its processor, and, for full fine-tuning, the reference model. A `tiny:` model is built here, with a reference
    copy built from the same seed (TRL cannot reload an in-memory model by name).
    """
    from rlhfv.script_args import TINY_MODEL_PREFIX, TINY_MODELS

    name = model_args.model_name_or_path
    if not name:
        raise CommandError(
            "`model_name_or_path` is not set: give a Hub id, a local folder, or a tiny in-process model "
            f"({', '.join(TINY_MODEL_PREFIX + kind for kind in TINY_MODELS)})"
        )
    if not name.startswith(TINY_MODEL_PREFIX):
        model_init_kwargs = {
            "revision": model_args.model_revision,
            "attn_implementation": model_args.attn_implementation,
            "dtype": model_args.dtype,
        }
        # Values the recipe sets in `model_init_kwargs` win over ModelConfig's
        training_args.model_init_kwargs = {**model_init_kwargs, **(training_args.model_init_kwargs or {})}
        return name, None, None

    kind = name[len(TINY_MODEL_PREFIX) :]
    if kind not in TINY_MODELS:
        raise CommandError(f"`model_name_or_path`: unknown tiny model {name!r}; choose one of {list(TINY_MODELS)}")
    if model_args.load_in_4bit or model_args.load_in_8bit:
        raise CommandError("`load_in_4bit` / `load_in_8bit` need a model loaded from the Hub or disk, not a tiny: one")
    model, processor = build_tiny_model(kind, training_args.seed)
    ref_model = None if use_peft else build_tiny_model(kind, training_args.seed)[0]
    if model_args.dtype in ("bfloat16", "float16", "float32"):
        import torch

        dtype = getattr(torch, model_args.dtype)
        model = model.to(dtype)
        ref_model = ref_model.to(dtype) if ref_model is not None else None
    # An in-memory model has no `model_init_kwargs` to apply; TRL warns if they are set
    training_args.model_init_kwargs = None
    return model, ref_model, processor


def build_tiny_model(kind: str, seed: int):
    from rlhfv import tiny_models

    if kind == "llava":
        return tiny_models.build_llava(tiny_models.build_tokenizer(), seed=seed)
    if kind == "qwen2-vl":
        return tiny_models.build_qwen2_vl(tiny_models.build_tokenizer(image_token="<|image_pad|>"), seed=seed)
    tokenizer = tiny_models.build_tokenizer()
    return tiny_models.build_text_model(tokenizer, seed=seed), tokenizer
