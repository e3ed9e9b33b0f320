"""The pure stages of `rlhfv feedback`, on hand-computed cases: claim splitting and placement, questions, scoring,
RLAIF-V's pair rules (gap, identical drop, cap, length balancing), false-claim spans, and the dataset written for
`rlhfv train`."""

import pytest

from rlhfv.feedback.claims import parse_claim_lines, place_claims, split_claims
from rlhfv.feedback.pairing import Candidate, Pair, balance_lengths, candidate_pairs, cap_pairs, length_gap
from rlhfv.feedback.prompts import load_prompt
from rlhfv.feedback.questions import finish_question, rule_question
from rlhfv.feedback.scoring import NO_CLAIMS, REPEATED_CLAIMS, UNLABELED_CLAIMS, score_answer
from rlhfv.feedback.spans import chosen_side_spans, false_claim_spans, merge_spans


ANSWER = "There is a red ball on the left, and a blue cup sits at the right. A kite flies!  It is sunny; two birds."


def test_rule_splitter_gives_sentences_and_clauses_with_exact_spans():
    claims = split_claims(ANSWER)
    # offsets counted by hand: "There is a red ball on the left" = 31 characters, ", and " = 6, ...
    assert [(c.text, c.start, c.end) for c in claims] == [
        ("There is a red ball on the left", 0, 31),
        ("a blue cup sits at the right", 37, 66),
        ("A kite flies", 67, 80),
        ("It is sunny", 82, 93),
        ("two birds", 95, 105),
    ]
    assert ANSWER[37:66] == "a blue cup sits at the right."
    assert ANSWER[95:105] == "two birds."


@pytest.mark.parametrize("answer", ["", "   ", "...", "!?"])
def test_an_answer_without_words_has_no_claims(answer):
    assert split_claims(answer) == []


def test_llm_claims_are_placed_verbatim_or_on_the_closest_sentence():
    reply = "1. A red ball is on the left\n- a kite flies\n\n* Sunny weather today\nBananas everywhere"
    texts = parse_claim_lines(reply)
    assert texts == ["A red ball is on the left", "a kite flies", "Sunny weather today", "Bananas everywhere"]
    claims = place_claims(ANSWER, texts)
    # not verbatim: sentence 1 shares {red, ball, on, the, left} -> the first sentence, with its period
    assert (claims[0].start, claims[0].end) == (0, 66)
    # verbatim, case-insensitive: "A kite flies" at 67
    assert (claims[1].start, claims[1].end) == (67, 79)
    # shares only {sunny}, with the third sentence (it is "It is sunny; two birds.")
    assert (claims[2].start, claims[2].end) == (82, 105)
    # shares no word: the whole answer
    assert (claims[3].start, claims[3].end) == (0, len(ANSWER))


def test_questions_rule_based_and_from_an_llm_reply():
    assert (
        rule_question(" a red ball ")
        == 'Is the following statement about the image true? "a red ball" Please answer yes or no.'
    )
    assert (
        finish_question("Is there a red ball?\nextra", "a red ball") == "Is there a red ball? Please answer yes or no."
    )
    assert finish_question("Is it red? Answer yes or no.", "x") == "Is it red? Answer yes or no."
    assert finish_question("  \n", "a red ball") == rule_question("a red ball")


def test_prompt_files_must_keep_their_placeholders(tmp_path):
    from data_tools.errors import CommandError

    good = tmp_path / "good.txt"
    good.write_text("Split {answer} (asked: {question})")
    assert load_prompt(good, "default", ("question", "answer")) == "Split {answer} (asked: {question})"
    assert load_prompt(None, "default", ("question",)) == "default"
    missing = tmp_path / "missing.txt"
    missing.write_text("Split {answer}")
    with pytest.raises(CommandError, match=r"placeholder \{question\}"):
        load_prompt(missing, "default", ("question", "answer"))
    extra = tmp_path / "extra.txt"
    extra.write_text("Split {answer} {question} {other}")
    with pytest.raises(CommandError, match="other than"):
        load_prompt(extra, "default", ("question", "answer"))


