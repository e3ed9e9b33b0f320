"""Changed-token flags: spans -> tokens through offsets, and RLHF-V's token diff."""

import copy

import pytest
from datasets import Dataset

from rlhfv.changed_tokens import check_spans, rlhfv_token_diff, scan_span_columns, text_row_changed_flags
from rlhfv.tiny_models import build_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


# ----------------------------------------------------------------------------------------- RLHF-V token diff

B = 1  # a first token (BOS-like) that RLHF-V leaves out of the diff


@pytest.mark.parametrize(
    "chosen, rejected, chosen_changed, rejected_changed",
    [
        # replacement: one token replaced by two
        ([B, 10, 11, 12, 20, 13, 14, 15], [B, 10, 11, 12, 30, 31, 13, 14, 15], [4], [4, 5]),
        # insertion only: the chosen gains tokens, nothing is changed (the gap is empty on the rejected side)
        ([B, 10, 11, 12, 20, 21, 13, 14, 15], [B, 10, 11, 12, 13, 14, 15], [], []),
        # deletion only: the mirror case
        ([B, 10, 11, 12, 13, 14, 15], [B, 10, 11, 12, 20, 21, 13, 14, 15], [], []),
        # a matching block shorter than 3 tokens (the shared 7) is dropped: the whole gap is changed, 7 included
        ([B, 10, 11, 12, 20, 7, 21, 13, 14, 15], [B, 10, 11, 12, 30, 7, 31, 13, 14, 15], [4, 5, 6], [4, 5, 6]),
        # a block of exactly 3 tokens is kept, splitting the change in two
        ([B, 1, 2, 3, 20, 4, 5, 6, 21, 7, 8, 9], [B, 1, 2, 3, 30, 4, 5, 6, 31, 7, 8, 9], [4, 8], [4, 8]),
        # the first token is not diffed
        ([5, 1, 2, 3], [6, 1, 2, 3], [], []),
        # a change at the very end is closed by difflib's sentinel block
        ([B, 1, 2, 3, 9], [B, 1, 2, 3, 8], [4], [4]),
    ],
)
def test_rlhfv_token_diff_rules(chosen, rejected, chosen_changed, rejected_changed):
    got_rejected, got_chosen = rlhfv_token_diff(rejected, chosen)
    assert got_chosen == chosen_changed
    assert got_rejected == rejected_changed


def test_rlhfv_token_diff_keeps_difflib_autojunk():
    """RLHF-V runs SequenceMatcher with its default autojunk: in a sequence of 200+ tokens, a token occurring in more
    than 1% of it is "popular" and cannot seed a match (a match may still grow over it from a seeded one). Worked by
    hand: after the first token, chosen is 8 then 249 copies of 5, rejected 9 then the same 249 copies. 5 is popular
    and 8/9 differ, so nothing seeds a match and both whole answers are one changed gap. Without autojunk the 249
    copies would match and only position 1 of each side would be changed."""
    chosen = [B, 8] + [5] * 249
    rejected = [B, 9] + [5] * 249
    got_rejected, got_chosen = rlhfv_token_diff(rejected, chosen)
    assert got_chosen == list(range(1, 251))
    assert got_rejected == list(range(1, 251))


def test_rlhfv_token_diff_replacement_beside_insertion_is_one_gap():
    # rejected 1 2 3 [30] 4 5 6, chosen 1 2 3 [20 21] 4 5 6: one gap, non-empty on both sides
    got_rejected, got_chosen = rlhfv_token_diff([B, 1, 2, 3, 30, 4, 5, 6], [B, 1, 2, 3, 20, 21, 4, 5, 6])
    assert (got_chosen, got_rejected) == ([4, 5], [4])


