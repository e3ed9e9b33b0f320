"""Questions and true descriptions of synthetic scenes.

A description is a list of sentences: an opener that claims nothing about objects, then one sentence per object
saying its colour, kind and position. Each sentence keeps the character spans of those three fields, so a
perturbation (see `hallucinate.py`) can change exactly one field and record where.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from experiments.synthetic.world import POSITIONS, Scene


# "Describe in detail" prompts in the spirit of Object HalBench's eight
QUESTIONS = [
    "Describe the image in detail.",
    "What is in this image? Please answer in detail.",
    "Provide a thorough description of the picture.",
    "What objects can you see in the image, and where are they?",
    "Give a detailed account of everything shown in this picture.",
    "Describe every object in the image, with its colour and position.",
    "What does this picture show? Describe it carefully.",
    "Tell me about the contents of this image in detail.",
]

OPENERS = [
    "The picture is a simple drawing on a white background.",
    "This is a drawing of a few objects on a white background.",
]

# {c} colour, {k} kind, {p} position phrase, {P} the same phrase capitalised
TEMPLATES = [
    "There is a {c} {k} {p}.",
    "A {c} {k} is {p}.",
    "{P} there is a {c} {k}.",
    "{P} is a {c} {k}.",
]


@dataclass(frozen=True)
class Sentence:
    """One sentence of a description. `kind` is None for sentences that name no object (the opener)."""

    text: str
    kind: str | None = None
    colour: str | None = None
    position: str | None = None
    template: int | None = None
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # field -> [start, end) within `text`


def object_sentence(colour: str, kind: str, position: str, template: int) -> Sentence:
    """Render one object sentence and remember where its colour, kind and position words lie."""
    return render_sentence(TEMPLATES, colour, kind, position, template)


def render_sentence(
    templates, colour: str, kind: str, position: str, template: int, detail: str | None = None
) -> Sentence:
    """`templates[template]` with its `{c}` colour, `{k}` kind, `{p}`/`{P}` position and `{d}` detail filled in,
    and the character spans of those words (a detail counts under "detail")."""
    phrase = POSITIONS[position]
    values = {"c": colour, "k": kind, "p": phrase, "P": phrase[0].upper() + phrase[1:]}
    names = {"c": "colour", "k": "kind", "p": "position", "P": "position", "d": "detail"}
    if detail is not None:
        values["d"] = detail
    text, spans, rest = "", {}, templates[template]
    while "{" in rest:
        before, _, after = rest.partition("{")
        key, _, rest = after.partition("}")
        text += before
        spans[names[key]] = (len(text), len(text) + len(values[key]))
        text += values[key]
    text += rest
    return Sentence(text, kind, colour, position, template, spans)


def describe(scene: Scene, rng: random.Random) -> list[Sentence]:
    """The true description: an opener, then one sentence per object in reading order."""
    sentences = [Sentence(rng.choice(OPENERS))]
    for obj in scene.objects:
        sentences.append(object_sentence(obj.colour, obj.kind, obj.position, rng.randrange(len(TEMPLATES))))
    return sentences


def join(sentences: list[Sentence]) -> str:
    return " ".join(s.text for s in sentences)


def sentence_offsets(sentences: list[Sentence]) -> list[int]:
    """Character offset of each sentence in `join(sentences)`."""
    offsets, at = [], 0
    for sentence in sentences:
        offsets.append(at)
        at += len(sentence.text) + 1
    return offsets


def with_field(sentence: Sentence, name: str, value: str) -> Sentence:
    """The same sentence with one field (colour, kind or position) replaced."""
    fields = {"colour": sentence.colour, "kind": sentence.kind, "position": sentence.position, name: value}
    rendered = object_sentence(fields["colour"], fields["kind"], fields["position"], sentence.template)
    return replace(rendered)