def test_score_is_minus_the_false_claims_and_unscorable_answers_say_why():
    assert score_answer([True, False, True, False]) == (-2, None)
    assert score_answer([True]) == (0, None)
    assert score_answer([]) == (None, NO_CLAIMS)
    assert score_answer([True, None]) == (None, UNLABELED_CLAIMS)
    # RLAIF-V keys judgements by question text: a repeated question leaves fewer judgements than claims
    assert score_answer([True, False, True], ["q1", "q2", "q1"]) == (None, REPEATED_CLAIMS)
    assert score_answer([True, False, True], ["q1", "q2", "q1"], keep_repeated_claims=True) == (-1, None)
    assert score_answer([True, False], ["q1", "q2"]) == (-1, None)


def cands(*items):
    return [Candidate(i, text, score) for i, (text, score) in enumerate(items)]


def test_pairs_need_a_score_gap_the_higher_score_is_chosen_and_identical_texts_are_dropped_on_request():
    candidates = cands(("a b", 0), ("c d", -1), ("a b ", -2), ("e f", 0), ("g h", -1))
    kept_all, none = candidate_pairs("q", candidates, min_score_gap=1)  # RLAIF-V: identical texts go after the cap
    assert none == 0 and len(kept_all) == 8 and [p.identical for p in kept_all].count(True) == 1
    pairs, identical = candidate_pairs("q", candidates, min_score_gap=1, drop_identical=True)
    # gaps >= 1: (0,1) (0,2)* (0,4) (1,2) (1,3) (2,3) (2,4) (3,4); (0,2) is "a b" vs "a b " -> identical
    assert identical == 1
    assert [(p.chosen, p.rejected) for p in pairs] == [(0, 1), (0, 4), (1, 2), (3, 1), (3, 2), (4, 2), (3, 4)]
    pairs2, _ = candidate_pairs("q", candidates, min_score_gap=2)
    assert [(p.chosen, p.rejected) for p in pairs2] == [(0, 2), (3, 2)]  # identical kept by default


def test_the_cap_picks_at_random_with_the_seed_and_keeps_order():
    import random

    pairs = [Pair("q7", k, 9, "c", "r", 0, -1) for k in range(6)]
    kept = cap_pairs("q7", pairs, max_pairs=2, seed=3)
    expected = sorted(random.Random("3:q7").sample(range(6), 2))  # the documented generator, drawn independently
    assert [p.chosen for p in kept] == expected
    assert cap_pairs("q7", pairs, 2, seed=3) == kept  # same seed, same pick
    assert len({tuple(p.chosen for p in cap_pairs("q7", pairs, 2, seed=s)) for s in range(20)}) > 1
    assert cap_pairs("q7", pairs[:2], 2, seed=3) == pairs[:2]
    assert cap_pairs("q7", pairs, 0, seed=3) == pairs


def pair_of_lengths(chosen_words, rejected_words, name):
    return Pair(name, 0, 1, " ".join(["w"] * chosen_words), " ".join(["x"] * rejected_words), 0, -1)


def test_length_balancing_picks_the_ratio_by_hand():
    # (chosen, rejected) words and excess (r - c) / r:  A (10, 40) 0.75,  B (10, 10) 0,  C (20, 10) -1,  D (10, 20) 0.5
    a, b, c, d = (pair_of_lengths(10, 40, "A"), pair_of_lengths(10, 10, "B"), pair_of_lengths(20, 10, "C"),
                  pair_of_lengths(10, 20, "D"))  # fmt: skip
    # gap = |mean chosen - mean rejected| / mean rejected (RLAIF-V's get_pairs_filter_shorten.py), first minimum:
    # r < 0.5 keeps B, C: means 15 vs 10, gap 0.5;  0.5 <= r < 0.75 keeps B, C, D: 40/3 vs 40/3, gap 0;
    # r >= 0.75 keeps all: 12.5 vs 20, gap 0.375.  Smallest gap 0, first at r = 0.5 (D's excess 0.5 is not > 0.5).
    assert length_gap([b, c]) == pytest.approx(0.5)
    assert length_gap([a, b, c, d]) == pytest.approx(0.375)
    kept, ratio, gap = balance_lengths([a, b, c, d])
    assert [p.instruction_id for p in kept] == ["B", "C", "D"]
    assert ratio == 0.5
    assert gap == pytest.approx(0.0)
    assert balance_lengths([]) == ([], None, float("inf"))


