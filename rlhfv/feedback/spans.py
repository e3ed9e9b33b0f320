"""Dense segments from AI feedback: the character spans of the rejected answer's false claims.

Rejected side: the union of the spans of its claims judged false, snapped outward to whole word/punctuation units
(the dataset contract) and merged where they touch or overlap. Chosen side, by `chosen_spans`:
- "none" (default): no spans, every chosen token keeps weight 1. A sampled chosen answer is not a correction of the
  rejected one, so nothing in it marks the fix; the dense weight goes where the labeler found the error.
- "unshared_true": the chosen answer's claims judged true whose text the rejected answer does not claim (what the
  better answer says that the worse one does not).
"""

from __future__ import annotations

from data_tools.segments import units


CHOSEN_SPAN_MODES = ("none", "unshared_true")


def snap_to_units(text: str, start: int, end: int) -> tuple[int, int]:
    """The smallest span of whole units of `text` covering [start, end)."""
    covering = [(s, e) for s, e in units(text) if s < end and e > start]
    if not covering:
        return start, end
    return covering[0][0], covering[-1][1]


def merge_spans(text: str, spans: list[tuple[int, int]]) -> list[list[int]]:
    """Snapped, sorted, merged spans (touching or overlapping spans become one)."""
    snapped = sorted(snap_to_units(text, s, e) for s, e in spans if e > s)
    merged: list[list[int]] = []
    for start, end in snapped:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def false_claim_spans(text: str, claims: list[dict], verdicts: list[bool]) -> list[list[int]]:
    """Spans of `text` covered by the claims judged false (`claims`: dicts with start, end)."""
    return merge_spans(text, [(c["start"], c["end"]) for c, v in zip(claims, verdicts, strict=True) if v is False])


def _norm(claim: str) -> str:
    return " ".join(claim.lower().split()).rstrip(".!?")


def chosen_side_spans(text: str, claims: list[dict], verdicts: list[bool], rejected_claims: list[dict], mode: str):
    if mode == "none":
        return []
    if mode != "unshared_true":
        raise ValueError(f"chosen_spans must be one of {CHOSEN_SPAN_MODES}, got {mode!r}")
    theirs = {_norm(c["text"]) for c in rejected_claims}
    return merge_spans(
        text,
        [
            (c["start"], c["end"])
            for c, v in zip(claims, verdicts, strict=True)
            if v is True and _norm(c["text"]) not in theirs
        ],
    )
