"""The word-level diff: hard cases, both `changes` modes, and a seeded round-trip property against known edits."""

import difflib
import random

import pytest

from data_tools import segments
from data_tools.contract import check_spans
from data_tools.segments import diff_pair, diff_spans, unit_strings


def texts(text, spans):
    return [text[start:end] for start, end in spans]


def span_of(text, word, occurrence=0):
    """[start, end) of the `occurrence`-th appearance of `word` in `text` (-1: the last)."""
    starts = [i for i in range(len(text)) if text.startswith(word, i)]
    start = starts[occurrence]
    return [start, start + len(word)]


def test_replacement_marks_the_word_on_both_sides():
    rejected, chosen = "The car is red.", "The car is blue."
    assert diff_spans(rejected, chosen) == ([span_of(chosen, "blue")], [span_of(rejected, "red")])


def test_repeated_words_mark_the_right_occurrence():
    rejected, chosen = "a cat and a cat", "a cat and a dog"
    chosen_spans, rejected_spans = diff_spans(rejected, chosen)
    assert rejected_spans == [span_of(rejected, "cat", -1)] == [[12, 15]]
    assert chosen_spans == [span_of(chosen, "dog")]


def test_repeated_words_deleted_in_the_middle():
    rejected, chosen = "the dog saw the dog and the cat", "the dog saw the cat"
    chosen_spans, rejected_spans = diff_spans(rejected, chosen)
    assert chosen_spans == []
    # one run of deleted units; whichever "the dog" copy is taken, the remaining text must equal the chosen one
    assert len(rejected_spans) == 1
    start, end = rejected_spans[0]
    assert unit_strings(rejected[:start] + rejected[end:]) == unit_strings(chosen)
    assert unit_strings(rejected[start:end]) in (["dog", "and", "the"], ["the", "dog", "and"])


def test_punctuation_is_its_own_unit():
    rejected, chosen = "Hello, world! It is 5 p.m.", "Hello world! It is 5 p.m.?"
    chosen_spans, rejected_spans = diff_spans(rejected, chosen)
    assert texts(rejected, rejected_spans) == [","]
    assert texts(chosen, chosen_spans) == ["?"]
    # replace-only ignores a pure deletion and a pure insertion
    assert diff_spans(rejected, chosen, "replace-only") == ([], [])


def test_punctuation_replacement_inside_a_word_sequence():
    rejected, chosen = "It's red.", "It's red!"
    assert diff_spans(rejected, chosen) == ([[8, 9]], [[8, 9]])


def test_case_only_change_is_a_change():
    rejected, chosen = "The Cat sat.", "The cat sat."
    assert diff_spans(rejected, chosen) == ([span_of(chosen, "cat")], [span_of(rejected, "Cat")])


def test_accents_are_letters_and_accent_changes_count():
    rejected, chosen = "Le café est très chaud.", "Le cafe est très froid."
    chosen_spans, rejected_spans = diff_spans(rejected, chosen)
    assert texts(rejected, rejected_spans) == ["café", "chaud"]
    assert texts(chosen, chosen_spans) == ["cafe", "froid"]


def test_composed_and_decomposed_accents_are_the_same_text():
    composed, decomposed = "un café noir", "un cafe\u0301 noir"
    assert diff_spans(composed, decomposed) == ([], [])
    # and a decomposed accent stays inside its word
    chosen_spans, rejected_spans = diff_spans("un cafe\u0301 noir", "un the\u0301 noir")
    assert texts("un the\u0301 noir", chosen_spans) == ["the\u0301"]
    assert texts("un cafe\u0301 noir", rejected_spans) == ["cafe\u0301"]


def test_cjk_characters_are_units():
    rejected, chosen = "我喜欢猫和狗。", "我喜欢猫和鸟。"
    chosen_spans, rejected_spans = diff_spans(rejected, chosen)
    assert texts(rejected, rejected_spans) == ["狗"]
    assert texts(chosen, chosen_spans) == ["鸟"]
    mixed_rejected, mixed_chosen = "Tokyo是东京", "Kyoto是东京"
    chosen_spans, rejected_spans = diff_spans(mixed_rejected, mixed_chosen)
    assert texts(mixed_rejected, rejected_spans) == ["Tokyo"]


