"""The instructions of `rlhfv feedback`, read from any layout `rlhfv convert` reads, or from a prompts file.

Each input row gives one instruction: its id, its question (the last user turn of the row's prompt) and its image.
The converter's readers (`data_tools.readers`) open the file (JSONL, JSON, Parquet, a `datasets` folder) and
`data_tools.formats` detects its layout from the columns; only the instruction is read here, never the answers
(a preference data set's chosen / rejected are not needed to sample new ones).

Images stored inside the rows (`{bytes, path}` structs as Parquet and `datasets` keep them, raw bytes, base64 text,
`data:` URIs) are decoded once, checked, and written to `images_dir` named by their content hash, so the same
picture in many rows is one file. Image paths stay paths (checked when sampling, as before).

Rows with the same (image, question) become ONE instruction (RLAIF-V's data holds several pairs per instruction):
the first row gives the id, and every merged row is listed in the merge report. A row that has no question, or no
image where its layout always has one, or an image that cannot be decoded, is a reject naming file, row and field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_tools.errors import BAD_VALUE, DUPLICATE_ID, MALFORMED_JSON, MISSING_FIELD, ConversionError, RowError
from data_tools.formats import (
    FORMAT_NAMES,
    detect_format,
    first_id,
    image_fields,
    llava_rlhf,
    optional_id,
    prompt_messages,
    rlaif_v,
    rlhf_v,
    text_field,
)


# The layout of `rlhfv eval generate` prompt files ({id, question, image}); detected when no converter layout fits.
PROMPTS = "prompts"
INSTRUCTION_FORMATS = (*FORMAT_NAMES, PROMPTS)
# Layouts whose every row is about an image: a row without one is a reject, not a text-only instruction.
NEEDS_IMAGE = ("rlhf-v", "rlaif-v", "llava-rlhf")
CHUNK_ROWS = 256


@dataclass
class Instruction:
    id: str
    question: str
    where: str  # "file:line N" (JSONL, 1-based) or "file:row N" (other inputs, 0-based)
    image: str | None = None  # as the row names it (a path), or the written file's name for an embedded image
    image_path: str | None = None  # the file to open
    merged: list[dict] = field(default_factory=list)  # [{id, where}] of later rows with the same (image, question)

    def to_json(self) -> dict:
        record = {"id": self.id, "question": self.question, "where": self.where}
        if self.image is not None:
            record.update(image=self.image, image_path=self.image_path)
        if self.merged:
            record["merged"] = self.merged
        return record


# ---- one row -> (id, question, images) per layout ----------------------------------------------------------------
def _last_user_turn(messages: list[dict]) -> str:
    # prompt_messages / the LLaVA reader already require the last message to be the user's
    return messages[-1]["content"]


def _question(record: dict, label: str = "question") -> str:
    """The last user turn of the record's `question` (a string or a message list); `label` names it in errors."""
    return _last_user_turn(prompt_messages(text_field(record, "question", label), label))


def _question_or_prompt(record: dict) -> str:
    if "question" not in record and "prompt" in record:
        return _last_user_turn(prompt_messages(record["prompt"], "prompt"))
    return _question(record)


def _rlhf_v(record: dict):
    question = _question(rlhf_v.text_object(record), "text.question")
    return rlaif_v.metadata_id(record), question, rlaif_v.metadata_images(record)


def _rlaif_v(record: dict):
    return rlaif_v.metadata_id(record), _question(record), rlaif_v.metadata_images(record)


def _llava_rlhf(record: dict):
    # conversation checks every turn and ends at the human's last question (a closing model turn is dropped)
    return optional_id(record), _last_user_turn(llava_rlhf.conversation(record)), image_fields(record)


def _plain(record: dict):
    return first_id(record), _question_or_prompt(record), image_fields(record)


EXTRACTORS = {
    "rlhf-v": _rlhf_v,
    "rlaif-v": _rlaif_v,
    "llava-rlhf": _llava_rlhf,
    "corrections": _plain,
    "pairs": _plain,
    PROMPTS: _plain,
}
assert set(EXTRACTORS) == set(INSTRUCTION_FORMATS), "every converter layout needs an instruction extractor"


def detect_instruction_format(columns: set[str]) -> tuple[str, str] | None:
    """(layout, why): the converter's detection, then the prompts layout (a question or prompt column)."""
    detected = detect_format(columns)
    if detected is not None:
        return detected
    if columns & {"question", "prompt"}:
        key = "question" if "question" in columns else "prompt"
        return PROMPTS, f"it has a '{key}' column and no answers"
    return None


# ---- images ------------------------------------------------------------------------------------------------------
_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}\s*$")


