"""Rows of any supported layout -> the dense preference dataset of docs/data_format.md, with full error accounting.

    from data_tools.convert import convert

    result = convert(["corrections.jsonl"], image_root="images/")
    result.dataset.save_to_disk("data/dense")
    print(result.report.summary())

Every row read ends up either written as a pair or rejected with a reason (`read == written + rejected`): under
`on_error="fail"` the first bad row raises `ConversionError` naming its file, row and field; under `"skip"` it is
counted, and written to the rejects file when one is given.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from data_tools.convert_chunks import ChunkResult, ChunkTask, arrow_schema, convert_chunk, dataset_features
from data_tools.errors import DUPLICATE_ID, MISSING_FIELD, ConversionError, RowError
from data_tools.fingerprint import CONVERTER_VERSION, fingerprint
from data_tools.formats import FORMAT_NAMES, FORMATS, detect_format, mismatch_hint
from data_tools.outputs import check_not_inputs
from data_tools.readers import InputSource, open_inputs
from data_tools.segments import CHANGES_CHOICES, DEFAULT_CHANGES


ON_ERROR_CHOICES = ("fail", "skip")
CHUNK_ROWS = 512
__all__ = ["CONVERTER_VERSION", "ConversionReport", "ConversionResult", "convert", "dataset_features", "fingerprint"]


@dataclass
class ConversionReport:
    """What happened to every row read."""

    read: int = 0
    written: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> rows
    with_images: int = 0  # pairs written that carry at least one image
    formats: dict[str, tuple[str, str]] = field(default_factory=dict)  # input -> (format, why it was chosen)
    rejects: list[dict] = field(default_factory=list)  # one record per rejected row (file, row, field, reason, ...)
    rejects_path: str | None = None
    # folders holding the image files that written rows reference (outputs must never replace them)
    image_folders: set[str] = field(default_factory=set, repr=False)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def check(self) -> None:
        assert self.read == self.written + self.rejected_total, (
            f"row accounting broke: read {self.read} != written {self.written} + rejected {self.rejected_total}"
        )

    def summary(self) -> str:
        lines = [
            f"rows read:      {self.read}",
            f"pairs written:  {self.written} ({self.with_images} with images)",
            f"rows rejected:  {self.rejected_total}",
        ]
        lines += [f"  {reason}: {count}" for reason, count in sorted(self.rejected.items(), key=lambda kv: -kv[1])]
        if self.rejects_path and self.rejected_total:
            lines.append(f"rejected rows and reasons: {self.rejects_path}")
        return "\n".join(lines)


@dataclass
class ConversionResult:
    dataset: Any  # datasets.Dataset
    report: ConversionReport


def _resolve_format(source: InputSource, format: str) -> tuple[str, str]:
    if format != "auto":
        return format, "given with --format"
    columns = source.columns()
    detected = detect_format(columns)
    if detected is None:
        expected = "; ".join(f"{name}: {FORMATS[name].COLUMNS}" for name in FORMAT_NAMES)
        raise ConversionError(
            f"{source.path}: cannot detect the format from its columns ({', '.join(sorted(columns)) or 'none'}). "
            f"Known formats: {expected}. Name one with --format."
        )
    return detected


def _tasks(
    sources: list[InputSource],
    formats: dict[str, tuple[str, str]],
    image_root: str | None,
    changes: str,
    strict_paths: bool,
) -> Iterator[ChunkTask]:
    for source in sources:
        root = source.folder if image_root is None else image_root
        format_name = formats[source.path][0]
        for rows in source.chunks(CHUNK_ROWS):
            yield ChunkTask(format_name, source.path, source.stem, source.row_kind, root, changes, strict_paths, rows)


def convert(
    inputs: list[str],
    format: str = "auto",
    image_root: str | None = None,
    on_error: str = "fail",
    rejects_path: str | None = None,
    changes: str = DEFAULT_CHANGES,
    num_proc: int = 1,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    strict_paths: bool = False,
    cache_dir: str | None = None,
) -> ConversionResult:
    """Convert input files into a dense preference dataset.

    Args:
        inputs: JSONL, JSON or Parquet files, or `datasets` folders written by `save_to_disk`.
        format: one of `data_tools.formats.FORMAT_NAMES`, or "auto" to detect each input's layout from its columns.
        image_root: folder that relative image paths start from; default: each input file's own folder.
        on_error: "fail" raises `ConversionError` at the first bad row; "skip" rejects it and goes on.
        rejects_path: JSONL file receiving one line per rejected row (file, row, field, reason, message).
        changes: which edits get spans, "all" or "replace-only" (see `data_tools.segments.diff_spans`).
        num_proc: worker processes converting chunks of rows in parallel (the output is the same).
        progress: show a tqdm progress bar (only on a terminal).
        log: called with one line per decision worth telling (e.g. the detected format).
        strict_paths: reject rows whose image path leaves the image root (`..`, absolute paths, symlinks out).
        cache_dir: folder for the Arrow file the rows stream into (the returned dataset is memory-mapped from it);
            default: a temporary folder removed when the process exits.
    """
    _check_options(format, on_error, changes, num_proc, image_root)
    log = log or (lambda line: None)

    sources = open_inputs(list(inputs))
    report = ConversionReport(rejects_path=rejects_path if on_error == "skip" else None)
    hints = _detect_formats(sources, format, report, log)

    from tqdm.auto import tqdm

    if rejects_path is not None:
        check_not_inputs({"rejects file": rejects_path}, [source.file_path for source in sources])
    total = sum(source.count() for source in sources)
    # id -> where it was first written, packed as input index * 2**40 + row (one int per row: memory stays small)
    first_seen: dict[str, int] = {}
    source_index = {source.path: index for index, source in enumerate(sources)}
    rejects_file = open(rejects_path, "w", encoding="utf-8") if report.rejects_path else None  # noqa: SIM115
    writer = _StreamWriter(cache_dir)
    pool = None

    def reject(error: RowError) -> None:
        report.rejected[error.reason] += 1
        if on_error == "fail":
            raise ConversionError(error.message + (hints.get(error.file, "") if error.reason == MISSING_FIELD else ""))
        record = error.to_record()
        report.rejects.append(record)
        if rejects_file is not None:
            rejects_file.write(json.dumps(record, ensure_ascii=False) + "\n")

    try:
        tasks = _tasks(sources, report.formats, image_root, changes, strict_paths)
        pool, chunk_results = _chunk_results(tasks, num_proc)
        with tqdm(total=total, unit="row", desc="converting", disable=None if progress else True) as bar:
            for chunk in chunk_results:
                keep = _keep_flags(chunk, report, reject, first_seen, sources, source_index)
                _write_chunk(chunk, keep, report, writer)
                bar.update(len(chunk.rows))
        report.check()
        dataset = writer.finish(with_images=report.with_images > 0)
    except BaseException:
        writer.discard()
        raise
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        if rejects_file is not None:
            rejects_file.close()
    return ConversionResult(dataset=dataset, report=report)


def _check_options(format: str, on_error: str, changes: str, num_proc: int, image_root: str | None) -> None:
    if format != "auto" and format not in FORMATS:
        raise ConversionError(f"unknown format {format!r}; known formats: auto, {', '.join(FORMAT_NAMES)}")
    if on_error not in ON_ERROR_CHOICES:
        raise ConversionError(f"on_error must be one of {', '.join(ON_ERROR_CHOICES)}, got {on_error!r}")
    if changes not in CHANGES_CHOICES:
        raise ConversionError(f"changes must be one of {', '.join(CHANGES_CHOICES)}, got {changes!r}")
    if num_proc < 1:
        raise ConversionError(f"num_proc must be at least 1, got {num_proc}")
    if image_root is not None and not os.path.isdir(image_root):
        raise ConversionError(f"image root {image_root}: no such folder")


def _detect_formats(sources: list[InputSource], format: str, report: ConversionReport, log) -> dict[str, str]:
    """Each input's layout into `report.formats`, told through `log` with the reason. Returns, per input, a hint
    naming the layout its columns look like when --format names another one ("" when it fits)."""
    hints = {}
    for source in sources:
        report.formats[source.path] = _resolve_format(source, format)
        if format != "auto":
            hints[source.path] = mismatch_hint(source.columns(), format)
        name, why = report.formats[source.path]
        log(f"{source.path}: {name} ({why})")
        if name in ("pairs", "corrections") and {"question", "prompt"} <= source.columns():
            log(
                f"{source.path}: rows have both 'question' and 'prompt': 'question' is the prompt, 'prompt' is ignored"
            )
    return hints


def _keep_flags(chunk: ChunkResult, report, reject, first_seen: dict, sources, source_index: dict) -> list[bool]:
    """One flag per converted row of `chunk` (False for a duplicate id, rejected); bad rows are rejected.

    `first_seen` maps each id to where it was first written, packed as input index * 2**40 + row.
    """
    keep = []
    for row, outcome in zip(chunk.rows, chunk.outcomes, strict=True):
        report.read += 1
        if isinstance(outcome, RowError):
            reject(outcome)
            continue
        if outcome in first_seen:
            first_source, first_row = divmod(first_seen[outcome], 1 << 40)
            first = sources[first_source]
            duplicate = RowError(
                DUPLICATE_ID,
                "id",
                f"duplicate id {outcome!r} (first seen at {first.path}, {first.row_kind} {first_row})",
            )
            duplicate.pair_id = outcome
            reject(duplicate.locate(chunk.source_path, row, chunk.row_kind))
            keep.append(False)
            continue
        first_seen[outcome] = (source_index[chunk.source_path] << 40) + row
        keep.append(True)
    return keep


def _chunk_results(tasks: Iterator[ChunkTask], num_proc: int):
    """(pool or None, converted chunks in input order): in `num_proc` worker processes, or here when 1."""
    if num_proc == 1:
        return None, map(convert_chunk, tasks)
    import multiprocessing

    # spawn, not fork: the parent may hold threads (Arrow, tqdm) that a forked child would inherit locked
    pool = multiprocessing.get_context("spawn").Pool(num_proc)
    return pool, _bounded_imap(pool, tasks, window=2 * num_proc)


def _write_chunk(chunk: ChunkResult, keep: list[bool], report: ConversionReport, writer) -> None:
    """Stream the kept rows of `chunk` into `writer` and count them."""
    table = chunk.table if all(keep) else chunk.table.filter(keep)
    report.written += table.num_rows
    report.with_images += sum(count > 0 for count, kept in zip(chunk.image_counts, keep, strict=True) if kept)
    report.image_folders.update(chunk.image_folders)
    writer.write(table)


def _bounded_imap(pool, tasks: Iterator[ChunkTask], window: int) -> Iterator[ChunkResult]:
    """`pool.imap` in input order, with at most `window` chunks in flight.

    `Pool.imap` feeds every task to the workers as fast as the input can be read, so a fast reader and slow workers
    would hold the whole input in memory; this keeps memory flat.
    """
    from collections import deque

    pending: deque = deque()
    for task in tasks:
        pending.append(pool.apply_async(convert_chunk, (task,)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


class _StreamWriter:
    """Appends converted chunks to one Arrow file as they arrive, so memory stays flat whatever the row count.

    The finished dataset is memory-mapped from that file (the layout `datasets` itself caches in).
    """

    def __init__(self, cache_dir: str | None):
        if cache_dir is None:
            from datasets.fingerprint import get_temporary_cache_files_directory

            cache_dir = get_temporary_cache_files_directory()  # removed when the process exits
        os.makedirs(cache_dir, exist_ok=True)
        self.path = os.path.join(cache_dir, f"converted-{os.getpid()}-{id(self):x}.arrow")
        self._writer = None

    def write(self, table) -> None:
        import pyarrow as pa

        if self._writer is None:
            self._writer = pa.ipc.new_stream(self.path, arrow_schema(with_images=True))
        if table.num_rows:
            self._writer.write_table(table)

    def finish(self, with_images: bool):
        from datasets import Dataset, DatasetInfo

        if self._writer is None:
            self.write(arrow_schema(with_images=True).empty_table())
        self._writer.close()
        dataset = Dataset.from_file(self.path, info=DatasetInfo(features=dataset_features(with_images=True)))
        return dataset if with_images else dataset.remove_columns(["images"])

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if os.path.exists(self.path):
            os.remove(self.path)
