"""Which completion tokens are "changed": from character spans (tokenizer offsets) or from RLHF-V's token diff.

This is the only module that knows about tokens. The dataset carries tokenizer-independent character spans
(docs/data_format.md); here they become one 0/1 flag per completion token. The trainer turns the flags into weights
(`gamma` for changed, 1 for the rest of the completion), so the flags never depend on `gamma`.

A completion token is changed when its character range overlaps a changed span of the answer's content. Tokens
outside the content (the chat template's own tokens, e.g. `<|im_end|>`) are never changed but still count in the
score, as in RLHF-V. Character ranges come from the tokenizer's offsets, never from searching for words, so repeated
words are told apart.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any


# Stands in for the answer when rendering the chat template, to find where the answer lands in the rendered text
ANSWER_MARKER = "\u2063rlhfv-answer-marker\u2063"
# RLHF-V keeps only matching blocks of at least this many tokens (thunlp/Muffin, utils/diff_lib.py)
RLHFV_MIN_MATCH_SIZE = 3


def row_label(example: dict[str, Any], index: int | None = None) -> str:
    """How errors name a row: its `id` when the dataset has one, else its index."""
    if example.get("id") not in (None, ""):
        return f"row id={example['id']!r}"
    return f"row {index}" if index is not None else "row (no id column)"


def spans_of(example: dict[str, Any], side: str, where: str) -> Any:
    """The `<side>_spans` field of a row; a missing field is an error, not "no changes"."""
    if f"{side}_spans" not in example:
        raise ValueError(
            f"{where}: no `{side}_spans` field, which segment_source='spans' needs (see docs/data_format.md). "
            "Convert the data with `rlhfv convert`, or set segment_source='rlhfv_token_diff'."
        )
    return example[f"{side}_spans"]


def check_spans(spans: Any, text_length: int, where: str, field: str) -> list[tuple[int, int]]:
    """Validate one answer's spans against the contract (bounds and order): `data_tools.contract.check_spans`."""
    from data_tools.contract import check_spans as check_contract_spans

    return check_contract_spans(spans, text_length, where, field)


def changed_flags(
    offsets: Sequence[tuple[int, int]], content_start: int, spans: Sequence[tuple[int, int]]
) -> list[int]:
    """1 for each token whose character range overlaps a span (spans are relative to `content_start`), else 0."""
    flags = []
    for start, end in offsets:
        start, end = start - content_start, end - content_start
        changed = start < end and any(start < span_end and end > span_start for span_start, span_end in spans)
        flags.append(int(changed))
    return flags


def locate_answer(full_text: str, content: str, render: Callable[[str], str], where: str, field: str) -> int:
    """Character offset of the answer `content` inside `full_text`, the rendered conversation.

    `render(x)` renders the same conversation with the answer replaced by `x`. Rendering with a marker tells where
    the template puts the answer, so an answer that also occurs in the template's text (e.g. "end" in "<|im_end|>")
    is still found at the right place. A template that rewrites the answer (e.g. strips it) falls back to an exact,
    unique occurrence. Anything else fails loudly: guessing would put the weights on the wrong tokens.
    """
    with_marker = render(ANSWER_MARKER)
    if with_marker.count(ANSWER_MARKER) == 1:
        start = with_marker.index(ANSWER_MARKER)
        prefix, suffix = with_marker[:start], with_marker[start + len(ANSWER_MARKER) :]
        if full_text == prefix + content + suffix:
            return start
    if content and full_text.count(content) == 1:
        return full_text.index(content)
    raise ValueError(
        f"{where}: cannot locate the answer of {field} exactly once in the text rendered by the chat template "
        f"({full_text.count(content) if content else 0} occurrences), so its spans cannot be mapped to tokens. "
        "The template likely rewrites the answer; fix the template or use segment_source='rlhfv_token_diff'."
    )


