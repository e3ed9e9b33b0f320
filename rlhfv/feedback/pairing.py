"""Scored answers -> preference pairs, by the rules RLAIF-V's code applies (RLHF-V/RLAIF-V, utils/pair_construction.py,
utils/get_preference_pairs.py, utils/get_pairs_filter_shorten.py; docs/feedback.md, "Pair rules"):

1. every two answers of one instruction whose scores differ by at least `min_score_gap` form a pair, the higher score
   chosen;
2. at most `max_pairs_per_instruction` pairs per instruction, picked at random: rlhfv seeds the pick by (seed,
   instruction id), so it depends neither on the order nor on the number of other instructions; a picks file
   replays another run's picks (RLAIF-V's generator is unseeded);
3. after the cap, pairs whose two answers have the same text (once stripped) are dropped, so an instruction can end
   with fewer pairs than the cap (option `drop_identical_before_cap` drops them before the cap instead);
4. length balancing over the whole set: a pair is kept when (len_rejected - len_chosen) / len_rejected <= r, with r
   in 0, 0.02, ..., 0.98 (the floats of numpy.arange(0, 1, 0.02)) giving the smallest
   |mean len_chosen - mean len_rejected| / mean len_rejected over the kept pairs, the first such r on a tie
   (lengths in words). A ratio that keeps no pair is skipped (RLAIF-V's code divides by zero there).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


# numpy.arange(0, 1, 0.02) computes k * 0.02 for k = 0..49: the same floats, so a pair exactly at a boundary
# (e.g. excess 0.06) falls on the same side as in RLAIF-V's code
LENGTH_RATIOS = tuple(k * 0.02 for k in range(50))


@dataclass(frozen=True)
class Candidate:
    index: int | str  # the answer's key: its position among the instruction's samples, or its question_id
    text: str
    score: int


@dataclass(frozen=True)
class Pair:
    instruction_id: str
    chosen: int | str  # answer keys
    rejected: int | str
    chosen_text: str
    rejected_text: str
    chosen_score: int
    rejected_score: int

    @property
    def identical(self) -> bool:
        return self.chosen_text.strip() == self.rejected_text.strip()

    @property
    def key(self) -> tuple[str, str]:
        return str(self.chosen), str(self.rejected)


@dataclass(frozen=True)
class PairRules:
    """The pair rules; the defaults are RLAIF-V's code."""

    min_score_gap: int = 1
    max_pairs_per_instruction: int = 2
    seed: int = 0
    drop_identical_before_cap: bool = False
    length_balance: bool = True


def candidate_pairs(instruction_id: str, candidates: list[Candidate], min_score_gap: int = 1, drop_identical=False):
    """All pairs with a score gap of at least `min_score_gap`, and how many identical-text pairs were dropped
    (none unless `drop_identical`)."""
    pairs, identical = [], 0
    for i, a in enumerate(candidates):
        for b in candidates[i + 1 :]:
            if abs(a.score - b.score) < min_score_gap:
                continue
            chosen, rejected = (a, b) if a.score > b.score else (b, a)
            pair = Pair(
                instruction_id, chosen.index, rejected.index, chosen.text, rejected.text, chosen.score, rejected.score
            )
            if drop_identical and pair.identical:
                identical += 1
                continue
            pairs.append(pair)
    return pairs, identical


def cap_pairs(instruction_id: str, pairs: list[Pair], max_pairs: int, seed: int, picks=None) -> list[Pair]:
    """At most `max_pairs` of `pairs`, kept in their original order. `picks`: the (chosen, rejected) answer keys of
    the pairs to keep (a replayed pick); otherwise picked at random with a generator seeded by (seed, instruction
    id). `max_pairs` <= 0 keeps all."""
    if max_pairs <= 0 or len(pairs) <= max_pairs:
        return list(pairs)
    if picks is not None:
        wanted = {(str(c), str(r)) for c, r in picks}
        kept = [p for p in pairs if p.key in wanted]
        if len(kept) != len(wanted) or len(kept) != max_pairs:
            missing = sorted(wanted - {p.key for p in kept})
            raise ValueError(
                f"instruction {instruction_id}: the picks must name {max_pairs} of its candidate pairs; "
                f"got {len(wanted)}" + (f", not candidates: {missing}" if missing else "")
            )
        return kept
    rng = random.Random(f"{seed}:{instruction_id}")
    picked = sorted(rng.sample(range(len(pairs)), max_pairs))
    return [pairs[k] for k in picked]


def words(text: str) -> int:
    return len(text.split())


def length_gap(pairs: list[Pair]) -> float:
    """|mean chosen length - mean rejected length| / mean rejected length (words), as RLAIF-V's
    `cal_pair_search_difflen`; inf for no pairs or no rejected words."""
    if not pairs:
        return float("inf")
    chosen = sum(words(p.chosen_text) for p in pairs) / len(pairs)
    rejected = sum(words(p.rejected_text) for p in pairs) / len(pairs)
    return abs(chosen - rejected) / rejected if rejected else float("inf")


def _excess(pair: Pair) -> float:
    rejected = words(pair.rejected_text)
    return (rejected - words(pair.chosen_text)) / max(rejected, 1)


def balance_lengths(pairs: list[Pair]):
    """(kept pairs, chosen ratio r, gap after) by the search above; None for r when no ratio keeps a pair."""
    best = ([], None, float("inf"))
    for ratio in LENGTH_RATIOS:
        kept = [p for p in pairs if not _excess(p) > ratio]
        gap = length_gap(kept)
        if gap < best[2]:
            best = (kept, ratio, gap)
    return best


def build_pairs(groups: dict[str, list[Candidate]], rules: PairRules, picks: dict | None = None, cap_group=None):
    """Rules 1-4 over every instruction's scored answers -> (pairs, stats, length ratio).

    `cap_group(instruction id)`: the group the cap counts pairs in (default: the instruction; RLAIF-V's code caps
    per ds_question_id, which several questions about one image share). `picks`: cap group -> the (chosen,
    rejected) keys to keep; every group with more pairs than the cap must have an entry (KeyError otherwise)."""
    stats = {"candidate_pairs": 0, "identical_dropped": 0, "over_cap_dropped": 0, "length_dropped": 0}
    by_cap_group: dict[str, list[Pair]] = {}
    for instruction_id, candidates in groups.items():
        found, identical = candidate_pairs(
            instruction_id, candidates, rules.min_score_gap, rules.drop_identical_before_cap
        )
        stats["candidate_pairs"] += len(found) + identical
        stats["identical_dropped"] += identical
        group = cap_group(instruction_id) if cap_group else instruction_id
        by_cap_group.setdefault(group, []).extend(found)
    capped = []
    for group, found in by_cap_group.items():
        over = 0 < rules.max_pairs_per_instruction < len(found)
        wanted = picks[group] if picks is not None and over else None
        kept = cap_pairs(group, found, rules.max_pairs_per_instruction, rules.seed, wanted)
        stats["over_cap_dropped"] += len(found) - len(kept)
        capped += kept
    pairs = [p for p in capped if not p.identical]
    stats["identical_dropped"] += len(capped) - len(pairs)
    ratio = None
    if rules.length_balance:
        balanced, ratio, _ = balance_lengths(pairs)
        stats["length_dropped"] = len(pairs) - len(balanced)
        pairs = balanced
    stats["pairs"] = len(pairs)
    return pairs, stats, ratio