def embedded_bytes(value: Any, label: str, image_root: str) -> bytes | None:
    """The image's bytes when the row carries them (struct, raw bytes, base64 text, data URI); None for a path."""
    if isinstance(value, dict):
        data = value.get("bytes")
        if data is None:
            if not value.get("path"):
                raise RowError(MISSING_FIELD, label, "the image has neither bytes nor a path")
            return None
        if isinstance(data, str):  # a struct exported to JSON holds its bytes as base64 text
            return _b64(data, f"{label}.bytes")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise RowError(BAD_VALUE, f"{label}.bytes", f"expected bytes, got {type(data).__name__}")
        return bytes(data)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, str) or not value.strip():
        raise RowError(BAD_VALUE, label, f"expected image bytes, base64 text or a path, got {value!r:.60}")
    if value.startswith("data:"):
        return _b64(value.split(",", 1)[1] if "," in value else "", label)
    # base64 text with no data: prefix: only when no such file exists and it decodes (a path never does: '.' is
    # not in the base64 alphabet, and it is short)
    looks_encoded = len(value) > 64 and _BASE64.match(value)
    if looks_encoded and not os.path.exists(os.path.join(image_root, value[:200])):
        return _b64(value, label)
    return None


def _b64(text: str, label: str) -> bytes:
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raise RowError(BAD_VALUE, label, "holds text that is neither a path nor base64 image data") from None


def save_image(data: bytes, label: str, images_dir: Path, written: dict[str, Path] | None = None) -> Path:
    """Check that PIL decodes `data` and write it once as `<sha256[:16]>.<ext>` under `images_dir`.

    `written` ({hash: file}, the files already in `images_dir`) skips the decode of an image checked before: a
    data set with several rows per image, or a rerun (each `rlhfv iterate` round), hashes it and goes on."""
    import io

    from PIL import Image

    from data_tools.errors import IMAGE_UNREADABLE

    digest = hashlib.sha256(data).hexdigest()[:16]
    if written is not None and digest in written:
        return written[digest]
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = (image.format or "png").lower()
            image.load()
    except Exception as error:  # PIL raises many kinds for broken data
        raise RowError(
            IMAGE_UNREADABLE, label, f"PIL cannot read the embedded image ({len(data)} bytes): {error}"
        ) from None
    path = images_dir / f"{digest}.{'jpg' if kind == 'jpeg' else kind}"
    if not path.is_file():
        images_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    if written is not None:
        written[digest] = path
    return path


# ---- a whole input -----------------------------------------------------------------------------------------------
@dataclass
class ReadResult:
    instructions: list[Instruction]
    rejects: list[dict]  # {reason, where, field, detail, id?}
    rows: int  # input rows read
    formats: dict[str, tuple[str, str]]  # input -> (layout, why)

    @property
    def merged_rows(self) -> int:
        return sum(len(i.merged) for i in self.instructions)


def read_instructions(
    path: str | Path,
    images_dir: str | Path,
    format: str = "auto",
    image_root: str | None = None,
    fail=None,
    progress: bool = False,
    strict_paths: bool = False,
) -> ReadResult:
    """Every row of `path` as an instruction, a merged duplicate, or a reject. `fail(reject)` is called for each
    reject before it is recorded (it raises under on_error=fail). `strict_paths`: an image path that leads outside
    the image root is a reject."""
    from tqdm.auto import tqdm

    from data_tools.errors import CommandError
    from data_tools.readers import open_inputs

    if format != "auto" and format not in EXTRACTORS:
        raise CommandError(f"unknown prompts format {format!r}; known: auto, {', '.join(INSTRUCTION_FORMATS)}")
    try:
        sources = open_inputs([str(path)])
    except ConversionError as error:
        raise CommandError(str(error)) from None
    images_dir = Path(images_dir)
    # images written by an earlier run (or round): {content hash: file}
    written = (
        {p.name.split(".")[0]: p for p in images_dir.iterdir() if ".tmp-" not in p.name} if images_dir.is_dir() else {}
    )
    by_key: dict[tuple, Instruction] = {}
    by_id: dict[str, Instruction] = {}
    result = ReadResult([], [], 0, {})
    for source in sources:
        rows, result.formats[source.path] = _source_layout(source, format)
        name = result.formats[source.path][0]
        root = image_root or source.folder
        bar = tqdm(total=rows, desc="prompts", unit="row", disable=not progress)
        try:
            for chunk in source.chunks(CHUNK_ROWS):
                bar.update(len(chunk))
                for number, payload in chunk:
                    result.rows += 1
                    where = f"{source.path}:{source.row_kind} {number}"
                    try:
                        record = _record(payload)
                        row_id, question, images = EXTRACTORS[name](record)
                        instruction = _instruction(
                            row_id or f"{source.stem}-{number}",
                            question,
                            images,
                            name,
                            where,
                            root,
                            images_dir,
                            written,
                            strict_paths,
                        )
                    except RowError as error:
                        reject = {"reason": error.reason, "where": where, "field": error.field, "detail": error.detail}
                        if fail is not None:
                            fail(reject)
                        result.rejects.append(reject)
                        continue
                    _add(instruction, by_key, by_id, result, fail)
        except ConversionError as error:
            raise CommandError(str(error)) from None
        finally:
            bar.close()
    return result


