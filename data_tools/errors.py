"""Errors the converter reports (one bad row, named by file, row and field, or a whole input it cannot read), and
the one-line command error every `rlhfv` subcommand raises."""

from __future__ import annotations


# Why a row was rejected: stable names, used in the closing summary and in the rejects file.
MALFORMED_JSON = "malformed_json"
MISSING_FIELD = "missing_field"
EMPTY_FIELD = "empty_field"
BAD_VALUE = "bad_value"
NON_UTF8 = "non_utf8"
IMAGE_MISSING = "image_missing"
IMAGE_UNREADABLE = "image_unreadable"
IMAGE_OUTSIDE_ROOT = "image_outside_root"
UNCHANGED = "unchanged"
DUPLICATE_ID = "duplicate_id"
REASONS = (
    MALFORMED_JSON,
    MISSING_FIELD,
    EMPTY_FIELD,
    BAD_VALUE,
    NON_UTF8,
    IMAGE_MISSING,
    IMAGE_UNREADABLE,
    IMAGE_OUTSIDE_ROOT,
    UNCHANGED,
    DUPLICATE_ID,
)


class CommandError(Exception):
    """A failure to report in one line, without a traceback, with exit code 1 (the `rlhfv` program's contract).

    It lives here, at the bottom of the import graph, so that `data_tools` and `rlhfv` can both raise it without
    `data_tools` importing anything from `rlhfv`.
    """


class ConversionError(ValueError):
    """The conversion cannot go on: a bad row under `on_error="fail"`, or an input that cannot be read at all."""


class RowError(Exception):
    """One input row that cannot become a preference pair.

    Format readers raise it with `reason`, `field` and `detail`; the converter adds where the row lives (`file`,
    `row`, and `row_kind`: "line" for JSONL, 1-based, or "row" for the others, 0-based).
    """

    def __init__(self, reason: str, field: str | None, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.field = field
        self.detail = detail
        self.file: str | None = None
        self.row: int | None = None
        self.row_kind = "row"
        self.pair_id: str | None = None

    def locate(self, file: str, row: int, row_kind: str) -> RowError:
        self.file, self.row, self.row_kind = file, row, row_kind
        return self

    @property
    def message(self) -> str:
        where = f"{self.file}, {self.row_kind} {self.row}" if self.file is not None else "row"
        field = f", field '{self.field}'" if self.field else ""
        return f"{where}{field}: {self.detail} [{self.reason}]"

    def __str__(self) -> str:
        return self.message

    def to_record(self) -> dict:
        """The line written to the rejects file."""
        return {
            "file": self.file,
            self.row_kind: self.row,
            "field": self.field,
            "reason": self.reason,
            "id": self.pair_id,
            "message": self.message,
        }

    def __reduce__(self):
        # Travel between worker processes with the location attached.
        return _rebuild_row_error, (
            self.reason,
            self.field,
            self.detail,
            self.file,
            self.row,
            self.row_kind,
            self.pair_id,
        )


def _rebuild_row_error(reason, field, detail, file, row, row_kind, pair_id) -> RowError:
    error = RowError(reason, field, detail)
    error.file, error.row, error.row_kind, error.pair_id = file, row, row_kind, pair_id
    return error
