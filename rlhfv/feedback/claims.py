"""Answer -> atomic claims, each with its character span in the answer (the span a false claim marks as changed).

The rule-based splitter needs no model: sentences (ended by . ! ? before a space or the end), cut further at
semicolons and at clause-joining ", and" / ", but" / ", while". The LLM splitter asks a model for one claim per line
(RLAIF-V's divide step) and places each claim on the answer: verbatim when the model copied the words, otherwise on
the sentence sharing the most words with it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from rlhfv.feedback.prompts import CLAIMS_PROMPT


# Where a sentence ends: . ! ? (possibly repeated, possibly followed by a closing quote or bracket), then space or end
_SENTENCE_END = re.compile(r"[.!?]+['\")\]]*(?=\s|$)")
# Clause boundaries inside a sentence; the joining words belong to neither claim
_CLAUSE_BREAK = re.compile(r";\s*|,\s+(?:and|but|while|whereas)\s+", re.I)
_WORD = re.compile(r"\w+")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")
# At most this many words of the answer go to the LLM (RLAIF-V cuts its splitter's input to 300 words)
MAX_ANSWER_WORDS = 300


@dataclass(frozen=True)
class Claim:
    text: str  # what is checked (the answer's words for the rule-based splitter)
    start: int  # character span of the claim in the answer: answer[start:end]
    end: int

    def to_json(self) -> dict:
        return asdict(self)


def sentence_spans(answer: str) -> list[tuple[int, int]]:
    """[start, end) of each sentence, trimmed of surrounding white space; the end includes the final punctuation."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(answer):
        spans.append((start, match.end()))
        start = match.end()
    spans.append((start, len(answer)))
    return [trimmed for s, e in spans if (trimmed := _trim(answer, s, e)) is not None]


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start == end or not _WORD.search(text, start, end):
        return None
    return start, end


def split_claims(answer: str) -> list[Claim]:
    """The rule-based atomic claims of `answer`, in order, with spans; an answer without words has none."""
    claims = []
    for s_start, s_end in sentence_spans(answer):
        piece_start = s_start
        for match in _CLAUSE_BREAK.finditer(answer, s_start, s_end):
            if (span := _trim(answer, piece_start, match.start())) is not None:
                claims.append(_claim(answer, *span))
            piece_start = match.end()
        if (span := _trim(answer, piece_start, s_end)) is not None:
            claims.append(_claim(answer, *span))
    return claims


def _claim(answer: str, start: int, end: int) -> Claim:
    text = answer[start:end].rstrip(".!?;,:'\")] ").strip()
    return Claim(text or answer[start:end], start, end)


def parse_claim_lines(reply: str) -> list[str]:
    """One claim per non-empty line of an LLM reply, bullets and numbering removed."""
    claims = []
    for line in reply.splitlines():
        text = _BULLET.sub("", line).strip()
        if _WORD.search(text):
            claims.append(text)
    return claims


def place_claims(answer: str, texts: list[str]) -> list[Claim]:
    """Each claim text placed on `answer`: at its verbatim occurrence (case-insensitive, searched after the previous
    claim first), else on the sentence sharing the most words with it (the whole answer when none shares a word)."""
    lower = answer.lower()
    sentences = sentence_spans(answer) or [(0, len(answer))]
    claims, cursor = [], 0
    for text in texts:
        needle = text.strip().rstrip(".!?").lower()
        at = lower.find(needle, cursor) if needle else -1
        if at < 0 and needle:
            at = lower.find(needle)
        if at >= 0:
            claims.append(Claim(text, at, at + len(needle)))
            cursor = at + len(needle)
            continue
        words = set(_WORD.findall(needle))
        overlaps = [len(words & set(_WORD.findall(lower[s:e]))) for s, e in sentences]
        best = max(range(len(sentences)), key=lambda k: overlaps[k])
        start, end = sentences[best] if overlaps[best] > 0 else (0, len(answer))
        claims.append(Claim(text, start, end))
    return claims


class LLMClaimSplitter:
    """RLAIF-V's divide step with any `generators` backend and a prompt with {question} and {answer}."""

    def __init__(self, generator, prompt: str = CLAIMS_PROMPT):
        self.generator = generator
        self.prompt = prompt

    def split_many(self, items: list[tuple[str, str]]) -> list[list[Claim]]:
        """`items`: (question, answer) pairs -> the claims of each answer."""
        prompts = [self.prompt.format(question=q, answer=" ".join(a.split()[:MAX_ANSWER_WORDS])) for q, a in items]
        replies = self.generator.complete(prompts, desc="claims")
        return [place_claims(a, parse_claim_lines(r)) for (_, a), r in zip(items, replies, strict=True)]


class RuleClaimSplitter:
    def split_many(self, items: list[tuple[str, str]]) -> list[list[Claim]]:
        return [split_claims(answer) for _, answer in items]