def _source_layout(source, format: str) -> tuple[int, tuple[str, str]]:
    """(rows, (layout, why)) of one input; an empty input, or one whose layout cannot be told, is a CommandError."""
    from data_tools.errors import CommandError

    try:
        rows = source.count()
        if rows == 0:
            raise CommandError(f"{source.path}: holds no rows (an empty prompts file)")
        if format != "auto":
            return rows, (format, "given with --prompts-format")
        detected = detect_instruction_format(source.columns())
    except ConversionError as error:
        raise CommandError(str(error)) from None
    if detected is None:
        raise CommandError(
            f"{source.path}: cannot detect the layout from its columns "
            f"({', '.join(sorted(source.columns())) or 'none'}); known: {', '.join(INSTRUCTION_FORMATS)}. "
            "Name one with --prompts-format."
        )
    return rows, detected


def _record(payload) -> dict:
    if isinstance(payload, bytes):
        from data_tools.readers import decode_text

        try:
            payload = json.loads(decode_text(payload))
        except json.JSONDecodeError as error:
            raise RowError(MALFORMED_JSON, None, f"not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(payload, dict):
        raise RowError(BAD_VALUE, None, f"expected an object, got {type(payload).__name__}")
    return payload


def _instruction(row_id, question, images, name, where, root, images_dir, written, strict_paths) -> Instruction:
    instruction = Instruction(row_id, question, where)
    if not images:
        if name in NEEDS_IMAGE:
            raise RowError(MISSING_FIELD, "image", f"is missing: every {name} row is about an image")
        return instruction
    if len(images) > 1:
        raise RowError(BAD_VALUE, "images", f"holds {len(images)} images; an instruction takes one")
    label, value = images[0]
    data = embedded_bytes(value, label, root)
    if data is not None:
        saved = save_image(data, label, images_dir, written)
        instruction.image, instruction.image_path = str(Path(images_dir.name) / saved.name), str(saved.resolve())
    else:
        instruction.image = value.get("path") if isinstance(value, dict) else value
        instruction.image_path = image_path(value, label, root, strict_paths)
    return instruction


def image_path(value, label: str, root: str, strict_paths: bool) -> str:
    """The file an image path names. A URL (MMHal-Bench's image_src) names the file of its last path part in the
    image root, as `rlhfv eval mmhal` finds it; with `strict_paths` a path may not lead outside the root."""
    from urllib.parse import urlparse

    from data_tools.errors import IMAGE_OUTSIDE_ROOT
    from data_tools.images import image_file

    if isinstance(value, str):
        text_field({label: value}, label)  # a path with bytes that are not UTF-8 names no file
    if isinstance(value, str) and re.match(r"(?i)^(https?|ftp)://", value):
        value = Path(urlparse(value).path).name
        if not value:
            raise RowError(BAD_VALUE, label, "is a URL with no file name at its end")
    path = image_file(value, root)
    if path is None:
        raise RowError(BAD_VALUE, label, f"expected an image path or image data, got {value!r:.60}")
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    if strict_paths and real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise RowError(
            IMAGE_OUTSIDE_ROOT, label, f"image path {value!r} leads outside the image root {real_root} (strict_paths)"
        )
    return path


def _add(instruction: Instruction, by_key: dict, by_id: dict, result: ReadResult, fail) -> None:
    """Keep `instruction`, merge it into an earlier one with the same (image, question), or reject a reused id."""
    key = (instruction.image_path, instruction.question)
    first = by_key.get(key)
    if first is not None:
        first.merged.append({"id": instruction.id, "where": instruction.where})
        return
    if instruction.id in by_id:
        other = by_id[instruction.id]
        reject = {
            "reason": DUPLICATE_ID,
            "where": instruction.where,
            "field": "id",
            "detail": f"id {instruction.id!r} is also {other.where}, with another image or question",
        }
        if fail is not None:
            fail(reject)
        result.rejects.append(reject)
        return
    by_key[key] = by_id[instruction.id] = instruction
    result.instructions.append(instruction)
