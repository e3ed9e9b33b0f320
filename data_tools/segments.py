"""Changed segments of a corrected answer: a word-level diff turned into character spans.

The diff runs on *units*, not characters or tokens, so that one converted dataset serves any tokenizer:

- a word: a run of letters, digits, underscores and combining marks (``café``, ``e\u0301``, ``हिन्दी``, ``x_1``);
- a CJK character (Han, Hiragana, Katakana): those scripts put no spaces between words, so each character is a unit;
- a single punctuation mark or symbol, with the code points that extend it into one visible character (emoji
  modifiers, variation selectors, zero-width-joiner sequences, keycaps, flags).

Whitespace separates units and is never a unit itself, so whitespace differences alone never create a change.
Units compare exactly (a case-only change is a change), after Unicode NFC normalisation (a composed and a
decomposed accent are the same text).

`diff_spans` returns, for each side, one ``[start, end)`` character span per maximal run of changed units: from the
start of the run's first unit to the end of its last unit, so the text under a span is exactly the changed units and
the whitespace between them.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import re
import unicodedata
import zlib
from collections import Counter
from itertools import accumulate


CHANGES_ALL = "all"
CHANGES_REPLACE_ONLY = "replace-only"
CHANGES_CHOICES = (CHANGES_ALL, CHANGES_REPLACE_ONLY)
# Correction workflows mostly *delete* hallucinated clauses; those deleted words are exactly what the rejected answer
# should be penalised for, and `replace-only` (RLHF-V's public training code) would give them weight 1.
DEFAULT_CHANGES = CHANGES_ALL

Span = list[int]

# Scripts written without spaces between words: one character is one unit.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# Code points that extend the preceding symbol into one visible character (besides combining marks).
_SYMBOL_EXTENDERS = "\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f"
_REGIONAL_INDICATOR = "\U0001f1e6-\U0001f1ff"


def _combining_mark_ranges() -> str:
    """Character-class ranges of Unicode categories Mn, Mc and Me (`re` has no \\p{M})."""
    ranges = []
    start = None
    for code_point in [*range(0x30000), *range(0xE0000, 0xE1000)]:
        is_mark = unicodedata.category(chr(code_point)) in ("Mn", "Mc", "Me")
        if is_mark and start is None:
            start = code_point
        elif not is_mark and start is not None:
            ranges.append((start, code_point - 1))
            start = None
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """(full unit regex, plain unit regex, regex finding what only the full one handles), built on first use.

    Scanning Unicode for combining marks takes ~60 ms, so it waits until a diff is needed. Each unit regex has one
    capturing group, so that `re.split` returns whitespace and units alternately.
    """
    marks = _combining_mark_ranges()
    word = rf"[^\W{_CJK}]+(?:[{marks}]+[^\W{_CJK}]*)*|[{marks}]+"  # word characters minus CJK, plus combining marks
    cjk = rf"[{_CJK}][{marks}]*"
    flag = rf"[{_REGIONAL_INDICATOR}]{{2}}"
    symbol = rf"[^\w\s](?:[{marks}{_SYMBOL_EXTENDERS}]|\u200d[^\w\s])*"
    full = re.compile(f"({word}|{cjk}|{flag}|{symbol})")
    # Text without combining marks, CJK, emoji extenders or flags splits the same with the plain regex, 4x faster.
    plain = re.compile(r"(\w+|[^\w\s])")
    special = re.compile(f"[{marks}{_CJK}{_SYMBOL_EXTENDERS}{_REGIONAL_INDICATOR}\u200d]")
    return full, plain, special


def split_units(text: str) -> tuple[list[str], list[int]]:
    """The units of `text` and their offsets: unit ``k`` is ``text[offsets[2k + 1]:offsets[2k + 2]]``.

    Splitting with a capturing regex and accumulating the part lengths keeps the whole scan in C, which matters:
    it is most of the converter's time.
    """
    full, plain, special = _patterns()
    pattern = plain if text.isascii() or special.search(text) is None else full
    parts = pattern.split(text)
    return parts[1::2], list(accumulate(map(len, parts), initial=0))


def units(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` character offsets of the units of `text`, in order."""
    unit_texts, offsets = split_units(text)
    return [(offsets[2 * k + 1], offsets[2 * k + 2]) for k in range(len(unit_texts))]


def unit_strings(text: str) -> list[str]:
    """The units of `text` as strings (what the diff compares, before normalisation)."""
    return split_units(text)[0]


def _keys(text: str, unit_texts: list[str]) -> list[str]:
    if text.isascii():
        return unit_texts
    return [unicodedata.normalize("NFC", unit) for unit in unit_texts]


