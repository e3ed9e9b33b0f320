"""`llava-rlhf`: LLaVA-RLHF's human preference data: a conversation, two outputs and which one people preferred."""

from __future__ import annotations

from data_tools.errors import BAD_VALUE, MISSING_FIELD, RowError
from data_tools.formats._fields import ParsedPair, check_text, image_fields, optional_id, strip_image_placeholder


NAME = "llava-rlhf"
COLUMNS = "id, image, conversations [{from, value}], output_1 {from, value}, output_2 {from, value}, preference (1|2), hallucination"
SAMPLE = {
    "id": "GQA_3217",
    "image": "COCO_train2014_000000057870.jpg",
    "conversations": [{"from": "human", "value": "<image>\nWhat is on the table?"}, {"from": "gpt", "value": "..."}],
    "output_1": {"from": "llava", "value": "A laptop and a cup of coffee."},
    "output_2": {"from": "llava", "value": "A laptop, a cup of coffee and a cat."},
    "preference": 1,
    "hallucination": 1,
}
# LLaVA's speaker names -> chat roles
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def detect(columns: set[str]) -> str | None:
    if {"conversations", "output_1", "output_2", "preference"} <= columns:
        return "it has 'conversations', 'output_1', 'output_2' and 'preference' columns"
    return None


def _conversation(record: dict) -> list[dict[str, str]]:
    """The prompt: the conversation up to the human's last question.

    LLaVA-RLHF's released preference file ends each conversation with the model's turn, which its reward-model
    loader (RLHF/data_utils/data_utils_rm.py) asserts is from "gpt" and replaces with output_1 / output_2; that
    turn is dropped here for the same reason. A conversation wrapped once more in a list is unwrapped, as there.
    """
    if "conversations" not in record:
        raise RowError(MISSING_FIELD, "conversations", "is missing")
    turns = record["conversations"]
    if isinstance(turns, list) and len(turns) == 1 and isinstance(turns[0], list):
        turns = turns[0]
    if not isinstance(turns, list) or not turns:
        raise RowError(BAD_VALUE, "conversations", "expected a non-empty list of {from, value} turns")
    messages = []
    for index, turn in enumerate(turns):
        where = f"conversations[{index}]"
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise RowError(BAD_VALUE, where, "expected a turn {'from': ..., 'value': ...}")
        role = ROLES.get(turn["from"]) if isinstance(turn["from"], str) else None
        if role is None:
            raise RowError(
                BAD_VALUE, f"{where}.from", f"unknown speaker {turn['from']!r} (expected one of {', '.join(ROLES)})"
            )
        if role == "assistant" and index == len(turns) - 1:
            break  # the model's turn that output_1 / output_2 replace: its value is not part of the prompt
        text = strip_image_placeholder(check_text(turn["value"], f"{where}.value"))
        messages.append({"role": role, "content": check_text(text, f"{where}.value")})
    if not messages or messages[-1]["role"] != "user":
        raise RowError(
            BAD_VALUE,
            "conversations",
            "must end with the human's question, or with the model's turn after it (which output_1 and output_2 "
            "replace, as in LLaVA-RLHF's released data)",
        )
    return messages


# public: other readers of LLaVA-RLHF records (rlhfv feedback's instructions) take a record's turns from here
conversation = _conversation


def _output(record: dict, key: str) -> str:
    if key not in record:
        raise RowError(MISSING_FIELD, key, "is missing")
    value = record[key]
    if isinstance(value, dict):
        if "value" not in value:
            raise RowError(MISSING_FIELD, f"{key}.value", "is missing")
        speaker = value.get("from")
        if isinstance(speaker, str) and ROLES.get(speaker) in ("user", "system"):
            raise RowError(BAD_VALUE, f"{key}.from", f"is {speaker!r}; an output must be the model's answer")
        return check_text(value["value"], f"{key}.value")
    return check_text(value, key)


# The row's id, read on its own so that a row rejected for another field still names its id in the rejects file
row_id = optional_id


def parse(record: dict) -> ParsedPair:
    if "preference" not in record:
        raise RowError(MISSING_FIELD, "preference", "is missing")
    preference = record["preference"]
    if preference not in (1, 2, "1", "2") or isinstance(preference, bool):
        raise RowError(BAD_VALUE, "preference", f"expected 1 or 2, got {preference!r}")
    preferred = int(preference)
    outputs = {1: _output(record, "output_1"), 2: _output(record, "output_2")}
    return ParsedPair(
        id=optional_id(record),
        prompt=_conversation(record),
        chosen=outputs[preferred],
        rejected=outputs[3 - preferred],
        images=image_fields(record),
        chosen_field=f"output_{preferred}",
        rejected_field=f"output_{3 - preferred}",
    )
