"""Write data sets of the language-prior world (`prior.py`), in the same layouts as `writers.py`.

- `write_prior_sft`: SFT conversations whose captions name the absent companion at `prior_rate` (the prior to learn);
  `sft.jsonl` rows also carry `companion_claim` (true when the caption names an absent companion).
- `write_prior_prompts`: held-out prompts and ground truth (`objects.json`, `scenes.json`).
- `write_prior_corrections`: for scenes with an anchor and no companion, an answer that names the companion and its
  annotator correction (corrections layout, as the demo's and the converter's input).
"""

from __future__ import annotations

from pathlib import Path

from data_tools.synthetic.annotator import correct
from data_tools.synthetic.describe import join
from data_tools.synthetic.prior import PriorItem, PriorWorld, companion_case, make_prior_item
from data_tools.synthetic.writers import _progress, _write_common, _write_jsonl


def iter_prior_items(split: str, n: int, seed: int, world: PriorWorld, canvas: int):
    for index in range(n):
        yield make_prior_item(split, seed, index, world, canvas)


def _conversation(item: PriorItem, answer: str) -> dict:
    return {
        "id": item.id,
        "images": [item.image],
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": item.question}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
        "companion_claim": item.companion_claim is not None,
    }


def write_prior_sft(out: str | Path, n: int, seed: int = 0, world: PriorWorld | None = None, canvas: int = 24,
                    split: str = "sft") -> Path:  # fmt: skip
    """`n` conversations {id, images, messages, companion_claim}: a question and the (habit-laden) caption."""
    world = world or PriorWorld()
    out = Path(out)
    items = list(_progress(iter_prior_items(split, n, seed, world, canvas), n, "sft"))
    _write_common(out, items)
    _write_jsonl(out / "sft.jsonl", [_conversation(item, item.description) for item in items])
    return out / "sft.jsonl"


def write_prior_prompts(out: str | Path, n: int, seed: int = 0, world: PriorWorld | None = None, canvas: int = 24,
                        split: str = "eval") -> Path:  # fmt: skip
    """`n` held-out prompts {id, image, question, reference} and their ground truth; `reference` is the true
    caption."""
    world = world or PriorWorld()
    out = Path(out)
    items = list(_progress(iter_prior_items(split, n, seed, world, canvas), n, "prompts"))
    rows = [
        {"id": item.id, "image": item.image, "question": item.question, "reference": item.true_description}
        for item in items
    ]
    _write_common(out, items)
    _write_jsonl(out / "prompts.jsonl", rows)
    return out / "prompts.jsonl"


def write_prior_corrections(out: str | Path, n: int, seed: int = 0, world: PriorWorld | None = None,
                            canvas: int = 24, split: str = "corrections") -> Path:  # fmt: skip
    """Up to `n` rows {id, image, question, response, corrected}: items whose anchor is drawn without its companion,
    answered with the companion claimed (prior_rate 1) and corrected by the annotator. Items of other scenes are
    skipped; the items are drawn until `n` rows are written."""
    world = world or PriorWorld()
    forced = PriorWorld(world.together, 1.0, world.anchor_rate, world.min_objects, world.max_objects)
    out = Path(out)
    items, rows, index = [], [], 0
    while len(rows) < n:
        item = make_prior_item(split, seed, index, forced, canvas)
        index += 1
        if companion_case(item.scene) != "absent":
            continue
        response = join(item.sentences)
        rows.append(
            {
                "id": item.id,
                "image": item.image,
                "question": item.question,
                "response": response,
                "corrected": correct(response, item.scene).text,
            }
        )
        items.append(item)
    _write_common(out, items)
    _write_jsonl(out / "corrections.jsonl", rows)
    return out / "corrections.jsonl"
