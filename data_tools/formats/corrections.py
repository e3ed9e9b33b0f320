"""`corrections`: an annotator edited the model's `response` into `corrected` (chosen = corrected)."""

from __future__ import annotations

from data_tools.formats._fields import ParsedPair, image_fields, optional_id, prompt_messages, text_field


NAME = "corrections"
COLUMNS = "id, image | images, question, response, corrected"
SAMPLE = {
    "id": "coco-000123",
    "image": "images/000123.jpg",
    "question": "Describe the image.",
    "response": "A man rides a red bicycle next to a dog.",
    "corrected": "A man rides a blue bicycle.",
}


def detect(columns: set[str]) -> str | None:
    if {"response", "corrected"} <= columns:
        return "it has 'response' and 'corrected' columns"
    return None


# The row's id, read on its own so that a row rejected for another field still names its id in the rejects file
row_id = optional_id


def parse(record: dict) -> ParsedPair:
    if "question" not in record and "prompt" in record:
        prompt = prompt_messages(record["prompt"], "prompt")
    else:
        prompt = prompt_messages(text_field(record, "question"), "question")
    return ParsedPair(
        id=optional_id(record),
        prompt=prompt,
        chosen=text_field(record, "corrected"),
        rejected=text_field(record, "response"),
        images=image_fields(record),
        chosen_field="corrected",
        rejected_field="response",
    )
