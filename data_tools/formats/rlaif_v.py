"""`rlaif-v`: the RLAIF-V-Dataset layout: top-level `question`, `chosen`, `rejected` plus RLAIF-V's metadata."""

from __future__ import annotations

from data_tools.formats._fields import ParsedPair, check_text, image_fields, optional_id, prompt_messages, text_field


NAME = "rlaif-v"
COLUMNS = "question, chosen, rejected, image {bytes, path}, ds_name, origin_dataset, origin_split, idx, image_path"
SAMPLE = {
    "ds_name": "RLAIF-V-Dataset",
    "image": {"bytes": "<JPEG bytes>", "path": None},
    "question": "Describe the scene.",
    "chosen": "Two people walk along a beach.",
    "rejected": "Two people and a dog walk along a beach at sunset.",
    "origin_dataset": "COCO",
    "origin_split": '{"model": "OmniLMM-12B", "feedback_model": "OmniLMM-12B", "type": "detailed description"}',
    "idx": "OmniLMM-12B_OmniLMM-12B_17",
    "image_path": "coco/train2014/COCO_train2014_000000000017.jpg",
}
# Metadata columns shared by the RLHF-V and RLAIF-V layouts; detection needs at least one.
METADATA = {"ds_name", "origin_dataset", "origin_split", "idx", "image_path"}


def detect(columns: set[str]) -> str | None:
    found = sorted(columns & METADATA)
    if {"question", "chosen", "rejected"} <= columns and found:
        return f"it has 'question', 'chosen', 'rejected' and RLAIF-V metadata ({', '.join(found)})"
    return None


def metadata_id(record: dict) -> str | None:
    """`<ds_name>-<idx>` (or `idx` alone); None when the row has no `idx`."""
    idx = optional_id(record, "idx")
    if idx is None:
        return None
    ds_name = record.get("ds_name")
    if isinstance(ds_name, str) and ds_name.strip():
        return f"{check_text(ds_name, 'ds_name')}-{idx}"
    return idx


def metadata_images(record: dict) -> list:
    """The embedded `image`, or the file named by `image_path` when the row carries no image itself."""
    images = image_fields(record)
    if not images and record.get("image_path"):
        images = [("image_path", record["image_path"])]
    return images


# The row's id, read on its own so that a row rejected for another field still names its id in the rejects file
row_id = metadata_id


def parse(record: dict) -> ParsedPair:
    return ParsedPair(
        id=metadata_id(record),
        prompt=prompt_messages(text_field(record, "question"), "question"),
        chosen=text_field(record, "chosen"),
        rejected=text_field(record, "rejected"),
        images=metadata_images(record),
    )
