"""`pairs`: a question and two answers, chosen and rejected (plain strings or TRL's conversational form)."""

from __future__ import annotations

from data_tools.errors import MISSING_FIELD, RowError
from data_tools.formats._fields import ParsedPair, answer_text, image_fields, optional_id, prompt_messages


NAME = "pairs"
COLUMNS = "id, image | images, question | prompt, chosen, rejected"
SAMPLE = {
    "id": "pair-17",
    "images": ["images/17.png"],
    "prompt": "How many cats are there?",
    "chosen": "There are two cats.",
    "rejected": "There are three cats and a dog.",
}


def detect(columns: set[str]) -> str | None:
    if {"chosen", "rejected"} <= columns and columns & {"question", "prompt"}:
        question = "question" if "question" in columns else "prompt"
        return f"it has '{question}', 'chosen' and 'rejected' columns"
    return None


# The row's id, read on its own so that a row rejected for another field still names its id in the rejects file
row_id = optional_id


def parse(record: dict) -> ParsedPair:
    key = "question" if "question" in record else "prompt"
    if key not in record:
        raise RowError(MISSING_FIELD, "question", "is missing (neither 'question' nor 'prompt' is present)")
    return ParsedPair(
        id=optional_id(record),
        prompt=prompt_messages(record[key], key),
        chosen=answer_text(record, "chosen"),
        rejected=answer_text(record, "rejected"),
        images=image_fields(record),
    )