# Bounds of the alignment (see `diff_unit_runs`), in units compared: rejected units x chosen units of one gap.
SENTENCE_ANCHOR_AREA = 250_000  # above this, align whole sentences first (an answer of 500 units stays below)
GAP_DIFF_AREA = 1_000_000  # an anchorless gap above this is marked changed as a whole (SequenceMatcher: ~0.2 s)
TOTAL_DIFF_AREA = 20_000_000  # unit-level work per pair on gaps above SMALL_GAP_AREA; beyond it they are marked whole
SMALL_GAP_AREA = 10_000  # gaps up to this (100 x 100 units) always get the exact diff: together at most 100 x N
# Units that end a sentence; a sentence of 32+ units also ends after a unit picked by a content hash (see _sentences)
SENTENCE_ENDS = frozenset(".!?;。！？；")
LONG_SENTENCE = 32


def diff_unit_runs(rejected_keys: list[str], chosen_keys: list[str]) -> list[tuple[int, int, int, int]]:
    """The gaps between matching units, as ``(r_start, r_end, c_start, c_end)`` unit index ranges.

    Each gap is a maximal run of changed units: consecutive gaps are separated by at least one matching unit.
    A gap is empty on one side for a pure insertion (rejected side empty) or a pure deletion (chosen side empty).

    Alignment, with its cost bounded whatever the input:
    1. The common prefix and suffix are matched (the standard diff speed-up: corrections leave most of an answer
       untouched). Where words repeat around an edit this keeps the untouched ends aligned, as a reader expects.
    2. A middle of at most `SENTENCE_ANCHOR_AREA` (rejected units x chosen units) goes to `difflib.SequenceMatcher`
       with `autojunk=False`: the exact diff, and every answer of a normal size takes this path.
    3. A larger middle is cut into sentences; the sentences that occur exactly once on each side and in the same
       order (patience diff: longest increasing subsequence, O(S log S)) are matched whole, and each gap between
       them is aligned again from step 1. A gap that has no such sentence is diffed by SequenceMatcher if it is at
       most `SMALL_GAP_AREA`, or at most `GAP_DIFF_AREA` while the pair's work on such gaps stays under
       `TOTAL_DIFF_AREA`; otherwise all of it is marked changed (more weight than needed, never less).

    Worst case for N units: O(N log N) for the anchoring, plus SequenceMatcher on at most 100 x N unit pairs in
    small gaps and `TOTAL_DIFF_AREA` in large ones (docs/converter.md gives the measured times).
    """
    runs: list[tuple[int, int, int, int]] = []
    budget = [TOTAL_DIFF_AREA]
    _align(rejected_keys, chosen_keys, 0, len(rejected_keys), 0, len(chosen_keys), runs, budget)
    return runs


def _align(rejected, chosen, r0: int, r1: int, c0: int, c1: int, runs: list, budget: list[int]) -> None:
    while r0 < r1 and c0 < c1 and rejected[r0] == chosen[c0]:
        r0, c0 = r0 + 1, c0 + 1
    while r1 > r0 and c1 > c0 and rejected[r1 - 1] == chosen[c1 - 1]:
        r1, c1 = r1 - 1, c1 - 1
    if r0 == r1 and c0 == c1:
        return
    if r0 == r1 or c0 == c1:
        runs.append((r0, r1, c0, c1))
        return
    area = (r1 - r0) * (c1 - c0)
    if area > SENTENCE_ANCHOR_AREA:
        anchors = _sentence_anchors(rejected, chosen, r0, r1, c0, c1)
        if anchors:
            for anchor_r0, anchor_r1, anchor_c0, anchor_c1 in anchors:
                _align(rejected, chosen, r0, anchor_r0, c0, anchor_c0, runs, budget)
                r0, c0 = anchor_r1, anchor_c1
            _align(rejected, chosen, r0, r1, c0, c1, runs, budget)
            return
    if area > SMALL_GAP_AREA:
        if area > GAP_DIFF_AREA or area > budget[0]:
            runs.append((r0, r1, c0, c1))
            return
        budget[0] -= area
    # autojunk=False: with autojunk, in sequences of 200+ units every unit that makes up more than 1% of the
    # sequence ("the", ",", ".") is ignored as a match anchor, so long answers get untouched common words marked as
    # changed. Disabling it keeps the diff exact; the bounds above keep it fast.
    matcher = difflib.SequenceMatcher(None, rejected[r0:r1], chosen[c0:c1], autojunk=False)
    runs.extend(
        (r0 + a0, r0 + a1, c0 + b0, c0 + b1) for tag, a0, a1, b0, b1 in matcher.get_opcodes() if tag != "equal"
    )


