"""Answer score = minus the number of its claims the labeler judged false (RLAIF-V). An answer is left unscored,
with its reason, when it has no claims or when not every claim got a verdict (RLAIF-V drops answers whose judgement
count differs from their claim count)."""

from __future__ import annotations


NO_CLAIMS = "no_claims"
UNLABELED_CLAIMS = "unlabeled_claims"


def score_answer(verdicts: list[bool | None]) -> tuple[int | None, str | None]:
    """`verdicts`: one per claim, True (judged true), False (judged false) or None (no usable judgement).

    Returns (score, None), or (None, reason) for an answer that cannot be scored."""
    if not verdicts:
        return None, NO_CLAIMS
    if any(v is None for v in verdicts):
        return None, UNLABELED_CLAIMS
    return -sum(1 for v in verdicts if v is False), None
