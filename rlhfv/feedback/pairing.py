"""Scored answers of one instruction -> preference pairs, with RLAIF-V's rules:

- every two answers whose scores differ by at least `min_score_gap` form a pair, the higher score chosen;
- pairs whose two answers have the same text are dropped (counted);
- at most `max_pairs_per_instruction` pairs per instruction, picked at random (seeded per instruction, so the pick
  does not depend on the order or number of other instructions);
- length balancing over the whole set: a pair is kept when (len_rejected - len_chosen) / len_rejected <= r, with r
  searched over 0, 0.02, ..., 0.98 for the smallest relative gap |mean len_rejected - mean len_chosen| /
  mean len_chosen of the kept pairs (lengths in words); on a tie the largest r wins, keeping the most pairs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    index: int  # the answer's position among the instruction's samples
    text: str
    score: int


@dataclass(frozen=True)
class Pair:
    instruction_id: str
    chosen: int  # answer indices
    rejected: int
    chosen_text: str
    rejected_text: str
    chosen_score: int
    rejected_score: int


def candidate_pairs(instruction_id: str, candidates: list[Candidate], min_score_gap: int = 1):
    """All pairs with a score gap of at least `min_score_gap`, and how many identical-text pairs were dropped."""
    pairs, identical = [], 0
    for i, a in enumerate(candidates):
        for b in candidates[i + 1 :]:
            if abs(a.score - b.score) < min_score_gap:
                continue
            chosen, rejected = (a, b) if a.score > b.score else (b, a)
            if chosen.text.strip() == rejected.text.strip():
                identical += 1
                continue
            pairs.append(
                Pair(
                    instruction_id,
                    chosen.index,
                    rejected.index,
                    chosen.text,
                    rejected.text,
                    chosen.score,
                    rejected.score,
                )  # fmt: skip
            )
    return pairs, identical


def cap_pairs(instruction_id: str, pairs: list[Pair], max_pairs: int, seed: int) -> list[Pair]:
    """At most `max_pairs` of `pairs`, picked at random with a generator seeded by (seed, instruction id); kept in
    their original order. `max_pairs` <= 0 keeps all."""
    if max_pairs <= 0 or len(pairs) <= max_pairs:
        return list(pairs)
    rng = random.Random(f"{seed}:{instruction_id}")
    picked = sorted(rng.sample(range(len(pairs)), max_pairs))
    return [pairs[k] for k in picked]


def words(text: str) -> int:
    return len(text.split())


def length_gap(pairs: list[Pair]) -> float:
    """|mean rejected length - mean chosen length| / mean chosen length (words); inf for no pairs."""
    if not pairs:
        return float("inf")
    chosen = sum(words(p.chosen_text) for p in pairs) / len(pairs)
    rejected = sum(words(p.rejected_text) for p in pairs) / len(pairs)
    return abs(rejected - chosen) / max(chosen, 1e-9)


def _excess(pair: Pair) -> float:
    rejected = words(pair.rejected_text)
    return (rejected - words(pair.chosen_text)) / max(rejected, 1)


def balance_lengths(pairs: list[Pair], step: float = 0.02, max_ratio: float = 0.98):
    """(kept pairs, chosen ratio r, gap after) by the search above; no pairs in, no pairs out (r = None)."""
    if not pairs:
        return [], None, float("inf")
    best = None
    for k in range(int(round(max_ratio / step)) + 1):
        ratio = round(k * step, 6)
        kept = [p for p in pairs if _excess(p) <= ratio + 1e-12]
        gap = length_gap(kept)
        if best is None or gap <= best[2]:
            best = (kept, ratio, gap)
    return best
