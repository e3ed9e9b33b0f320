"""Reading and writing the evaluation files (JSONL or JSON lists), with errors that name file, row and field."""

from __future__ import annotations

import json
import os
from pathlib import Path


class EvalInputError(ValueError):
    """An input file the evaluation cannot use; the message names the file, the row and the field."""


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a JSONL file (one object per line, blank lines skipped) or of a JSON file holding a list of objects.

    A `.json` file whose text starts with an object, not a list, is read as JSONL: POPE ships its JSONL files
    under `.json` names.

    Each row gets `_where` ("file:line N" or "file:row N") for error messages; callers drop it before writing.
    """
    path = Path(path)
    if not path.is_file():
        raise EvalInputError(f"{path}: no such file")
    text = read_utf8(path)
    if path.suffix == ".json" and not text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise EvalInputError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(data, list):
            raise EvalInputError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
        located = [(f"{path}:row {i}", row) for i, row in enumerate(data)]
    else:
        located = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                located.append((f"{path}:line {number}", json.loads(line)))
            except json.JSONDecodeError as error:
                raise EvalInputError(f"{path}:line {number}: not valid JSON ({error})") from None
    rows = []
    for where, row in located:
        if not isinstance(row, dict):
            raise EvalInputError(f"{where}: expected a JSON object, got {type(row).__name__}")
        rows.append({**row, "_where": where})
    return rows


def read_utf8(path: str | Path) -> str:
    """The text of `path`; a file that is not UTF-8 is an `EvalInputError` naming the line and byte."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise EvalInputError(
            f"{path}:line {line}: not UTF-8 text (byte {data[error.start]:#04x} at offset {error.start}); "
            "save the file as UTF-8"
        ) from None


def require(row: dict, field: str, kinds=(str,)):
    """`row[field]`, which must be present, of one of `kinds`, and (for strings) not empty."""
    if field not in row:
        raise EvalInputError(f"{row['_where']}: missing field {field!r}")
    value = row[field]
    if not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise EvalInputError(f"{row['_where']}: field {field!r} must be {names}, got {type(value).__name__}")
    if isinstance(value, str) and not value.strip():
        raise EvalInputError(f"{row['_where']}: field {field!r} is empty")
    return value


def row_id(row: dict) -> str:
    """The row's `id` as a string (ints are accepted: MMHal and COCO use them)."""
    return str(require(row, "id", (str, int)))


def check_unique_ids(rows: list[dict]) -> None:
    seen: dict[str, str] = {}
    for row in rows:
        key = row_id(row)
        if key in seen:
            raise EvalInputError(f"{row['_where']}: duplicate id {key!r} (first at {seen[key]})")
        seen[key] = row["_where"]


def clean(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "_where"}


def write_json(path: str | Path, value) -> None:
    """Staged beside `path` and swapped in: an interrupted write leaves the old file as it was."""
    from data_tools.outputs import write_text

    write_text(path, json.dumps(value, indent=2) + "\n")


def write_jsonl(path: str | Path, rows) -> None:
    from data_tools.outputs import write_text

    write_text(path, "".join(json.dumps(clean(row)) + "\n" for row in rows))


# Arguments of the eval commands that name files (or folders) they read; a report must not replace any of them
INPUT_ARGUMENTS = (
    "answers",
    "objects",
    "synonyms",
    "prompt_file",
    "responses",
    "questions",
    "instances",
    "captions",
    "queries",
    "annotations",
    "relation",
    "safe_words",
    "pope_dir",
    "template",
    "prompts",
    "result",
)


def input_paths(args) -> list[str]:
    """Every file the command's arguments name as an input; a folder counts with the files directly inside it (a
    report written into POPE's answers folder must not replace a split's answers)."""
    paths = []
    for name in INPUT_ARGUMENTS:
        value = getattr(args, name, None)
        for item in value if isinstance(value, list) else [value]:
            if not item:
                continue
            item = str(item).split("=", 1)[1] if name == "result" and "=" in str(item) else str(item)
            paths.append(item)
            if os.path.isdir(item):
                paths += [entry.path for entry in os.scandir(item) if entry.is_file()]
    return paths


# files an eval command reads as bytes, not text
_BINARY_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".parquet", ".arrow")


def check_inputs_are_text(args) -> None:
    """Before any work: every text input the command's arguments name is UTF-8 (every reader below decodes it so;
    a file in another encoding is one line naming it, its line and the byte, not a decoder traceback)."""
    for path in input_paths(args):
        if os.path.isfile(path) and not path.lower().endswith(_BINARY_SUFFIXES):
            read_utf8(path)


def check_report_outputs(args, names=("out", "details", "plot")) -> None:
    """Before any work: each output file is no input, no folder, not another output of this run, and replaced
    only with --overwrite."""
    from data_tools.errors import CommandError
    from data_tools.outputs import check_output, resolved

    inputs = input_paths(args)
    seen: dict[str, str] = {}
    for name in names:
        target = getattr(args, name, None)
        if not target:
            continue
        label = "--output_dir" if name == "out" else f"--{name}"  # `out` is the one output flag
        if resolved(target) in seen:
            raise CommandError(f"{label} {target} is also {seen[resolved(target)]}; name two different files")
        seen[resolved(target)] = label
        check_output(label, target, inputs, "file", getattr(args, "overwrite", False))


def check_answers_output(out: str | Path, inputs) -> None:
    """A resumable answers file: not an input, not a folder, in a writable folder (an existing one is resumed)."""
    from data_tools.outputs import check_file_target, check_not_inputs, check_writable_folder, existing

    check_not_inputs({"--output_dir": str(out)}, existing(inputs), inside_inputs=False)
    check_file_target("--output_dir", str(out))
    check_writable_folder("--output_dir", str(out))


def rows_outside(rows: list[dict], roots: list[str]) -> None:
    """--strict-paths for benchmark rows: an image file (`_image`, a Path) outside every root is refused."""
    from data_tools.images import is_inside

    for row in rows:
        image = row.get("_image")
        if isinstance(image, Path) and not is_inside(image, roots):
            shown = ", ".join(sorted({os.path.realpath(root) for root in roots}))
            raise EvalInputError(f"{row['_where']}: image {image} leads outside {shown} (--strict-paths)")