def test_rlhfv_token_diff_two_edits_and_a_pure_insertion():
    # edits at positions 4 and 9 (both sides), and an insertion of 40 41 on the chosen side after position 12
    rejected = [B, 1, 2, 3, 30, 4, 5, 6, 7, 31, 8, 9, 10, 11, 12, 13]
    chosen = [B, 1, 2, 3, 20, 4, 5, 6, 7, 21, 8, 9, 10, 40, 41, 11, 12, 13]
    got_rejected, got_chosen = rlhfv_token_diff(rejected, chosen)
    assert (got_chosen, got_rejected) == ([4, 9], [4, 9])


# -------------------------------------------------------------------------------------- spans -> token flags


def _decoded_offsets(tokenizer, ids):
    """Character ranges of tokens found by decoding growing prefixes (independent of the tokenizer's offsets)."""
    ends = [len(tokenizer.decode(ids[: k + 1])) for k in range(len(ids))]
    return list(zip([0, *ends[:-1]], ends, strict=True))


def _tokenized_like_trl(tokenizer, example):
    """What TRL's `_prepare_dataset` adds for a conversational row."""
    prompt_ids = tokenizer.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=True)
    if isinstance(prompt_ids, dict) or hasattr(prompt_ids, "keys"):
        prompt_ids = prompt_ids["input_ids"]
    out = {"prompt_ids": list(prompt_ids)}
    for side in ("chosen", "rejected"):
        full = tokenizer.apply_chat_template(example["prompt"] + example[side], tokenize=False)
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        assert ids[: len(prompt_ids)] == list(prompt_ids)
        out[f"{side}_ids"] = ids[len(prompt_ids) :]
    return {**example, **out}


def _expected_flags(tokenizer, example, side):
    prompt_text = tokenizer.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(example["prompt"] + example[side], tokenize=False)
    ids = example["prompt_ids"] + example[f"{side}_ids"]
    assert tokenizer.decode(ids) == full
    # In this ChatML-like template the answer starts right after the generation prompt
    content_start = len(prompt_text)
    spans = [(a + content_start, b + content_start) for a, b in example[f"{side}_spans"]]
    offsets = _decoded_offsets(tokenizer, ids)[len(example["prompt_ids"]) :]
    return [int(any(s < b and e > a for a, b in spans)) for s, e in offsets]


def _row(chosen, rejected, chosen_spans, rejected_spans, prompt="Describe the image.", row_id="r"):
    return {
        "id": row_id,
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "chosen_spans": chosen_spans,
        "rejected_spans": rejected_spans,
    }


def test_repeated_word_flags_only_the_span_occurrence(tokenizer):
    chosen = "the cat and the dog and the cup"
    rejected = "the cat and a dog and the cup"
    second_the = chosen.index("the", 1)
    a_at = rejected.index(" a ") + 1
    example = _tokenized_like_trl(
        tokenizer, _row(chosen, rejected, [[second_the, second_the + 3]], [[a_at, a_at + 1]])
    )
    flags = text_row_changed_flags(example, 0, tokenizer)
    for side in ("chosen", "rejected"):
        assert flags[f"{side}_changed"] == _expected_flags(tokenizer, example, side)
    # exactly one token flagged on the chosen side, and it is the second "the" (not the first or the third)
    flagged = [t for t, f in zip(example["chosen_ids"], flags["chosen_changed"], strict=True) if f]
    assert tokenizer.convert_ids_to_tokens(flagged) == ["Ġthe"]
    position = flags["chosen_changed"].index(1)
    assert tokenizer.decode(example["chosen_ids"][:position]) == "the cat and"


def test_answer_text_inside_template_tokens_is_located_by_rendering(tokenizer):
    # "end" also occurs in "<|im_end|>"; the flags must land on the answer's own characters
    example = _tokenized_like_trl(tokenizer, _row("end", "start", [[0, 3]], [[0, 5]]))
    flags = text_row_changed_flags(example, 0, tokenizer)
    assert flags["chosen_changed"] == _expected_flags(tokenizer, example, "chosen")
    flagged = [t for t, f in zip(example["chosen_ids"], flags["chosen_changed"], strict=True) if f]
    assert tokenizer.decode(flagged) == "end"
    # the template's <|im_end|> closes the completion and is never changed
    assert example["chosen_ids"][-2] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert flags["chosen_changed"][-2] == 0