def test_emoji_sequences_are_single_units():
    family_girl, family_boy = (
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",
        "\U0001f468\u200d\U0001f469\u200d\U0001f466",
    )
    thumbs_light, thumbs_dark = "\U0001f44d\U0001f3fb", "\U0001f44d\U0001f3ff"
    rejected = f"We saw {family_girl} and {thumbs_light} here \U0001f34e."
    chosen = f"We saw {family_boy} and {thumbs_dark} here \U0001f34f."
    chosen_spans, rejected_spans = diff_spans(rejected, chosen)
    # the whole sequence is marked, never half of one
    assert texts(rejected, rejected_spans) == [family_girl, thumbs_light, "\U0001f34e"]
    assert texts(chosen, chosen_spans) == [family_boy, thumbs_dark, "\U0001f34f"]


def test_complete_rewrite_is_one_span_per_side():
    rejected, chosen = "  A red bus drives by.\n", "Two cats sleep!"
    assert diff_spans(rejected, chosen) == ([[0, len(chosen)]], [[2, len(rejected) - 1]])


@pytest.mark.parametrize("changes", ["all", "replace-only"])
def test_insertion_only(changes):
    rejected, chosen = "There is a car.", "There is a small red car."
    chosen_spans, rejected_spans = diff_spans(rejected, chosen, changes)
    assert rejected_spans == []
    assert chosen_spans == ([[chosen.index("small"), chosen.index("red") + 3]] if changes == "all" else [])


@pytest.mark.parametrize("changes", ["all", "replace-only"])
def test_deletion_only(changes):
    rejected, chosen = "A man holds a kite and a red umbrella.", "A man holds a kite."
    chosen_spans, rejected_spans = diff_spans(rejected, chosen, changes)
    assert chosen_spans == []
    if changes == "all":
        assert texts(rejected, rejected_spans) == ["and a red umbrella"]
    else:
        assert rejected_spans == []


def test_replace_only_keeps_replacements_and_drops_the_rest():
    rejected = "A big dog sits on a green mat near the door."
    chosen = "A dog sits on a blue mat near the old door."
    all_chosen, all_rejected = diff_spans(rejected, chosen, "all")
    assert texts(rejected, all_rejected) == ["big", "green"]
    assert texts(chosen, all_chosen) == ["blue", "old"]
    replace_chosen, replace_rejected = diff_spans(rejected, chosen, "replace-only")
    assert texts(rejected, replace_rejected) == ["green"]
    assert texts(chosen, replace_chosen) == ["blue"]


def test_whitespace_only_differences_make_no_span():
    rejected, chosen = "A  red\tcar ,\n parked.", "A red car, parked."
    assert diff_spans(rejected, chosen) == ([], [])
    assert diff_pair(rejected, chosen)[2] == 0  # no changed run at all
    assert diff_pair("A red car.", "A car.", "replace-only")[2] == 1  # a run exists, the mode filters it


def test_empty_and_unknown_mode():
    assert diff_spans("", "") == ([], [])
    assert diff_spans("", "New text.") == ([[0, 9]], [])
    with pytest.raises(ValueError, match="replace-only"):
        diff_spans("a", "b", changes="replacements")


def test_very_long_answers_are_exact():
    # 5,000 words, half of them a handful of common words: the case where SequenceMatcher's autojunk heuristic
    # (on by default) stops using "the", "," ... as anchors and marks untouched words
    rng = random.Random(29)
    common = ["the", "a", "of", "and", ",", ".", "is", "on"]
    words = [rng.choice(common) if rng.random() < 0.5 else f"w{rng.randrange(400)}" for _ in range(5000)]
    positions = sorted(rng.sample(range(5000), 5))
    edited = list(words)
    for position in positions:
        edited[position] = f"NEW{position}"
    rejected, chosen = " ".join(words), " ".join(edited)
    chosen_spans, rejected_spans = diff_spans(rejected, chosen)
    assert texts(chosen, chosen_spans) == [f"NEW{position}" for position in positions]
    assert texts(rejected, rejected_spans) == [words[position] for position in positions]
    # the same diff with autojunk marks more units: this test would catch it being switched back on
    junky = difflib.SequenceMatcher(None, words, edited, autojunk=True).get_opcodes()
    assert sum(i2 - i1 for tag, i1, i2, _, _ in junky if tag != "equal") > len(positions)


