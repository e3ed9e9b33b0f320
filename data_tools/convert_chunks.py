"""One chunk of raw rows -> converted pairs as an Arrow table, plus each row's outcome (its id or its error).

This is the work that `--num-proc` spreads over worker processes: JSON parsing, the format reader, image checks and
the segment diff. It runs in workers, so everything here is importable at module level and pickles.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from typing import Any

from data_tools.errors import BAD_VALUE, MALFORMED_JSON, UNCHANGED, RowError
from data_tools.formats import FORMATS
from data_tools.images import resolve_image
from data_tools.readers import decode_text
from data_tools.segments import diff_pair


def dataset_features(with_images: bool):
    """The `datasets.Features` of a converted dataset (docs/data_format.md)."""
    from datasets import Features, Image, List, Value

    message = {"role": Value("string"), "content": Value("string")}
    columns = {
        "id": Value("string"),
        "source": Value("string"),
        "prompt": List(message),
        "chosen": List(message),
        "rejected": List(message),
    }
    if with_images:
        columns["images"] = List(Image())
    columns["chosen_spans"] = List(List(Value("int32")))
    columns["rejected_spans"] = List(List(Value("int32")))
    return Features(columns)


@dataclass(frozen=True)
class ChunkTask:
    """One chunk of raw rows and everything a worker process needs to convert them."""

    format_name: str
    source_path: str
    stem: str
    row_kind: str
    image_root: str
    changes: str
    strict_paths: bool
    rows: list


def _convert_row(task: ChunkTask, payload: Any) -> dict:
    if isinstance(payload, bytes):
        try:
            record = json.loads(decode_text(payload))
        except json.JSONDecodeError as error:
            raise RowError(
                MALFORMED_JSON, None, f"the line is not valid JSON ({error.msg}, column {error.colno})"
            ) from None
    else:
        record = payload
    if not isinstance(record, dict):
        raise RowError(BAD_VALUE, None, f"expected a JSON object, got {type(record).__name__}")
    try:
        pair = FORMATS[task.format_name].parse(record)
    except RowError as error:
        error.pair_id = _recoverable_id(task.format_name, record)
        raise
    try:
        images = [resolve_image(value, label, task.image_root, task.strict_paths) for label, value in pair.images]
        if pair.chosen == pair.rejected:
            raise RowError(
                UNCHANGED, pair.chosen_field, f"is identical to {pair.rejected_field} (nothing was corrected)"
            )
        chosen_spans, rejected_spans, changed_runs = diff_pair(pair.rejected, pair.chosen, task.changes)
        if not changed_runs:
            raise RowError(
                UNCHANGED,
                pair.chosen_field,
                f"differs from {pair.rejected_field} only in whitespace (nothing was corrected)",
            )
    except RowError as error:
        error.pair_id = pair.id
        raise
    return {
        "id": pair.id,
        "prompt": pair.prompt,
        "chosen": [{"role": "assistant", "content": pair.chosen}],
        "rejected": [{"role": "assistant", "content": pair.rejected}],
        "images": images,
        "chosen_spans": chosen_spans,
        "rejected_spans": rejected_spans,
    }


def _recoverable_id(format_name: str, record: dict) -> str | None:
    try:
        return FORMATS[format_name].row_id(record)
    except RowError:
        return None  # the id itself is the bad field


@dataclass
class ChunkResult:
    """A converted chunk: per row in input order, the pair's id or the row's error; the pairs as one Arrow table."""

    source_path: str
    row_kind: str
    rows: list[int]
    outcomes: list[str | RowError]
    table: Any  # pyarrow.Table of the good rows, in order, with an `images` column
    image_counts: list[int]
    image_folders: set[str]


def convert_chunk(task: ChunkTask) -> ChunkResult:
    """Convert one chunk; runs in worker processes under `num_proc > 1`.

    Pairs come back as one Arrow table rather than per-row dicts: pickling it is cheap, which keeps the parent
    process (id checks and accounting only) from becoming the bottleneck.
    """
    import pyarrow as pa

    columns: dict[str, list] = {name: [] for name in dataset_features(with_images=True)}
    outcomes: list[str | RowError] = []
    rows = []
    for row, payload in task.rows:
        rows.append(row)
        try:
            pair = _convert_row(task, payload)
        except RowError as error:
            outcomes.append(error.locate(task.source_path, row, task.row_kind))
            continue
        if pair["id"] is None:
            pair["id"] = f"{task.stem}-{row}"
        pair["source"] = f"{task.format_name}:{task.source_path}:{row}"
        outcomes.append(pair["id"])
        for name, values in columns.items():
            values.append(pair[name])
    table = pa.Table.from_pydict(columns, schema=arrow_schema(with_images=True))
    image_counts = [len(images) for images in columns["images"]]
    image_folders = {
        os.path.dirname(image["path"]) for images in columns["images"] for image in images if image["path"]
    }
    return ChunkResult(task.source_path, task.row_kind, rows, outcomes, table, image_counts, image_folders)


@functools.cache
def arrow_schema(with_images: bool):
    return dataset_features(with_images).arrow_schema
