"""Write data sets of the language-prior world (`prior.py`), in the same layouts as `writers.py`.

- `write_prior_sft`: SFT conversations whose captions name the absent companion at `prior_rate` (the prior to learn);
  `sft.jsonl` rows also carry `companion_claim` (true when the caption names an absent companion).
- `write_prior_prompts`: held-out prompts and ground truth (`objects.json`, `scenes.json`).
- `write_prior_corrections`: for scenes with an anchor and no companion, an answer that names the companion and its
  annotator correction (corrections layout, as the demo's and the converter's input).
- `write_prior_sft(..., verification_items=n)`: `n` more conversations that ask whether one statement about the
  image is true and answer "Yes." or "No." from the scene (never from the habit), so that the model can act as its
  own labeler (`rlhfv feedback --labeler self`); `verification_statement` makes the statements.
"""

from __future__ import annotations

from pathlib import Path

from experiments.synthetic.annotator import correct
from experiments.synthetic.describe import join
from experiments.synthetic.prior import (
    COMPANIONS,
    PRIOR_KINDS,
    PRIOR_TEMPLATES,
    PriorItem,
    PriorWorld,
    anchor_of,
    companion_case,
    make_prior_item,
    prior_sentence,
)
from experiments.synthetic.world import COLOURS, POSITIONS
from experiments.synthetic.writers import _progress, _write_common, _write_jsonl


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


# the kinds of false statement a verification question can carry (`verification_statement`)
FALSE_KINDS = ("absent_companion", "wrong_kind", "wrong_colour")


def verification_statement(item: PriorItem) -> tuple[str, bool, str]:
    """(statement, true?, kind) drawn from the item's own stream: half the time a sentence of the true caption
    (kind "true"), else a false object sentence: the absent companion at an empty slot (the prior's hallucination,
    when the scene has one to make), another kind at an occupied slot, or another colour of a drawn object."""
    rng = item.rng
    if rng.random() < 0.5:
        return rng.choice(item.truth).text, True, "true"
    options = ["wrong_kind", "wrong_colour"]
    if companion_case(item.scene) == "absent":
        options.append("absent_companion")
    kind = rng.choice(options)
    template = rng.randrange(len(PRIOR_TEMPLATES))
    if kind == "absent_companion":
        free = sorted(set(POSITIONS) - {o.position for o in item.scene.objects})
        companion = COMPANIONS[anchor_of(item.scene)]
        sentence = prior_sentence(rng.choice(sorted(COLOURS)), companion, rng.choice(free), template)
    else:
        obj = rng.choice(item.scene.objects)
        if kind == "wrong_kind":
            other = rng.choice([k for k in PRIOR_KINDS if k != obj.kind])
            sentence = prior_sentence(obj.colour, other, obj.position, template)
        else:
            colour = rng.choice([c for c in sorted(COLOURS) if c != obj.colour])
            sentence = prior_sentence(colour, obj.kind, obj.position, template)
    return sentence.text, False, kind


def _verification(item: PriorItem, template: str) -> dict:
    statement, true, kind = verification_statement(item)
    # without the final full stop, as the rule-based claim splitter cuts claims out of an answer
    question = template.format(claim=statement.rstrip("."))
    return {
        "id": item.id,
        "images": [item.image],
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Yes." if true else "No."}]},
        ],
        "companion_claim": False,
        "verification": kind,
    }


# the question `rlhfv feedback`'s rule-based question writer asks (rlhfv.feedback.prompts.QUESTION_TEMPLATE; this
# package does not import rlhfv, and a test checks the two are equal)
VERIFICATION_TEMPLATE = 'Is the following statement about the image true? "{claim}" Please answer yes or no.'


def write_prior_sft(out: str | Path, n: int, seed: int = 0, world: PriorWorld | None = None, canvas: int = 24,
                    split: str = "sft", verification_items: int = 0,
                    verification_template: str = VERIFICATION_TEMPLATE) -> Path:  # fmt: skip
    """`n` conversations {id, images, messages, companion_claim}: a question and the (habit-laden) caption; then
    `verification_items` yes/no verification conversations (`verification` = the statement's kind) on images of
    their own (split `<split>-verify`)."""
    if "{claim}" not in verification_template:
        raise ValueError(f"verification_template needs a {{claim}} slot; got {verification_template!r}")
    world = world or PriorWorld()
    out = Path(out)
    items = list(_progress(iter_prior_items(split, n, seed, world, canvas), n, "sft"))
    rows = [_conversation(item, item.description) for item in items]
    if verification_items:
        checks = list(iter_prior_items(f"{split}-verify", verification_items, seed, world, canvas))
        rows += [_verification(item, verification_template) for item in checks]
        items += checks
    _write_common(out, items)
    _write_jsonl(out / "sft.jsonl", rows)
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
