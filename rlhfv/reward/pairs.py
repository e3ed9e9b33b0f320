"""Reward-ranked preference pairs: the reward model scores N sampled answers per prompt; the best and the worst
become a pair in the dense preference format (docs/data_format.md), word-diff spans included, so Dense DPO
(`rlhfv train`) can train on them.

A prompt yields no pair when its best and worst scores differ by less than `margin` (the reward model cannot tell
them apart) or when the two answers are the same words; such prompts are counted in the report with their reason,
never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from data_tools.segments import diff_pair


SKIP_MARGIN = "below_margin"
SKIP_SAME = "same_answer"
SKIP_TOO_FEW = "fewer_than_two_samples"


@dataclass
class PairReport:
    prompts: int = 0
    pairs: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_ids: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, row_id: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.skipped_ids.setdefault(reason, []).append(row_id)

    def summary(self) -> str:
        skipped = ", ".join(f"{count} {reason}" for reason, count in sorted(self.skipped.items())) or "none"
        return f"{self.prompts} prompts -> {self.pairs} pairs; skipped: {skipped}"


def best_and_worst(scores: list[float]) -> tuple[int, int]:
    """Indices of the highest and the lowest score (the first one on ties)."""
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    worst = min(range(len(scores)), key=lambda i: (scores[i], i))
    return best, worst


def build_pair(row: dict, samples: list[str], scores: list[float], margin: float, report: PairReport) -> dict | None:
    """One dense preference row from a prompt's scored samples, or None (the reason goes to `report`).

    `row` has `id`, `prompt` (messages), optionally `images`, `facts` and `source`.
    """
    report.prompts += 1
    row_id = str(row.get("id", report.prompts - 1))
    if len(samples) != len(scores):
        raise ValueError(f"prompt {row_id}: {len(samples)} samples but {len(scores)} scores")
    if len(samples) < 2:
        report.skip(SKIP_TOO_FEW, row_id)
        return None
    best, worst = best_and_worst(scores)
    if scores[best] - scores[worst] < margin:
        report.skip(SKIP_MARGIN, row_id)
        return None
    chosen, rejected = samples[best], samples[worst]
    chosen_spans, rejected_spans, changed_runs = diff_pair(rejected, chosen)
    if changed_runs == 0:
        # The same words (they may differ in whitespace): nothing to prefer
        report.skip(SKIP_SAME, row_id)
        return None
    report.pairs += 1
    pair = {
        "id": row_id,
        "source": row.get("source", f"reward-pairs:{row_id}"),
        "prompt": row["prompt"],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "chosen_spans": chosen_spans,
        "rejected_spans": rejected_spans,
        "chosen_score": float(scores[best]),
        "rejected_score": float(scores[worst]),
    }
    if row.get("images"):
        pair["images"] = row["images"]
    if row.get("facts") is not None:
        pair["facts"] = list(row["facts"])
    return pair


def pairs_dataset(pairs: list[dict]):
    """The pairs as a `datasets.Dataset` with the dense format's features (plus scores and facts)."""
    from datasets import Dataset, Features, List, Value

    from data_tools.convert import dataset_features

    with_images = any("images" in pair for pair in pairs)
    features = dict(dataset_features(with_images))
    features["chosen_score"] = Value("float32")
    features["rejected_score"] = Value("float32")
    with_facts = any("facts" in pair for pair in pairs)
    if with_facts:
        features["facts"] = List(Value("string"))
    rows = []
    for pair in pairs:
        row = {key: pair.get(key) for key in features}
        if with_images and row["images"] is None:
            row["images"] = []
        rows.append(row)
    return Dataset.from_list(rows, features=Features(features))


def sample_answers(model, processor, prompts: list[list[dict]], images: list[list], n: int, **generate_kwargs):
    """`n` sampled answers per prompt from a VLM (`model.generate` with sampling), as text."""
    import torch
    from trl.data_utils import prepare_multimodal_messages

    tokenizer = getattr(processor, "tokenizer", processor)
    answers = []
    device = next(model.parameters()).device
    for prompt, row_images in zip(prompts, images, strict=True):
        messages = prepare_multimodal_messages(prompt, images=[None] * len(row_images)) if row_images else prompt
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        kwargs = {"images": [image.convert("RGB") for image in row_images]} if row_images else {}
        inputs = processor(text=[text], return_tensors="pt", **kwargs).to(device)
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                do_sample=True,
                num_return_sequences=n,
                pad_token_id=tokenizer.pad_token_id,
                **generate_kwargs,
            )
        new_tokens = output[:, inputs["input_ids"].size(1) :]
        answers.append([text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)])
    return answers
