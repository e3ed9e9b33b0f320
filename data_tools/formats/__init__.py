"""One reader per input layout, in one table that `--format auto` walks.

Each reader module has `NAME`, `COLUMNS` (a one-line description), `SAMPLE` (a sample row, for the docs),
`detect(columns) -> reason | None`, `parse(record) -> ParsedPair` (raising `RowError` for a bad row) and
`row_id(record) -> str | None` (the id alone, for the rejects file of a row that fails elsewhere).
"""

from __future__ import annotations

from types import ModuleType

from data_tools.formats import corrections, llava_rlhf, pairs, rlaif_v, rlhf_v

# the field readers every layout shares, public for the other readers of rows (instructions, RL prompts)
from data_tools.formats._fields import (
    ParsedPair,
    check_text,
    first_id,
    image_fields,
    optional_id,
    prompt_messages,
    strip_image_placeholder,
    text_field,
)


# Detection tries the layouts in this order: the most specific first (`rlaif-v` is `pairs` plus metadata).
FORMATS: dict[str, ModuleType] = {module.NAME: module for module in (rlhf_v, llava_rlhf, corrections, rlaif_v, pairs)}
FORMAT_NAMES = tuple(FORMATS)


def detect_format(columns: set[str]) -> tuple[str, str] | None:
    """(format name, why) for the first layout whose columns match, or None."""
    for name, module in FORMATS.items():
        reason = module.detect(columns)
        if reason is not None:
            return name, reason
    return None


def mismatch_hint(columns: set[str], given: str) -> str:
    """When a layout named with --format does not fit the columns but another does: a hint naming that one."""
    if FORMATS[given].detect(columns) is not None:
        return ""
    detected = detect_format(columns)
    if detected is None or detected[0] == given:
        return ""
    name, why = detected
    return f"; the file looks like `{name}` ({why}): use --format {name} (or auto)"


__all__ = [
    "FORMATS",
    "FORMAT_NAMES",
    "ParsedPair",
    "check_text",
    "detect_format",
    "first_id",
    "mismatch_hint",
    "image_fields",
    "optional_id",
    "prompt_messages",
    "strip_image_placeholder",
    "text_field",
]
