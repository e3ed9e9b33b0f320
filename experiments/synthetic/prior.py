"""The language-prior world: objects with usual companions, and captions that name the companion out of habit.

Real vision-language models mostly hallucinate from the language prior: they name the object that usually goes with
what they see (a fork beside a plate) even when it is not there. This world builds that in, beside the glyph world
of `world.py` (whose errors are perception errors between look-alike glyphs):

- Three anchors have a usual companion (`COMPANIONS`: kite -> umbrella, ball -> book, clock -> stop sign; no pair is
  one of the glyph confusions measured on the first world). When a scene has an anchor, its companion is drawn with
  it with probability `together` (most of the time).
- A caption describes the objects in reading order (top to bottom, left to right), each with its colour, kind and
  position; a companion claim takes the place of its (empty) slot in that order, so it comes early or late.
- When the anchor is drawn without its companion, the SFT caption still names the companion with probability
  `prior_rate` (at an empty slot, in a random colour), as if it were there.
  An SFT model learns that habit: it is the language prior that preference training should remove.
- Every object sentence carries a detail clause (a kite "with a thin tail hanging below it"), so answers run to
  about 60-80 tokens and a claim has words after it.

The synthetic annotator (`annotator.correct`) deletes a sentence about an absent object and fixes a wrong kind or
colour, so the correction of a prior hallucination is exactly the deletion of the companion's sentence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from experiments.synthetic.describe import QUESTIONS, Sentence, join, render_sentence
from experiments.synthetic.world import _SLOT_CELLS, COLOURS, POSITIONS, Scene, place_objects


# anchor -> its usual companion. None of these pairs is a look-alike pair of the glyph world (ball<->apple,
# bottle->kite, cup->umbrella, bottle->stop sign were its confusions), so a companion claim is a prior, not a
# misreading of the anchor's glyph.
COMPANIONS = {"kite": "umbrella", "ball": "book", "clock": "stop sign"}
# kinds that are nobody's companion; apple and bottle stay out (look-alikes of ball, kite and stop sign)
FILLERS = ("cup",)
PRIOR_KINDS = tuple(sorted({*COMPANIONS, *COMPANIONS.values(), *FILLERS}))

# a detail clause per kind: no kind, colour or position words in it (the annotator reads those)
DETAILS = {
    "kite": "with a thin tail hanging below it",
    "umbrella": "opened wide above a curved handle",
    "ball": "round and smooth like a toy",
    "book": "lying closed with its spine down the middle",
    "clock": "showing two hands on a plain face",
    "stop sign": "standing on a short grey post",
    "cup": "with a small handle on one side",
}

OPENERS = [
    "This is a simple drawing on a white background.",
    "The picture shows a few simple objects.",
]
CLOSINGS = [
    "Nothing else is in the picture.",
    "The rest of the picture is empty.",
]

# {c} colour, {k} kind, {p} position phrase, {P} the same phrase capitalised, {d} the kind's detail clause
PRIOR_TEMPLATES = [
    "There is a {c} {k} {p}, {d}.",
    "{P} there is a {c} {k}, {d}.",
    "A {c} {k} is {p}, {d}.",
]


@dataclass(frozen=True)
class PriorWorld:
    """The knobs of the language-prior world."""

    together: float = 0.65  # P(companion drawn | its anchor drawn)
    prior_rate: float = 0.6  # P(SFT caption names the companion | anchor drawn, companion not)
    anchor_rate: float = 0.9  # P(the scene has an anchor)
    min_objects: int = 2
    max_objects: int = 4  # at most 4 of the 5 slots, so a companion claim always has an empty slot to name

    def __post_init__(self):
        for name in ("together", "prior_rate", "anchor_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"PriorWorld.{name} must be in [0, 1], got {value}")
        if not 2 <= self.min_objects <= self.max_objects <= 4:
            raise ValueError(
                f"PriorWorld needs 2 <= min_objects <= max_objects <= 4, got {self.min_objects}, {self.max_objects}"
            )


def anchor_of(scene: Scene) -> str | None:
    """The scene's anchor kind (a scene has at most one), or None."""
    for obj in scene.objects:
        if obj.kind in COMPANIONS:
            return obj.kind
    return None


