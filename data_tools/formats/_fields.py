"""Field access shared by the format readers: every failure names the field and says what is wrong with it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from data_tools.errors import BAD_VALUE, EMPTY_FIELD, MISSING_FIELD, NON_UTF8, RowError


@dataclass
class ParsedPair:
    """What a format reader extracts from one input row, before images are checked and segments computed."""

    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    # (field label for error messages, image value as stored: dict {bytes, path}, bytes, path or data URI)
    images: list[tuple[str, Any]] = field(default_factory=list)
    id: str | None = None
    # where the answers came from, for error messages
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"


# LLaVA-style image placeholders and the line break that usually goes with them
_IMAGE_PLACEHOLDER = re.compile(r"\n?<image>\n?")


def strip_image_placeholder(text: str) -> str:
    return _IMAGE_PLACEHOLDER.sub(" ", text).strip()


def check_text(value: Any, label: str) -> str:
    """`value` as a non-empty, valid UTF-8 string."""
    if not isinstance(value, str):
        if value is None:
            raise RowError(MISSING_FIELD, label, "is null")
        raise RowError(BAD_VALUE, label, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise RowError(EMPTY_FIELD, label, "is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        # Undecodable bytes reach here as lone surrogates (files are decoded with errors="surrogateescape")
        raise RowError(NON_UTF8, label, f"is not valid UTF-8 text (bad character at position {error.start})") from None
    return value


def text_field(record: dict, key: str, label: str | None = None) -> str:
    label = label or key
    if key not in record:
        raise RowError(MISSING_FIELD, label, "is missing")
    return check_text(record[key], label)


def optional_id(record: dict, key: str = "id") -> str | None:
    """The row's id when it has one (null counts as none); ints are accepted and turned into strings."""
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowError(BAD_VALUE, key, f"expected a string or an integer, got {type(value).__name__}")
    return check_text(str(value), key)


# One image under another name, as public data sets spell it (RLAIF-V's prompt files: image_path; MMHal-Bench:
# image_src, a URL whose file name is looked up in the image folder), in the order they are tried after `image`
IMAGE_KEYS = tuple(
    "image_path image_file image_src image_url image_name img img_path img_file img_src img_url picture photo".split()
)
# Words that make a column about an image without being one (MMHal's image_id and image_content, captions, sizes)
_NOT_AN_IMAGE = set(
    "id ids content caption captions size width height hash sha256 md5 format mode root folder dir count description "
    "tags labels objects annotations type topic token tokens question text".split()
)
_IMAGE_WORDS = ("image", "img", "picture", "photo")
# Row ids under the names public files use (RLAIF-V's prompt files: ds_question_id; POPE, LLaVA: question_id)
ID_KEYS = ("id", "question_id", "ds_question_id", "sample_id", "idx")


def looks_like_image_key(key: str) -> bool:
    """A column that by its name holds an image (a path, bytes, a URL) that the readers do not know by name."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)  # imageId -> image_Id
    words = {word.lower() for word in re.split(r"[_\-\s.]+", spaced) if word}
    about_image = any(word.startswith(_IMAGE_WORDS) or word.endswith(_IMAGE_WORDS) for word in words)
    return about_image and not words & _NOT_AN_IMAGE


def image_fields(record: dict) -> list[tuple[str, Any]]:
    """The row's images: from `images` (a list) or `image` (one), else from the first of `IMAGE_KEYS` the row has.
    None when the row has no image; a row with a column that looks like an image but that no rule can place is
    refused naming that column (an image is never dropped in silence)."""
    if record.get("images") is not None and record.get("image") is not None:
        raise RowError(BAD_VALUE, "images", "the row has both 'image' and 'images'; keep one")
    if record.get("images") is not None:
        images = record["images"]
        if not isinstance(images, list):
            raise RowError(BAD_VALUE, "images", f"expected a list of images, got {type(images).__name__}")
        return [(f"images[{index}]", value) for index, value in enumerate(images)]
    if record.get("image") is not None:
        return [("image", record["image"])]
    for key in IMAGE_KEYS:
        if record.get(key) is not None:
            return [(key, record[key])]
    unknown = sorted(key for key, value in record.items() if value is not None and looks_like_image_key(key))
    if unknown:
        raise RowError(
            BAD_VALUE,
            unknown[0],
            f"looks like an image but is not a column rlhfv reads images from; rename it to 'image' (known: "
            f"image, images, {', '.join(IMAGE_KEYS)})",
        )
    return []


def first_id(record: dict) -> str | None:
    """The row's id under the first of `ID_KEYS` it has (`id`, then `question_id`, `ds_question_id`, ...)."""
    for key in ID_KEYS:
        if record.get(key) is not None:
            return optional_id(record, key)
    return None


def message_text(content: Any, label: str) -> str:
    """The text of a message's content: a string, or TRL's list of parts ({"type": "text", "text": ...})."""
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or "type" not in part:
                raise RowError(BAD_VALUE, f"{label}[{index}]", "expected a content part {'type': ..., ...}")
            if part["type"] == "text":
                texts.append(check_text(part.get("text"), f"{label}[{index}].text"))
        content = " ".join(texts)
    return check_text(content, label)


def prompt_messages(value: Any, label: str) -> list[dict[str, str]]:
    """A prompt as conversational messages: a plain string becomes one user message."""
    if isinstance(value, str):
        return [{"role": "user", "content": strip_image_placeholder(check_text(value, label))}]
    if not isinstance(value, list) or not value:
        raise RowError(BAD_VALUE, label, "expected a string or a non-empty list of messages")
    messages = []
    for index, message in enumerate(value):
        where = f"{label}[{index}]"
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise RowError(BAD_VALUE, where, "expected a message {'role': ..., 'content': ...}")
        text = strip_image_placeholder(message_text(message["content"], f"{where}.content"))
        messages.append({"role": check_text(message["role"], f"{where}.role"), "content": check_text(text, where)})
    if messages[-1]["role"] != "user":
        raise RowError(BAD_VALUE, label, f"the last message must be from the user, not {messages[-1]['role']!r}")
    return messages


def answer_text(record: dict, key: str) -> str:
    """An answer: a plain string, or TRL's conversational form (a list holding one assistant message)."""
    if key not in record:
        raise RowError(MISSING_FIELD, key, "is missing")
    value = record[key]
    if isinstance(value, list):
        if len(value) != 1 or not isinstance(value[0], dict) or "content" not in value[0]:
            raise RowError(BAD_VALUE, key, "expected a string or a list holding one assistant message")
        role = value[0].get("role", "assistant")
        if role != "assistant":
            raise RowError(BAD_VALUE, f"{key}[0].role", f"is {role!r}; an answer must be the assistant's message")
        return message_text(value[0]["content"], f"{key}[0].content")
    return check_text(value, key)