def _tokenizer_of(processing_class):
    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{type(tokenizer).__name__} is not a fast tokenizer: mapping character spans to tokens needs the "
            "offsets that only fast tokenizers return. Load the tokenizer with use_fast=True, or use "
            "segment_source='rlhfv_token_diff'."
        )
    return tokenizer


def encode_with_offsets(processing_class, text: str, expected_ids: Sequence[int] | None, where: str):
    """Tokenize `text` with offsets, checking that the ids match TRL's tokenization (`expected_ids`) when given."""
    tokenizer = _tokenizer_of(processing_class)
    for add_special_tokens in (False, True):
        encoding = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
        if expected_ids is None or list(encoding["input_ids"]) == list(expected_ids):
            return list(encoding["input_ids"]), [tuple(o) for o in encoding["offset_mapping"]]
    raise ValueError(
        f"{where}: tokenizing the rendered text with offsets gives other token ids than the trainer's tokenization, "
        "so character spans cannot be aligned to tokens. Use segment_source='rlhfv_token_diff'."
    )


def answer_content(messages: Any, where: str, field: str) -> str:
    if not isinstance(messages, list) or len(messages) != 1:
        raise ValueError(f"{where}: {field} must be a list of exactly one assistant message, got {messages!r}.")
    content = messages[0].get("content")
    if not isinstance(content, str):
        raise ValueError(f"{where}: {field}[0]['content'] must be a string, got {type(content).__name__}.")
    return content


def render_conversation(processing_class, messages: list[dict], **template_kwargs) -> str:
    """The chat template's text for `messages`, rendered the way TRL's `_tokenize` renders it."""
    from transformers import ProcessorMixin
    from trl.data_utils import prepare_multimodal_messages

    if isinstance(processing_class, ProcessorMixin):
        messages = prepare_multimodal_messages(messages)
    return processing_class.apply_chat_template(messages, tokenize=False, **template_kwargs)


def text_row_changed_flags(example: dict[str, Any], index: int, processing_class) -> dict[str, list[int]]:
    """`datasets.map` function for rows TRL has tokenized: flags aligned to `chosen_ids` and `rejected_ids`."""
    import json

    from trl.data_utils import is_conversational

    where = row_label(example, index)
    output = {}
    prompt_ids = list(example["prompt_ids"])
    for side in ("chosen", "rejected"):
        completion_ids = list(example[f"{side}_ids"])
        if is_conversational(example):
            content = answer_content(example[side], where, side)
            spans = check_spans(spans_of(example, side, where), len(content), where, f"{side}_spans")
            if not spans:
                output[f"{side}_changed"] = [0] * len(completion_ids)
                continue
            tools = example.get("tools")
            tools = json.loads(tools) if isinstance(tools, str) else tools
            kwargs = {"tools": tools, **(example.get("chat_template_kwargs") or {})}
            prompt, answer = example["prompt"], example[side]

            def render(text, prompt=prompt, answer=answer, kwargs=kwargs):
                return render_conversation(processing_class, prompt + [{**answer[0], "content": text}], **kwargs)

            full_text = render(content)
            content_start = locate_answer(full_text, content, render, where, side)
        else:
            # Standard format: TRL appended the EOS token to the answer, after the content, so offsets are unchanged
            content = example[side]
            spans = check_spans(spans_of(example, side, where), len(content), where, f"{side}_spans")
            if not spans:
                output[f"{side}_changed"] = [0] * len(completion_ids)
                continue
            full_text = example["prompt"] + example[side]
            content_start = len(example["prompt"])
        ids, offsets = encode_with_offsets(processing_class, full_text, prompt_ids + completion_ids, where)
        output[f"{side}_changed"] = changed_flags(offsets[len(prompt_ids) :], content_start, spans)
    return output


def completion_changed_flags(
    completion_text: str, render: Callable[[str], str], content: str, spans, processing_class, where: str, field: str
) -> tuple[list[int], list[int]]:
    """Token ids of a rendered completion (as TRL's vision collator tokenizes it) and their changed flags.

    `render(x)` renders the completion with the answer replaced by `x`.
    """
    ids, offsets = encode_with_offsets(processing_class, completion_text, None, where)
    if not spans:
        return ids, [0] * len(ids)
    content_start = locate_answer(completion_text, content, render, where, field)
    return ids, changed_flags(offsets, content_start, spans)


