"""The feedback benchmark's generate-based baseline reads verdicts as documented (bench/generate_labeler.py)."""

from bench.generate_labeler import verdict_of


def test_the_baseline_takes_the_verdict_from_the_first_word_of_the_reply():
    assert verdict_of("Yes, there is a cup.").verdict is True
    assert verdict_of("  no.").verdict is False
    assert verdict_of("**No** it is not").verdict is False
    assert verdict_of("yesterday").verdict is None  # a word that only starts like "yes" is no answer
    unclear = verdict_of("The image shows")
    assert (unclear.verdict, unclear.reason) == (None, "reply_not_yes_no")
    assert verdict_of("").verdict is None
