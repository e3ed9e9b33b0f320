"""A synthetic annotator: corrects any answer about a synthetic scene the way RLHF-V's annotators do.

It reads the answer sentence by sentence, checks each claim against the scene's ground truth and makes the smallest
fix: a wrong object or colour word is replaced by what is really there, a sentence about an object that does not
exist is deleted, and everything else is left alone (missing objects are not added, as in RLHF-V, whose annotators
only correct hallucinations).

Rules, in order, for a sentence that names an object kind:
- it names two or more kinds: deleted if any of them is absent from the image, kept otherwise (too tangled to
  repair word by word, and rare);
- it names a position that holds an object: the kind and colour words are set to that object's (the position is the
  anchor: the generator never moves objects, and a position error reads as an object error here);
- it names an empty position: if an object of the named kind exists elsewhere, the position (and colour) are fixed;
  otherwise the sentence is deleted;
- it names no position: the colour is fixed if the kind exists, otherwise the sentence is deleted.
Sentences that name no object kind are kept as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from experiments.synthetic.world import COLOURS, KINDS, POSITIONS, Scene


_KIND_RE = re.compile(
    r"\b(" + "|".join(re.escape(k) for k in sorted(KINDS, key=len, reverse=True)) + r")(s)?\b", re.IGNORECASE
)
_COLOUR_RE = re.compile(r"\b(" + "|".join(sorted(COLOURS)) + r")\b", re.IGNORECASE)
_PHRASE_TO_POSITION = {phrase: position for position, phrase in POSITIONS.items()}
_POSITION_RE = re.compile(r"\b(" + "|".join(re.escape(p) for p in _PHRASE_TO_POSITION) + r")\b", re.IGNORECASE)
_SENTENCE_RE = re.compile(r"[^.!?\s][^.!?]*(?:[.!?]+|$)")
_ARTICLE_RE = re.compile(r"\b(an?)(\s+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    text: str  # replacement; "" deletes


@dataclass(frozen=True)
class Correction:
    text: str
    edits: tuple[Edit, ...]


def correct(answer: str, scene: Scene) -> Correction:
    """The corrected answer and the edits (spans into `answer`) that produced it."""
    edits: list[Edit] = []
    sentences = list(_SENTENCE_RE.finditer(answer))
    for number, match in enumerate(sentences):
        sentence_edits = _correct_sentence(answer, match.start(), match.end(), scene)
        if sentence_edits is None:
            # delete the sentence and the whitespace that separates it from its neighbour
            start, end = match.start(), match.end()
            if number + 1 < len(sentences):
                end = sentences[number + 1].start()
            elif number > 0:
                start = sentences[number - 1].end()
            edits.append(Edit(start, end, ""))
        else:
            edits.extend(sentence_edits)
    return Correction(apply_edits(answer, edits), tuple(edits))


def apply_edits(text: str, edits: list[Edit]) -> str:
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        text = text[: edit.start] + edit.text + text[edit.end :]
    return text


def _correct_sentence(answer: str, start: int, end: int, scene: Scene) -> list[Edit] | None:
    """Edits for one sentence (absolute spans), or None to delete it."""
    text = answer[start:end]
    kinds = list(_KIND_RE.finditer(text))
    if not kinds:
        return []
    if len(kinds) > 1:
        return None if any(m.group(1).lower() not in scene.kinds() for m in kinds) else []
    kind_match = kinds[0]
    kind = kind_match.group(1).lower()
    colour_match = _COLOUR_RE.search(text)
    position_match = _POSITION_RE.search(text)
    position = _PHRASE_TO_POSITION[position_match.group(1).lower()] if position_match else None
    truth = scene.at(position) if position else None
    edits = []
    if truth is None:
        same_kind = [o for o in scene.objects if o.kind == kind]
        if not same_kind:
            return None
        truth = same_kind[0]
        if position_match:
            phrase = _match_case(POSITIONS[truth.position], position_match.group(1))
            edits.append(_replace(answer, start, position_match.span(1), phrase))
    if kind != truth.kind:
        edits.append(_replace(answer, start, kind_match.span(1), _match_case(truth.kind, kind_match.group(1))))
    if colour_match and colour_match.group(1).lower() != truth.colour:
        edits.append(_replace(answer, start, colour_match.span(1), _match_case(truth.colour, colour_match.group(1))))
    return _fix_articles(answer, edits)


def _replace(answer: str, offset: int, span: tuple[int, int], text: str) -> Edit:
    return Edit(offset + span[0], offset + span[1], text)


def _match_case(word: str, like: str) -> str:
    return word[0].upper() + word[1:] if like[:1].isupper() else word


def _fix_articles(answer: str, edits: list[Edit]) -> list[Edit]:
    """'a apple' -> 'an apple': extend an edit to the article right before it when the article must change."""
    fixed = []
    for edit in edits:
        article = _ARTICLE_RE.search(answer[: edit.start])
        if article and edit.text:
            wanted = "an" if edit.text[0].lower() in "aeiou" else "a"
            if article.group(1).lower() != wanted:
                wanted = _match_case(wanted, article.group(1))
                edit = Edit(article.start(1), edit.end, wanted + article.group(2) + edit.text)
        fixed.append(edit)
    return fixed


def find_claims(answer: str) -> list[dict]:
    """Object claims in `answer`: one dict per sentence naming one kind (kind, colour, position; None if unsaid)."""
    claims = []
    for match in _SENTENCE_RE.finditer(answer):
        text = match.group(0)
        kinds = _KIND_RE.findall(text)
        if len(kinds) != 1:
            continue
        colour = _COLOUR_RE.search(text)
        position = _POSITION_RE.search(text)
        claims.append(
            {
                "kind": kinds[0][0].lower(),
                "colour": colour.group(1).lower() if colour else None,
                "position": _PHRASE_TO_POSITION[position.group(1).lower()] if position else None,
            }
        )
    return claims