def test_check_spans_rejects_broken_spans():
    text = "A red car."
    assert check_spans([[2, 5]], text, "row 0", "chosen_spans") == [(2, 5)]
    for spans, message in [
        ([[3, 5]], r"\[3, 5\) \('ed'\) starts or ends inside a word"),
        ([[2, 4]], "inside a word"),
        ([[2, 5], [4, 9]], "overlaps"),
        ([[6, 40]], "outside"),
        ([[5, 5]], "empty"),
        ([[2, 5, 7]], "not a \\[start, end\\) pair"),
        ([[2.0, 5]], "two integers"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_spans(spans, text, "row 0", "chosen_spans")
    # given only the length, the bounds are checked and unit boundaries are not
    assert check_spans([[3, 5]], len(text), "row 0", "chosen_spans") == [(3, 5)]


# ------------------------------------------------------------------------------------------ round-trip property
WORDS = ["the", "cat", "sat", "on", "mat", "café", "naïve", "x_", "Über", "a", "red"]
PUNCTUATION = [",", ".", "!", "?", ";", "(", ")", "'", "—"]
SEPARATORS = [" ", " ", " ", "  ", "\n", "\t", " \n "]


def _word(rng, index):
    """A unit that occurs once: a Latin word with its index, a CJK character or an emoji chosen by the index."""
    kind = rng.random()
    if kind < 0.15:
        return chr(0x4E00 + index)
    if kind < 0.25:
        return chr(0x1F400 + index)
    return f"{rng.choice(WORDS)}{index}"


def _render(units, rng):
    """Join units with random whitespace (sometimes none next to punctuation); return text and unit offsets."""
    text, offsets = "", []
    for index, unit in enumerate(units):
        if index:
            glue_free = unit in PUNCTUATION or units[index - 1] in PUNCTUATION
            # two word units must not touch (they would merge into one word)
            text += "" if glue_free and rng.random() < 0.5 else rng.choice(SEPARATORS)
        offsets.append((len(text), len(text) + len(unit)))
        text += unit
    return text, offsets


def _random_edit_case(rng):
    """A rejected answer (as units), its corrected version, and the edits: (kind, start, end, new units).

    Every word occurs once and new words never occur in the original, so each edit has exactly one alignment;
    punctuation may repeat, so replaced or deleted ranges start and end on words, punctuation never touches
    punctuation, and at least two untouched units (one of them a word) separate edits.
    """
    length = rng.randint(5, 60)
    units = []
    for index in range(length):
        after_punctuation = units and units[-1] in PUNCTUATION
        units.append(rng.choice(PUNCTUATION) if rng.random() < 0.2 and not after_punctuation else _word(rng, index))
    edits, position, counter = [], rng.randint(0, 2), 0
    while position < length:
        kind = rng.choice(["replace", "insert", "delete"])
        size = rng.randint(1, 3)
        new = [chr(0x9000 + 4 * counter + k) if rng.random() < 0.2 else f"new{counter}_{k}" for k in range(size)]
        if kind == "insert":
            end = position
        else:
            while position < length and units[position] in PUNCTUATION:
                position += 1
            end = min(length, position + size)
            while end > position and units[end - 1] in PUNCTUATION:
                end -= 1
            if end == position:
                break
        edits.append((kind, position, end, [] if kind == "delete" else new))
        counter += 1
        position = end + rng.randint(2, 8)
    edited, cursor = [], 0
    for _kind, start, end, new in edits:
        edited += units[cursor:start] + new
        cursor = end
    edited += units[cursor:]
    return units, edited, edits


@pytest.mark.parametrize("path", ["direct", "sentences"])
@pytest.mark.parametrize("seed", range(300))
def test_spans_round_trip_random_edits(seed, path, monkeypatch):
    if path == "sentences":
        # the bounded path that long answers take: whole sentences anchored first, then words inside the gaps
        monkeypatch.setattr(segments, "SENTENCE_ANCHOR_AREA", 0)
    rng = random.Random(seed)
    units, edited, edits = _random_edit_case(rng)
    rejected, rejected_offsets = _render(units, rng)
    chosen, chosen_offsets = _render(edited, rng)
    # the text each edit touched, cut from the strings as they were built (not from the units the code finds)
    expected_rejected, expected_chosen, replaced = [], [], []
    shift = 0
    for kind, start, end, new in edits:
        if kind in ("replace", "delete"):
            expected_rejected.append(rejected[rejected_offsets[start][0] : rejected_offsets[end - 1][1]])
        if kind in ("replace", "insert"):
            first, last = start + shift, start + shift + len(new) - 1
            expected_chosen.append(chosen[chosen_offsets[first][0] : chosen_offsets[last][1]])
        if kind == "replace":
            replaced.append((expected_rejected[-1], expected_chosen[-1]))
        shift += len(new) - (end - start)
    chosen_spans, rejected_spans = diff_spans(rejected, chosen, "all")
    check_spans(rejected_spans, rejected, "row", "rejected_spans")
    check_spans(chosen_spans, chosen, "row", "chosen_spans")
    assert texts(rejected, rejected_spans) == expected_rejected
    assert texts(chosen, chosen_spans) == expected_chosen
    chosen_spans, rejected_spans = diff_spans(rejected, chosen, "replace-only")
    assert list(zip(texts(rejected, rejected_spans), texts(chosen, chosen_spans), strict=True)) == replaced


def test_units_follow_the_documented_rules():
    assert unit_strings("Hello,  wörld!! x_1 (42)") == ["Hello", ",", "wörld", "!", "!", "x_1", "(", "42", ")"]
    assert unit_strings("日本語です") == ["日", "本", "語", "で", "す"]
    assert unit_strings("\U0001f1eb\U0001f1f7\U0001f1e9\U0001f1ea") == ["\U0001f1eb\U0001f1f7", "\U0001f1e9\U0001f1ea"]
    assert segments.DEFAULT_CHANGES == "all"


def test_sentence_anchoring_finds_sentences_and_keeps_the_exact_diff_between_them(monkeypatch):
    monkeypatch.setattr(segments, "SENTENCE_ANCHOR_AREA", 0)
    rejected = "A cat sat. The dog ran. A red car. The dog ran. Birds sang."
    chosen = "A cat sat. The dog ran. A blue car. The dog ran. Birds sang loudly."
    # "The dog ran." occurs twice on each side, so it is no anchor; the unique sentences are
    assert segments._sentence_anchors(unit_strings(rejected), unit_strings(chosen), 0, 19, 0, 20) == [
        (0, 4, 0, 4)  # "A cat sat." (the last sentence differs: "Birds sang." vs "Birds sang loudly.")
    ]
    chosen_spans, rejected_spans = diff_spans(rejected, chosen)
    assert texts(chosen, chosen_spans) == ["blue", "loudly"]
    assert texts(rejected, rejected_spans) == ["red"]


def test_a_gap_over_the_bounds_is_marked_whole(monkeypatch):
    """No sentence anchors and a gap beyond the limits: marked changed whole, a superset of the exact spans."""
    monkeypatch.setattr(segments, "SENTENCE_ANCHOR_AREA", 0)
    monkeypatch.setattr(segments, "SMALL_GAP_AREA", 0)
    monkeypatch.setattr(segments, "GAP_DIFF_AREA", 4)
    rejected, chosen = "a b c d e f", "a b X d e Y"
    chosen_spans, rejected_spans = diff_spans(rejected, chosen)
    assert texts(chosen, chosen_spans) == ["X d e Y"] and texts(rejected, rejected_spans) == ["c d e f"]


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_five_megabyte_pair_with_12000_scattered_edits_is_fast_and_exact():
    """Long answers used to take minutes (40k words: 110 s). Every edit must still be marked, and only edits."""
    import time

    rng = random.Random(0)
    vocabulary = [f"w{index}" for index in range(3000)]
    words, size = [], 0
    while size < 5_000_000:
        sentence = [*rng.choices(vocabulary, k=rng.randint(6, 16)), "."]
        words += sentence
        size += sum(map(len, sentence)) + len(sentence)
    edited = list(words)
    positions = sorted(rng.sample(range(len(words)), 12_000), reverse=True)
    for position in positions:
        if words[position] != ".":
            edited[position] = f"NEW{position}"  # a replaced word
    rejected, chosen = " ".join(words), " ".join(edited)
    start = time.perf_counter()
    chosen_spans, rejected_spans = diff_spans(rejected, chosen)
    elapsed = time.perf_counter() - start
    assert elapsed < 60, f"{elapsed:.1f} s"
    # independent check: the chosen spans hold exactly the NEW words, each replaced word is marked on the other side
    marked = [unit for text in texts(chosen, chosen_spans) for unit in text.split()]
    expected = [word for word in edited if word.startswith("NEW")]
    assert marked == expected
    assert [unit for text in texts(rejected, rejected_spans) for unit in text.split()] == [
        word for word, new in zip(words, edited, strict=True) if new.startswith("NEW")
    ]
