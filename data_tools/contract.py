"""The row contract of the dense preference dataset (docs/data_format.md), checked in one place.

`rlhfv convert` produces rows that satisfy it by construction; `rlhfv train` checks every row of the data it is
given (which may come from anywhere) before loading a model, and the collator checks the spans of each batch with
the same `check_spans`.

A row satisfies the contract when:
- `chosen` and `rejected` hold one assistant message each, whose content is a non-empty string;
- the two contents differ;
- each side's spans are `[start, end)` pairs of integers, sorted, non-overlapping, non-empty, inside the content,
  and start and end on unit boundaries (never inside a word; units as in `data_tools.segments`).
"""

from __future__ import annotations

from typing import Any

from data_tools.segments import split_units


Span = tuple[int, int]


def check_spans(spans: Any, text: str | int, where: str, field: str) -> list[Span]:
    """The spans as `(start, end)` tuples, or `ValueError` naming the row (`where`), the field and the span.

    `text` is the answer's content; given only its length, the unit-boundary check is skipped (the collator, which
    sees every batch, checks bounds; the full check runs once per row when the dataset is prepared).
    """
    if spans is None:
        return []
    text_length = text if isinstance(text, int) else len(text)
    starts = ends = None
    checked = []
    previous_end = 0
    for k, span in enumerate(spans):
        if not isinstance(span, (list, tuple)) or len(span) != 2:
            raise ValueError(f"{where}: {field}[{k}] = {span!r} is not a [start, end) pair of character offsets.")
        start, end = span
        if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool) or isinstance(end, bool):
            raise ValueError(f"{where}: {field}[{k}] = {span!r} must hold two integers.")
        if not 0 <= start < end <= text_length:
            raise ValueError(
                f"{where}: {field}[{k}] = [{start}, {end}) lies outside the answer (length {text_length}) or is "
                "empty; spans are character offsets into the answer's content."
            )
        if start < previous_end:
            raise ValueError(f"{where}: {field}[{k}] = [{start}, {end}) overlaps or precedes the previous span.")
        if isinstance(text, str):
            if starts is None:
                offsets = split_units(text)[1]  # unit k spans offsets[2k + 1]:offsets[2k + 2]
                starts, ends = set(offsets[1:-1:2]), set(offsets[2::2])
            if start not in starts or end not in ends:
                raise ValueError(
                    f"{where}: {field}[{k}] = [{start}, {end}) ({text[start:end]!r}) starts or ends inside a word; "
                    "spans must start and end on a word or punctuation unit."
                )
        previous_end = end
        checked.append((start, end))
    return checked


def _content(answer: Any, where: str, field: str) -> str:
    if isinstance(answer, str):
        content = answer
    elif isinstance(answer, list) and len(answer) == 1 and isinstance(answer[0], dict):
        content = answer[0].get("content")
    else:
        raise ValueError(f"{where}: {field} must be a list of exactly one assistant message, got {answer!r:.80}.")
    if not isinstance(content, str):
        raise ValueError(f"{where}: {field}[0]['content'] must be a string, got {type(content).__name__}.")
    if not content.strip():
        raise ValueError(f"{where}: {field} is empty; there is nothing to learn from an empty answer.")
    return content


def check_row(row: dict[str, Any], where: str, with_spans: bool = True) -> None:
    """Raise `ValueError` naming `where` and the field when `row` breaks the contract."""
    chosen = _content(row.get("chosen"), where, "chosen")
    rejected = _content(row.get("rejected"), where, "rejected")
    if chosen == rejected:
        raise ValueError(f"{where}: chosen and rejected are identical; the pair prefers nothing.")
    if with_spans:
        check_spans(row.get("chosen_spans"), chosen, where, "chosen_spans")
        check_spans(row.get("rejected_spans"), rejected, where, "rejected_spans")


def contract_problems(dataset, with_spans: bool = True, limit: int = 5) -> tuple[list[str], int]:
    """(up to `limit` messages, number of bad rows) for a `datasets.Dataset`; rows are named by `id` or index."""
    columns = [
        name for name in ("id", "chosen", "rejected", "chosen_spans", "rejected_spans") if name in dataset.column_names
    ]
    if not with_spans:
        columns = [name for name in columns if not name.endswith("_spans")]
    problems, bad = [], 0
    index = 0
    for batch in dataset.select_columns(columns).iter(batch_size=1000):
        for offset in range(len(batch["chosen"])):
            row = {name: batch[name][offset] for name in columns}
            where = f"row id={row['id']!r}" if row.get("id") not in (None, "") else f"row {index}"
            try:
                check_row(row, where, with_spans)
            except ValueError as error:
                bad += 1
                if len(problems) < limit:
                    problems.append(str(error))
            index += 1
    return problems, bad