def rlhfv_token_diff(rejected_ids: Sequence[int], chosen_ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """RLHF-V's changed tokens: positions (in the given sequences) of the rejected and chosen tokens marked changed.

    Reproduces thunlp/Muffin (muffin/train/train_muffin.py, `DataCollatorForDPODataset`, and utils/diff_lib.py,
    `get_diff_ids`), which RLHF-V/RLAIF-V copy: the whole token sequences (prompt, image tokens, response) minus
    their first token are diffed with `difflib.SequenceMatcher(None, rejected[1:], chosen[1:])` (default autojunk);
    matching blocks shorter than 3 tokens are dropped; a gap between kept blocks is changed only when it is
    non-empty on both sides, so pure insertions and deletions keep weight 1. One deliberate difference: the public
    code diffs rows padded to the batch's longest, so the mask can depend on the batch; these are unpadded.
    """
    rejected, chosen = list(rejected_ids[1:]), list(chosen_ids[1:])
    blocks = difflib.SequenceMatcher(None, rejected, chosen).get_matching_blocks()
    # The last block is difflib's (len_a, len_b, 0) sentinel, which closes the final gap
    blocks = [block for block in blocks[:-1] if block.size >= RLHFV_MIN_MATCH_SIZE] + [blocks[-1]]
    rejected_changed, chosen_changed = [], []
    rejected_at, chosen_at = 0, 0
    for block in blocks:
        if block.a > rejected_at and block.b > chosen_at:
            rejected_changed.extend(range(rejected_at, block.a))
            chosen_changed.extend(range(chosen_at, block.b))
        rejected_at, chosen_at = block.a + block.size, block.b + block.size
    # Back to positions in the full sequences (the diff ran on [1:])
    return [i + 1 for i in rejected_changed], [j + 1 for j in chosen_changed]


def scan_span_columns(dataset, name: str) -> dict[str, int]:
    """Validate every row before training starts; count the pairs that carry no changed segment.

    Conversational rows are checked against the whole row contract (`data_tools.contract.check_row`: non-empty answers
    that differ, spans in bounds, in order and on word units), so library users of `DenseDPOTrainer` get the same
    checks as `rlhfv train`. Reads only the text columns (no images are decoded): a bad row fails at start-up.
    """
    missing = [c for c in ("chosen_spans", "rejected_spans") if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"The {name} dataset has no {' / '.join(missing)} column, which segment_source='spans' needs "
            "(see docs/data_format.md; `rlhfv convert` writes them). Convert the data, or set "
            "segment_source='rlhfv_token_diff' to derive changed tokens from a token diff."
        )
    from data_tools.contract import check_row

    columns = [c for c in ("id", "chosen", "rejected", "chosen_spans", "rejected_spans") if c in dataset.column_names]
    pairs_without_changes = 0
    for index, example in enumerate(dataset.select_columns(columns)):
        where = f"{name} dataset, {row_label(example, index)}"
        if all(isinstance(example[side], list) for side in ("chosen", "rejected")):
            # The whole row contract (docs/data_format.md): non-empty answers that differ, spans on word units
            check_row(example, where)
            has_changes = bool(example["chosen_spans"]) or bool(example["rejected_spans"])
        else:
            # Standard (string) rows: the spans' bounds and order
            checked = []
            for side in ("chosen", "rejected"):
                answer = example[side]
                content = answer_content(answer, where, side) if isinstance(answer, list) else answer
                checked.append(check_spans(example[f"{side}_spans"], len(content), where, f"{side}_spans"))
            has_changes = any(checked)
        pairs_without_changes += not has_changes
    return {"pairs": len(dataset), "pairs_without_changes": pairs_without_changes}
