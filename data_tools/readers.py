"""Input files as streams of raw rows: JSONL, JSON, Parquet, or a `datasets` folder written by `save_to_disk`.

Rows travel in chunks of `(row number, payload)`: a JSONL payload is the undecoded line (decoded and parsed by the
worker that converts it, so that `--num-proc` parallelises JSON parsing too), any other payload is a dict.
"""

from __future__ import annotations

import codecs
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from data_tools.errors import ConversionError


JSONL_SUFFIXES = (".jsonl", ".ndjson")
DETECTION_SAMPLE_LINES = 100


def decode_text(data: bytes) -> str:
    # Undecodable bytes become lone surrogates, which the field checks report as non-UTF-8 with the field's name.
    return data.decode("utf-8", errors="surrogateescape")


@dataclass
class InputSource:
    """One readable unit of input: a file, or one split of a `datasets` folder."""

    path: str  # as the user named it (plus `[split]` for a split of a DatasetDict)
    kind: str  # jsonl | json | parquet | datasets
    stem: str  # for ids of rows that have none: `<stem>-<row>`
    folder: str  # default image root
    split: str | None = None
    _records: list | None = field(default=None, repr=False)

    @property
    def row_kind(self) -> str:
        return "line" if self.kind == "jsonl" else "row"

    @property
    def file_path(self) -> str:
        return self.path if self.split is None else self.path[: -len(f"[{self.split}]")]

    def _dataset(self):
        from datasets import DatasetDict, load_from_disk

        dataset = load_from_disk(self.file_path)
        return dataset[self.split] if isinstance(dataset, DatasetDict) else dataset

    def _json_records(self) -> list:
        if self._records is None:
            with open(self.path, "rb") as handle:
                text = decode_text(handle.read()).removeprefix("\ufeff")
            try:
                records = json.loads(text)
            except json.JSONDecodeError as error:
                raise ConversionError(
                    f"{self.path}: malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}; "
                    "no row of this file can be read"
                ) from None
            if not isinstance(records, list):
                raise ConversionError(
                    f"{self.path}: expected a JSON list of rows, got a {type(records).__name__} "
                    "(write one row per line as JSONL, or wrap the rows in [...])"
                )
            self._records = records
        return self._records

    def columns(self) -> set[str]:
        """Column names, for format detection (from the first rows for JSON and JSONL)."""
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            return set(pq.ParquetFile(self.path).schema_arrow.names)
        if self.kind == "datasets":
            return set(self._dataset().column_names)
        if self.kind == "json":
            return next((set(record) for record in self._json_records() if isinstance(record, dict)), set())
        with open(self.path, "rb") as handle:
            # the first lines only; a file may have fewer (or none)
            for line in itertools.islice(handle, DETECTION_SAMPLE_LINES):
                try:
                    record = json.loads(decode_text(line).lstrip("\ufeff"))
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    return set(record)
        return set()

    def count(self) -> int:
        """Number of rows (non-blank lines for JSONL), for the progress bar."""
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(self.path).metadata.num_rows
        if self.kind == "datasets":
            return self._dataset().num_rows
        if self.kind == "json":
            return len(self._json_records())
        with open(self.path, "rb") as handle:
            return sum(1 for line in handle if line.strip())

    def chunks(self, size: int) -> Iterator[list[tuple[int, Any]]]:
        if self.kind == "jsonl":
            yield from _jsonl_chunks(self.path, size)
        elif self.kind == "json":
            records = self._json_records()
            for start in range(0, len(records), size):
                yield list(enumerate(records[start : start + size], start))
        elif self.kind == "parquet":
            import pyarrow.parquet as pq

            start = 0
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=size):
                rows = batch.to_pylist()
                yield list(enumerate(rows, start))
                start += len(rows)
        else:
            start = 0
            # Arrow format hands images over as stored ({bytes, path}) instead of decoding them to PIL
            for table in self._dataset().with_format("arrow").iter(batch_size=size):
                rows = table.to_pylist()
                yield list(enumerate(rows, start))
                start += len(rows)


def _jsonl_chunks(path: str, size: int) -> Iterator[list[tuple[int, bytes]]]:
    chunk: list[tuple[int, bytes]] = []
    with open(path, "rb") as handle:
        for line_number, line in enumerate(handle, 1):
            if line_number == 1 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8) :]
            if not line.strip():
                continue  # blank lines are not rows
            chunk.append((line_number, line))
            if len(chunk) == size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _is_datasets_folder(path: str) -> bool:
    return any(
        os.path.isfile(os.path.join(path, name)) for name in ("dataset_info.json", "state.json", "dataset_dict.json")
    )


def open_inputs(inputs: list[str]) -> list[InputSource]:
    """The readable units behind the paths the user named, in order."""
    if not inputs:
        raise ConversionError("no input given")
    sources = []
    for path in inputs:
        if not os.path.exists(path):
            raise ConversionError(f"{path}: no such file or folder")
        stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            if not _is_datasets_folder(path):
                raise ConversionError(
                    f"{path}: is a folder but not a `datasets` folder written by save_to_disk; name the files in it"
                )
            if os.path.isfile(os.path.join(path, "dataset_dict.json")):
                with open(os.path.join(path, "dataset_dict.json"), encoding="utf-8") as handle:
                    splits = json.load(handle)["splits"]
                sources += [
                    InputSource(f"{path}[{split}]", "datasets", f"{stem}-{split}", folder, split) for split in splits
                ]
            else:
                sources.append(InputSource(path, "datasets", stem, folder))
            continue
        lower = path.lower()
        if lower.endswith(JSONL_SUFFIXES):
            kind = "jsonl"
        elif lower.endswith(".parquet"):
            kind = "parquet"
        elif lower.endswith(".json"):
            kind = "jsonl" if _looks_like_jsonl(path) else "json"
        else:
            raise ConversionError(f"{path}: unknown file type (expected .jsonl, .json, .parquet or a datasets folder)")
        sources.append(InputSource(path, kind, stem, folder))
    _make_stems_unique(sources)
    return sources


def _make_stems_unique(sources: list[InputSource]) -> None:
    """Inputs sharing a file stem (a/train.jsonl, b/train.jsonl) would generate the same ids: prefix the folder."""
    seen: set[str] = set()
    for source in sources:
        if source.stem in seen:
            parent = os.path.basename(os.path.dirname(os.path.abspath(source.file_path)))
            candidate, number = f"{parent}-{source.stem}", 2
            while candidate in seen:
                candidate, number = f"{parent}-{source.stem}-{number}", number + 1
            source.stem = candidate
        seen.add(source.stem)


def _looks_like_jsonl(path: str) -> bool:
    """A `.json` file holding one object per line rather than one JSON document."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16).lstrip()
    if not head.startswith(b"{"):
        return False
    first_line = head.split(b"\n", 1)[0]
    try:
        json.loads(decode_text(first_line))
    except json.JSONDecodeError:
        return False
    return True
