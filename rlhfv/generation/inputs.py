"""Model inputs of prompt rows: the user turn a row is asked as, its chat-template text, and a tokenised batch.

Shared by generation (`rlhfv.generation.generate`), best-of-N (`rlhfv.generation.best_of_n`) and the samplers of
`rlhfv feedback`, so that every path asks a row the same way.
"""

from __future__ import annotations

from rlhfv.eval.io import EvalInputError


def chat_messages(row: dict, is_vision: bool) -> list[dict]:
    """The one user turn a row is asked as: an image part (when the row has an image) and the question."""
    if "_image_path" in row:
        content = [{"type": "image"}, {"type": "text", "text": row["question"]}]
    else:
        content = [{"type": "text", "text": row["question"]}] if is_vision else row["question"]
    return [{"role": "user", "content": content}]


def render_prompt(processor, row: dict) -> str:
    """The prompt text of a row through the processor's chat template, ready for the answer; every sampler (the
    transformers one here, vLLM in rlhfv.feedback.vllm_sampling) renders prompts with this function."""
    messages = chat_messages(row, hasattr(processor, "image_processor"))
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def build_inputs(loaded, rows: list[dict]):
    """Tokenised, left-padded prompts for a batch of rows (with pixel values for a VLM); `loaded` is a
    `rlhfv.generation.generate.LoadedModel`."""
    from PIL import Image

    images = []
    for row in rows:
        if "_image_path" in row:
            if not loaded.is_vision:
                raise EvalInputError(f"{row['_where']}: has an image, but {loaded.path} is a text-only model")
            images.append(Image.open(row["_image_path"]).convert("RGB"))
    if images and len(images) != len(rows):
        raise EvalInputError("a batch mixes prompts with and without images: use --batch-size 1 or split the file")
    tokenizer = loaded.tokenizer
    tokenizer.padding_side = "left"
    texts = [render_prompt(loaded.processor, row) for row in rows]
    if loaded.is_vision:
        inputs = loaded.processor(text=texts, images=images or None, return_tensors="pt", padding=True)
    else:
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return inputs.to(loaded.model.device)
