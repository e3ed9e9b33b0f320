"""Model inputs of the reward model: conversations (prompt, answer, facts) and images -> one padded batch.

Shared by training (the collator), scoring (`score_answers`) and the RL reward function, so that the reward model
sees the same text layout everywhere.
"""

from __future__ import annotations

from typing import Any

from rlhfv.reward.facts import reward_messages


def _rgb(image):
    return image.convert("RGB") if getattr(image, "mode", "RGB") != "RGB" else image


def encode_conversations(
    processor, conversations: list[list[dict]], images: list[list], max_length: int | None = None
):
    """Render each conversation with the chat template and process texts and images together (left padding)."""
    from transformers import ProcessorMixin

    texts = [processor.apply_chat_template(conversation, tokenize=False) for conversation in conversations]
    flat = [_rgb(image) for row in images for image in (row or [])]
    if isinstance(processor, ProcessorMixin):
        kwargs = {"images": flat} if flat else {}
        batch = processor(text=texts, padding=True, return_tensors="pt", **kwargs)
    else:
        if flat:
            raise ValueError("the rows have images but the reward model's processing class is a text tokenizer")
        batch = processor(text=texts, padding=True, return_tensors="pt", add_special_tokens=False)
    if max_length is not None and batch["input_ids"].size(1) > max_length:
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        raise ValueError(
            f"a reward-model input has {max(lengths)} tokens, more than `max_length` {max_length}; cutting it could cut "
            "image tokens, so raise `max_length` (or shorten the facts template)"
        )
    return batch


def reward_conversation(prompt: list[dict], answer: str, images: list | None, facts: Any, template: str | None):
    return reward_messages(prompt, answer, len(images or []), facts, template)


class RewardPreferenceCollator:
    """Batches preference rows as [chosen rows..., rejected rows...], the layout `RewardTrainer.compute_loss` splits.

    A row has `prompt` (messages), `chosen` and `rejected` (strings), optionally `images`, `facts` and `margin`.
    With `use_facts=False` a `facts` column is ignored (the plain reward model).
    """

    def __init__(self, processor, template: str | None = None, use_facts: bool = True, max_length: int | None = None):
        self.processor = processor
        self.template = template
        self.use_facts = use_facts
        self.max_length = max_length

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        conversations, images = [], []
        for side in ("chosen", "rejected"):
            for row in rows:
                facts = row.get("facts") if self.use_facts else None
                if self.use_facts and facts is None:
                    raise ValueError("a row has no `facts` while facts are on (use `facts: none` for the plain model)")
                row_images = row.get("images") or []
                conversations.append(reward_conversation(row["prompt"], row[side], row_images, facts, self.template))
                images.append(row_images)
        batch = dict(encode_conversations(self.processor, conversations, images, self.max_length))
        if "margin" in rows[0]:
            batch["margin"] = torch.tensor([float(row["margin"]) for row in rows], dtype=torch.float)
        return batch


def score_answers(
    model,
    processor,
    prompts: list[list[dict]],
    answers: list[str],
    images: list[list] | None = None,
    facts: list | None = None,
    template: str | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> list[float]:
    """The reward model's score of each (prompt, answer, images, facts); `facts=None` for the plain model."""
    import torch
    from tqdm.auto import tqdm

    images = images or [[] for _ in prompts]
    scores: list[float] = []
    device = next(model.parameters()).device
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="scoring", unit="batch", disable=not progress):
        end = start + batch_size
        conversations = [
            reward_conversation(p, a, i, f, template)
            for p, a, i, f in zip(
                prompts[start:end],
                answers[start:end],
                images[start:end],
                (facts or [None] * len(prompts))[start:end],
                strict=True,
            )
        ]
        batch = encode_conversations(processor, conversations, images[start:end])
        batch = {key: value.to(device) if hasattr(value, "to") else value for key, value in batch.items()}
        with torch.inference_mode():
            scores.extend(model(**batch).logits[:, 0].float().tolist())
    return scores
