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

import difflib
import functools
import re
import unicodedata
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


def diff_unit_runs(rejected_keys: list[str], chosen_keys: list[str]) -> list[tuple[int, int, int, int]]:
    """The gaps between matching units, as ``(r_start, r_end, c_start, c_end)`` unit index ranges.

    Each gap is a maximal run of changed units: consecutive gaps are separated by at least one matching unit.
    A gap is empty on one side for a pure insertion (rejected side empty) or a pure deletion (chosen side empty).
    """
    n_rejected, n_chosen = len(rejected_keys), len(chosen_keys)
    # Match the common prefix and suffix first (the standard diff speed-up): corrections leave most of the answer
    # untouched, so SequenceMatcher only sees the short edited middle. Where words repeat around an edit this keeps
    # the untouched ends aligned, which is also what a reader expects.
    prefix = 0
    limit = min(n_rejected, n_chosen)
    while prefix < limit and rejected_keys[prefix] == chosen_keys[prefix]:
        prefix += 1
    suffix = 0
    limit -= prefix
    while suffix < limit and rejected_keys[n_rejected - 1 - suffix] == chosen_keys[n_chosen - 1 - suffix]:
        suffix += 1
    middle_rejected = rejected_keys[prefix : n_rejected - suffix]
    middle_chosen = chosen_keys[prefix : n_chosen - suffix]
    if not middle_rejected and not middle_chosen:
        return []
    if not middle_rejected or not middle_chosen:
        return [(prefix, n_rejected - suffix, prefix, n_chosen - suffix)]
    # autojunk=False: with autojunk, in sequences of 200+ units every unit that makes up more than 1% of the
    # sequence ("the", ",", ".") is ignored as a match anchor, so long answers get untouched common words marked as
    # changed. Disabling it keeps the diff exact; the prefix/suffix trimming above keeps it fast.
    matcher = difflib.SequenceMatcher(None, middle_rejected, middle_chosen, autojunk=False)
    return [
        (prefix + r_start, prefix + r_end, prefix + c_start, prefix + c_end)
        for tag, r_start, r_end, c_start, c_end in matcher.get_opcodes()
        if tag != "equal"
    ]


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
