"""Answer score = minus the number of its claims the labeler judged false (RLAIF-V). An answer is left unscored, with
its reason, when it has no claims, when not every claim got a verdict, or when two of its claims ask the same
question: RLAIF-V's code keys an answer's judgements by question text, so such an answer has fewer judgements than
claims and its pairs are dropped (utils/get_preference_pairs.py). `keep_repeated_claims` keeps it (a deliberate
difference, docs/feedback.md)."""

from __future__ import annotations


NO_CLAIMS = "no_claims"
UNLABELED_CLAIMS = "unlabeled_claims"
REPEATED_CLAIMS = "repeated_claims"


def score_answer(
    verdicts: list[bool | None], questions: list[str] | None = None, keep_repeated_claims: bool = False
) -> tuple[int | None, str | None]:
    """`verdicts`: one per claim, True (judged true), False (judged false) or None (no usable judgement);
    `questions`: the claims' yes/no questions, in the same order.

    Returns (score, None), or (None, reason) for an answer that cannot be scored."""
    if not verdicts:
        return None, NO_CLAIMS
    if any(v is None for v in verdicts):
        return None, UNLABELED_CLAIMS
    if questions is not None and not keep_repeated_claims and len(set(questions)) != len(questions):
        return None, REPEATED_CLAIMS
    return -sum(1 for v in verdicts if v is False), None