def test_false_claim_spans_are_the_exact_characters_of_the_false_claims():
    claims = [c.to_json() for c in split_claims(ANSWER)]
    verdicts = [True, False, True, False, False]
    # claim 2 = [37, 66) "a blue cup sits at the right."; claims 4 and 5 = [82, 93) and [95, 105): separate spans
    assert false_claim_spans(ANSWER, claims, verdicts) == [[37, 66], [82, 93], [95, 105]]
    assert false_claim_spans(ANSWER, claims, [True] * 5) == []


def test_spans_snap_to_whole_words_and_merge():
    text = "The concatenated red ball."
    # "cat" inside "concatenated" -> the whole word; overlapping pieces merge
    assert merge_spans(text, [(7, 10)]) == [[4, 16]]
    # [17, 21) is "red " : the trailing space is no unit, so the span ends with "red" at 20
    assert merge_spans(text, [(0, 3), (2, 8), (17, 21)]) == [[0, 16], [17, 20]]


def test_chosen_side_gets_no_spans_by_default_or_its_unshared_true_claims():
    chosen = "A red ball is left. A blue cup is right."
    chosen_claims = [c.to_json() for c in split_claims(chosen)]
    rejected_claims = [
        {"text": "a red ball is left", "start": 0, "end": 19},
        {"text": "A cat", "start": 20, "end": 26},
    ]
    assert chosen_side_spans(chosen, chosen_claims, [True, True], rejected_claims, "none") == []
    # claim 1 is shared (same words, case and period ignored); claim 2 is true and unshared: [20, 40)
    assert chosen_side_spans(chosen, chosen_claims, [True, True], rejected_claims, "unshared_true") == [[20, 40]]
    assert chosen_side_spans(chosen, chosen_claims, [True, False], rejected_claims, "unshared_true") == []
    with pytest.raises(ValueError, match="chosen_spans"):
        chosen_side_spans(chosen, chosen_claims, [True, True], rejected_claims, "all")


def test_the_written_dataset_passes_the_trainers_span_scan(tmp_path):
    from PIL import Image

    from rlhfv.changed_tokens import scan_span_columns
    from rlhfv.data import PREFERENCE_COLUMNS, SPAN_COLUMNS
    from rlhfv.feedback.dataset import write_dataset

    image = tmp_path / "img.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(image)
    pairs = [
        {"pair_id": "q1-0-1", "question": "Describe.", "image_path": str(image), "chosen": "A red ball.",
         "rejected": "A red ball. A blue cup.", "chosen_spans": [], "rejected_spans": [[12, 23]]},
        {"pair_id": "q1-2-1", "question": "Describe.", "image_path": str(image), "chosen": "A ball.",
         "rejected": "A kite.", "chosen_spans": [[0, 7]], "rejected_spans": [[0, 7]]},
    ]  # fmt: skip
    out = tmp_path / "dataset"
    write_dataset(pairs, out, source="feedback:test")
    from datasets import load_from_disk

    dataset = load_from_disk(str(out))
    assert set(PREFERENCE_COLUMNS + SPAN_COLUMNS) <= set(dataset.column_names)
    assert scan_span_columns(dataset, "train") == {"pairs": 2, "pairs_without_changes": 0}
    row = dataset[0]
    assert row["rejected"][0]["content"][12:23] == "A blue cup."
    assert row["images"][0].getpixel((0, 0)) == (255, 0, 0)  # the image travels as bytes

    # a span starting inside the word "blue" breaks the contract and is refused before anything is written
    with pytest.raises(ValueError, match="q1-0-1: rejected_spans"):
        write_dataset([{**pairs[0], "rejected_spans": [[15, 23]]}], tmp_path / "bad", source="x")
    assert not (tmp_path / "bad").exists()
