"""A hallucinating "model": perturbs a true description at a controllable rate, and records what it changed.

Three kinds of hallucination, as seen in real VLM answers:
- `object`: an object is named as a kind that is not in the image (a red cup -> a red kite);
- `colour`: an object's colour is wrong (a red cup -> a blue cup);
- `added`: a whole sentence describes an object that does not exist, at an empty position.
The record says which words are false and where they lie in the answer, so tests can check that corrections touch
exactly these words.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from experiments.synthetic.describe import (
    TEMPLATES,
    Sentence,
    join,
    object_sentence,
    sentence_offsets,
    with_field,
)
from experiments.synthetic.world import COLOURS, KINDS, POSITIONS, Scene


HALLUCINATION_TYPES = ("object", "colour", "added")


@dataclass(frozen=True)
class Hallucination:
    type: str  # one of HALLUCINATION_TYPES
    sentence: int  # index of the sentence in the hallucinated answer
    false: str  # the false words (for `added`, the whole sentence)
    true: str | None  # what the image really has there; None for `added`
    span: tuple[int, int]  # [start, end) of the false words in the answer

    def to_json(self) -> dict:
        return asdict(self)


def hallucinate(
    scene: Scene, sentences: list[Sentence], rng: random.Random, rate: float, min_errors: int = 0
) -> tuple[list[Sentence], list[Hallucination]]:
    """Perturb `sentences` (a true description of `scene`).

    Each object sentence is perturbed with probability `rate` (an object swap or a wrong colour, evenly), and one
    invented sentence is added with probability `rate`. If fewer than `min_errors` hallucinations came out, more
    are forced (each chosen evenly among the possible kinds) until there are enough or nothing is left to perturb.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    out = list(sentences)
    changed: dict[int, tuple[str, str, str]] = {}  # sentence index (in `sentences`) -> (type, false, true)
    used_kinds = set(scene.kinds())
    added: list[Sentence] = []

    def perturb(index: int, kind_of_error: str) -> None:
        sentence = out[index]
        if kind_of_error == "object":
            choices = sorted(set(KINDS) - used_kinds)
            if not choices:
                kind_of_error = "colour"
            else:
                new = rng.choice(choices)
                used_kinds.add(new)
                out[index] = with_field(sentence, "kind", new)
                changed[index] = ("object", new, sentence.kind)
                return
        new = rng.choice(sorted(set(COLOURS) - {sentence.colour}))
        out[index] = with_field(sentence, "colour", new)
        changed[index] = ("colour", new, sentence.colour)

    def add() -> bool:
        free = sorted(set(POSITIONS) - {o.position for o in scene.objects} - {s.position for s in added})
        kinds = sorted(set(KINDS) - used_kinds)
        if not free or not kinds:
            return False
        kind = rng.choice(kinds)
        used_kinds.add(kind)
        sentence = object_sentence(rng.choice(sorted(COLOURS)), kind, rng.choice(free), rng.randrange(len(TEMPLATES)))
        added.append(sentence)
        return True

    object_indices = [i for i, s in enumerate(sentences) if s.kind is not None]
    for i in object_indices:
        if rng.random() < rate:
            perturb(i, rng.choice(["object", "colour"]))
    if rng.random() < rate:
        add()
    while len(changed) + len(added) < min_errors:
        options = [("perturb", i) for i in object_indices if i not in changed] + [("add", None)]
        action, index = rng.choice(options)
        if action == "perturb":
            perturb(index, rng.choice(["object", "colour"]))
        elif not add():
            if all(i in changed for i in object_indices):
                break

    # insert invented sentences after the opener, at random places among the true ones
    result: list[Sentence] = list(out)
    origin: list[int | None] = list(range(len(out)))  # index into `sentences`, None for an added sentence
    for sentence in added:
        at = rng.randint(1, len(result))
        result.insert(at, sentence)
        origin.insert(at, None)

    offsets = sentence_offsets(result)
    records = []
    for position, (sentence, source) in enumerate(zip(result, origin, strict=True)):
        start = offsets[position]
        if source is None:
            records.append(Hallucination("added", position, sentence.text, None, (start, start + len(sentence.text))))
        elif source in changed:
            kind_of_error, false, true = changed[source]
            name = "kind" if kind_of_error == "object" else "colour"
            s, e = sentence.spans[name]
            records.append(Hallucination(kind_of_error, position, false, true, (start + s, start + e)))
    return result, records


def hallucinated_answer(scene: Scene, sentences: list[Sentence], rng: random.Random, rate: float, min_errors: int = 0):
    """`hallucinate` rendered as text: returns `(answer, records)`."""
    result, records = hallucinate(scene, sentences, rng, rate, min_errors)
    return join(result), records
