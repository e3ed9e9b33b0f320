"""`rlhf-v`: the RLHF-V-Dataset layout, where `text` is a JSON string holding `question`, `chosen` and `rejected`."""

from __future__ import annotations

import json

from data_tools.errors import BAD_VALUE, MALFORMED_JSON, RowError
from data_tools.formats._fields import ParsedPair, prompt_messages, text_field
from data_tools.formats.rlaif_v import METADATA, metadata_id, metadata_images


NAME = "rlhf-v"
COLUMNS = "text (JSON: question, chosen, rejected), image {bytes, path}, ds_name, origin_dataset, origin_split, idx, image_path"
SAMPLE = {
    "ds_name": "RLHF-V-Dataset",
    "image": {"bytes": "<JPEG bytes>", "path": None},
    "text": '{"question": "What is the man holding?", "chosen": "He holds a kite.", "rejected": "He holds a red umbrella."}',
    "origin_dataset": "VQAv2",
    "origin_split": '{"model": "Muffin", "type": "question answering"}',
    "idx": 17,
    "image_path": "vqav2/COCO_train2014_000000123.jpg",
}


def detect(columns: set[str]) -> str | None:
    found = sorted(columns & METADATA)
    if "text" in columns and found:
        return f"it has a 'text' column and RLHF-V metadata ({', '.join(found)})"
    return None


# The row's id, read on its own so that a row rejected for another field still names its id in the rejects file
row_id = metadata_id


def text_object(record: dict) -> dict:
    """The row's `text` field: a JSON string holding an object (question, chosen, rejected)."""
    raw = text_field(record, "text")
    try:
        text = json.loads(raw)
    except json.JSONDecodeError as error:
        raise RowError(MALFORMED_JSON, "text", f"is not valid JSON ({error.msg} at position {error.pos})") from None
    if not isinstance(text, dict):
        raise RowError(BAD_VALUE, "text", f"expected a JSON object, got {type(text).__name__}")
    return text


def parse(record: dict) -> ParsedPair:
    text = text_object(record)
    return ParsedPair(
        id=metadata_id(record),
        prompt=prompt_messages(text_field(text, "question", "text.question"), "text.question"),
        chosen=text_field(text, "chosen", "text.chosen"),
        rejected=text_field(text, "rejected", "text.rejected"),
        images=metadata_images(record),
        chosen_field="text.chosen",
        rejected_field="text.rejected",
    )