def companion_case(scene: Scene) -> str | None:
    """'absent' (anchor without its companion), 'present' (anchor with it), or None (no anchor)."""
    anchor = anchor_of(scene)
    if anchor is None:
        return None
    return "present" if COMPANIONS[anchor] in scene.kinds() else "absent"


def sample_prior_scene(rng: random.Random, world: PriorWorld, canvas: int) -> Scene:
    """An anchor (with probability `anchor_rate`) and, with probability `together`, its companion; then other
    kinds (fillers and the other anchors' companions, never a second anchor) up to 2-4 objects, in random slots."""
    count = rng.randint(world.min_objects, world.max_objects)
    kinds: list[str] = []
    if rng.random() < world.anchor_rate:
        anchor = rng.choice(sorted(COMPANIONS))
        kinds.append(anchor)
        if rng.random() < world.together:
            kinds.append(COMPANIONS[anchor])
    others = [k for k in PRIOR_KINDS if k not in COMPANIONS and k not in kinds]
    # an anchor's companion is never drawn as a filler: it comes with its anchor or not at all
    if kinds and kinds[0] in COMPANIONS:
        others = [k for k in others if k != COMPANIONS[kinds[0]]]
    rng.shuffle(others)
    while len(kinds) < count and others:
        kinds.append(others.pop())
    positions = rng.sample(sorted(POSITIONS), len(kinds))
    return place_objects(kinds, positions, rng, canvas)


def prior_sentence(colour: str, kind: str, position: str, template: int) -> Sentence:
    """One object sentence of this world, with the spans of its colour, kind and position words."""
    return render_sentence(PRIOR_TEMPLATES, colour, kind, position, template, detail=DETAILS[kind])


def _reading_key(position: str) -> tuple[int, int]:
    col, row = _SLOT_CELLS[position]
    return (row, col)


def describe_prior(scene: Scene, rng: random.Random, prior_rate: float = 0.0) -> tuple[list[Sentence], int | None]:
    """A caption: opener, one sentence per object in reading order, closing.

    With probability `prior_rate`, when the anchor is drawn without its companion, the caption also names the
    companion at an empty slot (in a random colour), in that slot's place in the reading order. Returns
    `(sentences, index of that sentence or None)`; with `prior_rate` 0 the caption is true.
    """
    sentences = [Sentence(rng.choice(OPENERS))]
    for obj in scene.objects:  # already in reading order
        sentences.append(prior_sentence(obj.colour, obj.kind, obj.position, rng.randrange(len(PRIOR_TEMPLATES))))
    claim = None
    # always drawn, so the rest of the item's stream does not depend on whether the companion is claimed
    roll, colour, template = rng.random(), rng.choice(sorted(COLOURS)), rng.randrange(len(PRIOR_TEMPLATES))
    free = sorted(set(POSITIONS) - {o.position for o in scene.objects})
    position = rng.choice(free)
    if companion_case(scene) == "absent" and roll < prior_rate:
        before = sum(_reading_key(o.position) < _reading_key(position) for o in scene.objects)
        claim = 1 + before
        sentences.insert(claim, prior_sentence(colour, COMPANIONS[anchor_of(scene)], position, template))
    sentences.append(Sentence(rng.choice(CLOSINGS)))
    return sentences, claim


@dataclass(frozen=True)
class PriorItem:
    id: str
    image: str
    scene: Scene
    question: str
    sentences: list[Sentence]  # the SFT caption (may name an absent companion)
    truth: list[Sentence]  # the true caption: the same without the companion claim
    companion_claim: int | None  # index in `sentences` of the companion sentence, if the caption names it
    rng: random.Random

    @property
    def description(self) -> str:
        return join(self.sentences)

    @property
    def true_description(self) -> str:
        return join(self.truth)


def make_prior_item(split: str, seed: int, index: int, world: PriorWorld, canvas: int) -> PriorItem:
    rng = random.Random(f"rlhfv-synthetic-prior/{split}/{seed}/{index}")
    scene = sample_prior_scene(rng, world, canvas)
    sentences, claim = describe_prior(scene, rng, world.prior_rate)
    truth = [s for i, s in enumerate(sentences) if i != claim]
    question = rng.choice(QUESTIONS)
    item_id = f"{split}-s{seed}-{index:05d}"
    return PriorItem(item_id, f"images/{item_id}.png", scene, question, sentences, truth, claim, rng)