def test_template_that_rewrites_the_answer_fails_loudly(tokenizer):
    shouting = copy.deepcopy(tokenizer)
    shouting.chat_template = tokenizer.chat_template.replace(
        "{{ message['content'] }}", "{{ message['content'] | upper }}"
    )
    example = _tokenized_like_trl(shouting, _row("a red circle", "a blue circle", [[2, 5]], [[2, 6]], row_id="x1"))
    with pytest.raises(ValueError, match=r"row id='x1'.*cannot locate the answer of chosen"):
        text_row_changed_flags(example, 0, shouting)


def test_check_spans_names_row_and_field():
    assert check_spans([[0, 2], [3, 5]], 5, "row id='a'", "chosen_spans") == [(0, 2), (3, 5)]
    with pytest.raises(ValueError, match=r"row id='a': chosen_spans\[1\] = \[3, 9\) lies outside"):
        check_spans([[0, 2], [3, 9]], 5, "row id='a'", "chosen_spans")
    with pytest.raises(ValueError, match=r"rejected_spans\[1\].*overlaps"):
        check_spans([[0, 3], [2, 4]], 5, "row 3", "rejected_spans")
    with pytest.raises(ValueError, match="empty"):
        check_spans([[2, 2]], 5, "row 3", "rejected_spans")


def test_scan_span_columns_counts_and_validates():
    rows = [
        _row("a red dot", "a blue dot", [[2, 5]], [[2, 6]], row_id="ok"),
        _row("a red dot", "a red dot.", [], [], row_id="nochange"),
    ]
    assert scan_span_columns(Dataset.from_list(rows), "train") == {"pairs": 2, "pairs_without_changes": 1}
    bad = [*rows, _row("a red dot", "a blue dot", [[2, 50]], [], row_id="bad")]
    with pytest.raises(ValueError, match=r"train dataset, row id='bad': chosen_spans\[0\]"):
        scan_span_columns(Dataset.from_list(bad), "train")
    no_spans = Dataset.from_list([{k: v for k, v in rows[0].items() if not k.endswith("_spans")}])
    with pytest.raises(ValueError, match="no chosen_spans / rejected_spans column"):
        scan_span_columns(no_spans, "train")


def test_missing_span_field_is_an_error_not_an_unchanged_answer(tokenizer):
    example = _tokenized_like_trl(tokenizer, _row("a red dot", "a blue dot", [[2, 5]], [[2, 6]], row_id="m"))
    del example["rejected_spans"]
    with pytest.raises(ValueError, match="row id='m': no `rejected_spans` field"):
        text_row_changed_flags(example, 0, tokenizer)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"chosen": [{"role": "assistant", "content": "   "}]}, "chosen"),
        ({"rejected": [{"role": "assistant", "content": "A red circle."}]}, "identical"),
        ({"chosen_spans": [[3, 5]]}, "inside a word"),
    ],
)
def test_trainer_scan_applies_the_whole_row_contract(change, message):
    """A library user's dataset gets the checks `rlhfv train` makes: named by row id and field."""
    row = {
        "id": "r1",
        "prompt": [{"role": "user", "content": "Describe."}],
        "chosen": [{"role": "assistant", "content": "A red circle."}],
        "rejected": [{"role": "assistant", "content": "A blue circle."}],
        "chosen_spans": [[2, 5]],
        "rejected_spans": [[2, 6]],
    }
    scan_span_columns(Dataset.from_list([row]), "train")  # the valid row passes
    with pytest.raises(ValueError, match=f"train dataset, row id='r1'.*{message}"):
        scan_span_columns(Dataset.from_list([{**row, **change}]), "train")
