"""LLaVA-RLHF's symbolic rewards on hand-made answers, against values worked out by hand."""

import pytest

from rlhfv.rl.config import FactRLOOConfig
from rlhfv.rl.symbolic import (
    LengthPenalty,
    MultipleChoiceBonus,
    NoStopTokenPenalty,
    YesNoRule,
    chosen_option,
    completion_text,
)


def conv(text):
    return [{"role": "assistant", "content": text}]


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B. clock", "B"),
        ("B", "B"),
        ("(C) cup", "C"),
        ("  A) bottle", "A"),
        ("The correct option is B.", "B"),
        ("I think the answer is (A).", "A"),
        ("Because it is round.", None),  # a sentence starting with a capital is not an option letter
        ("It is a clock.", None),
        ("A clock is on the left.", None),  # the article, not option A
        ("B: the clock", "B"),
    ],
)
def test_chosen_option(text, letter):
    assert chosen_option(text) == letter


def test_multiple_choice_bonus_pays_only_the_right_option():
    rule = MultipleChoiceBonus()
    completions = [conv("B. clock"), conv("The correct option is B."), conv("A. bottle"), conv("a clock"), conv("B")]
    rewards = rule([None] * 5, completions, mc_answer=["B", "b", "B", "B", None])
    # right, right (lower-case key), wrong option, no option named, not a multiple-choice row
    assert rewards == [2.0, 2.0, 0.0, 0.0, None]
    assert MultipleChoiceBonus(bonus=3.5)([None], [conv("C")], mc_answer=["C"]) == [3.5]
    # A dataset without the column: the rule applies to no row
    assert rule([None, None], [conv("A"), conv("B")]) == [None, None]


def test_yes_no_rule_only_for_questions_whose_truth_is_no():
    rule = YesNoRule()  # 0.5 x 2 = 1.0, as in LLaVA-RLHF
    completions = [
        conv("No, there is no kite."),
        conv("Yes."),
        conv("There may be one."),
        conv("Nobody knows."),
        conv("Yes"),
    ]
    rewards = rule([None] * 5, completions, yes_no_truth=["no", "no", "no", "no", "yes"])
    assert rewards == [1.0, -1.0, 0.0, 0.0, None]
    scaled = YesNoRule(no_reward=0.25, yes_reward=-0.75, scale=4.0)
    assert scaled([None, None], [conv("no"), conv("YES!")], yes_no_truth=["No", "no"]) == [1.0, -3.0]


def test_length_penalty_is_proportional_to_tokens():
    rule = LengthPenalty(max_completion_length=50)
    assert rule([None] * 3, [conv("")] * 3, completion_ids=[[1] * 10, [1] * 50, []]) == [-2.0, -10.0, 0.0]
    assert LengthPenalty(max_completion_length=4, score=1.0)([None], [conv("")], completion_ids=[[5, 6, 7]]) == [0.75]
    with pytest.raises(ValueError, match="max_completion_length"):
        LengthPenalty(max_completion_length=0)


def test_no_stop_token_penalty():
    rule = NoStopTokenPenalty(eos_token_ids=[7, 9])
    ids = [[1, 2, 7], [1, 2, 3], [9], [], [7, 1]]
    # stopped, cut off, stopped at once, empty (cut off at length 0), a stop token not at the end (cut off)
    assert rule([None] * 5, [conv("")] * 5, completion_ids=ids) == [0.0, -8.0, 0.0, -8.0, -8.0]
    with pytest.raises(ValueError, match="stop token"):
        NoStopTokenPenalty(eos_token_ids=[])


def test_rules_compose_to_the_papers_total():
    """One multiple-choice answer that is right, 20 tokens of 40 and stopped: 2 - 10 x 0.5 + 0 = -3."""
    rules = [MultipleChoiceBonus(), YesNoRule(), LengthPenalty(40), NoStopTokenPenalty([2])]
    kwargs = {"mc_answer": ["A"], "yes_no_truth": [None], "completion_ids": [[5] * 19 + [2]]}
    values = [rule([None], [conv("A. cup")], **kwargs)[0] for rule in rules]
    assert values == [2.0, None, -5.0, 0.0]
    assert sum(v for v in values if v is not None) == -3.0


def test_reward_functions_are_named_for_trl_logs():
    from trl.trainer.utils import get_callable_name

    names = [
        get_callable_name(f) for f in (MultipleChoiceBonus(), YesNoRule(), LengthPenalty(8), NoStopTokenPenalty([1]))
    ]
    assert names == ["multiple_choice_bonus", "yes_no_rule", "length_penalty", "no_stop_token_penalty"]


def test_completion_text_forms():
    assert completion_text("plain") == "plain"
    assert completion_text(conv("chat")) == "chat"
    assert (
        completion_text(
            [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
        )
        == "ab"
    )


def test_config_defaults_are_the_papers(tmp_path):
    config = FactRLOOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False)
    assert (config.beta, config.multiple_choice_bonus, config.yes_no_reward, config.yes_no_scale) == (
        0.1,
        2.0,
        0.5,
        2.0,
    )
    assert (config.length_penalty, config.no_stop_token_penalty) == (-10.0, -8.0)
    with pytest.raises(ValueError, match="remove_unused_columns"):
        FactRLOOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, remove_unused_columns=True)
