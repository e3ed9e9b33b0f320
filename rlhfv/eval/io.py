"""Reading and writing the evaluation files (JSONL or JSON lists), with errors that name file, row and field."""

from __future__ import annotations

import json
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
    text = path.read_text(encoding="utf-8")
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")


def write_jsonl(path: str | Path, rows) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(clean(row)) + "\n")