def _sentences(keys, start: int, end: int) -> list[tuple[int, int]]:
    """Unit ranges of the sentences in ``keys[start:end]``.

    A sentence ends after `.`, `!`, `?`, `;` (and their CJK forms). A run of 32+ units without one also ends after
    a unit whose CRC-32 is divisible by 8: boundaries chosen by content, not by position, so that an insertion does
    not shift every later boundary, and a text without punctuation still gets anchors.
    """
    ranges = []
    first = start
    for index in range(start, end):
        key = keys[index]
        if key in SENTENCE_ENDS or (
            index + 1 - first >= LONG_SENTENCE and zlib.crc32(key.encode("utf-8", "surrogatepass")) & 7 == 0
        ):
            ranges.append((first, index + 1))
            first = index + 1
    if first < end:
        ranges.append((first, end))
    return ranges


def _sentence_anchors(rejected, chosen, r0: int, r1: int, c0: int, c1: int) -> list[tuple[int, int, int, int]]:
    """Sentences unique on both sides, matched in order: the longest increasing subsequence of their positions."""
    rejected_sentences = _sentences(rejected, r0, r1)
    chosen_sentences = _sentences(chosen, c0, c1)
    rejected_texts = [tuple(rejected[a:b]) for a, b in rejected_sentences]
    chosen_texts = [tuple(chosen[a:b]) for a, b in chosen_sentences]
    rejected_counts, chosen_counts = Counter(rejected_texts), Counter(chosen_texts)
    chosen_position = {text: j for j, text in enumerate(chosen_texts) if chosen_counts[text] == 1}
    pairs = [
        (i, chosen_position[text])
        for i, text in enumerate(rejected_texts)
        if rejected_counts[text] == 1 and text in chosen_position
    ]
    # Longest increasing subsequence of the chosen positions (pairs are in rejected order), O(P log P)
    tails: list[int] = []  # tails[k]: chosen position ending the best subsequence of length k + 1
    tail_index: list[int] = []
    previous = [-1] * len(pairs)
    for index, (_, j) in enumerate(pairs):
        k = bisect.bisect_left(tails, j)
        if k == len(tails):
            tails.append(j)
            tail_index.append(index)
        else:
            tails[k], tail_index[k] = j, index
        previous[index] = tail_index[k - 1] if k else -1
    chain = []
    index = tail_index[-1] if tail_index else -1
    while index != -1:
        chain.append(pairs[index])
        index = previous[index]
    return [(*rejected_sentences[i], *chosen_sentences[j]) for i, j in reversed(chain)]


def diff_spans(rejected: str, chosen: str, changes: str = DEFAULT_CHANGES) -> tuple[list[Span], list[Span]]:
    """Changed character spans of a (rejected, chosen) answer pair: returns ``(chosen_spans, rejected_spans)``.

    Args:
        rejected: the original answer.
        chosen: the corrected answer.
        changes: ``"all"`` marks replacements, pure insertions (a span in `chosen` only) and pure deletions (a span in
            `rejected` only); ``"replace-only"`` marks only gaps that are non-empty on both sides, as RLHF-V's public
            training code does.

    Spans are ``[start, end)`` offsets, sorted, non-overlapping and non-empty; ``text[start:end]`` is exactly the
    changed units with the original whitespace between them.
    """
    chosen_spans, rejected_spans, _ = diff_pair(rejected, chosen, changes)
    return chosen_spans, rejected_spans


def diff_pair(rejected: str, chosen: str, changes: str = DEFAULT_CHANGES) -> tuple[list[Span], list[Span], int]:
    """`diff_spans` plus the number of changed runs before `changes` filters them (0: same units, nothing edited)."""
    if changes not in CHANGES_CHOICES:
        raise ValueError(f"changes must be one of {', '.join(CHANGES_CHOICES)}, got {changes!r}")
    rejected_units, rejected_offsets = split_units(rejected)
    chosen_units, chosen_offsets = split_units(chosen)
    chosen_spans: list[Span] = []
    rejected_spans: list[Span] = []
    runs = diff_unit_runs(_keys(rejected, rejected_units), _keys(chosen, chosen_units))
    for r_start, r_end, c_start, c_end in runs:
        is_replacement = r_end > r_start and c_end > c_start
        if changes == CHANGES_REPLACE_ONLY and not is_replacement:
            continue
        if r_end > r_start:
            rejected_spans.append([rejected_offsets[2 * r_start + 1], rejected_offsets[2 * r_end]])
        if c_end > c_start:
            chosen_spans.append([chosen_offsets[2 * c_start + 1], chosen_offsets[2 * c_end]])
    return chosen_spans, rejected_spans, len(runs)
