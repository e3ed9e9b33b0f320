"""Reward-model training data: LLaVA-RLHF-style preferences with a `facts` field per row.

Two inputs are read:
- a JSONL or JSON file in LLaVA-RLHF's layout (`rlhfv convert --format llava-rlhf` reads the same rows): `id`,
  `image`, `conversations`, `output_1`, `output_2`, `preference`, plus `facts` (see `rlhfv.reward.facts`). Rows are
  parsed by `data_tools.formats.llava_rlhf`, so errors name the file, the line and the field;
- a folder written by `rlhfv convert` or `rlhfv reward-pairs` (a dense preference dataset), with an optional `facts`
  column.

The result is a `datasets.Dataset` with `prompt` (messages), `chosen` and `rejected` (strings), `images` and, unless
facts are off, `facts` (a list of lines). Every input row is either kept or reported with its reason.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

from data_tools.errors import MALFORMED_JSON, MISSING_FIELD, CommandError, RowError


logger = logging.getLogger(__name__)


@dataclass
class LoadReport:
    read: int = 0
    kept: int = 0
    rejected: list[str] = field(default_factory=list)  # one message per rejected row

    def summary(self) -> str:
        return f"{self.read} rows read, {self.kept} kept, {len(self.rejected)} rejected"


def load_reward_data(
    path: str,
    use_facts: bool,
    image_root: str | None = None,
    on_error: str = "fail",
    image_captions: str | None = None,
):
    """Return `(dataset, report)`. `on_error`: `fail` raises `CommandError` at the first bad row; `skip` leaves the
    row out and records why in the report (and the log).

    `image_captions` is a JSON file mapping an image's file name to its captions (LLaVA-RLHF's
    `image_to_caption.json`): a row without `facts` takes its image's captions as its facts.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be fail or skip, got {on_error!r}")
    if os.path.isdir(path):
        return _load_dense_folder(path, use_facts)
    if not os.path.isfile(path):
        raise CommandError(f"reward data not found: {path}")
    captions = load_image_captions(image_captions) if image_captions and use_facts else None
    image_root = image_root or os.path.dirname(os.path.abspath(path))
    return _load_llava_rlhf_file(path, use_facts, image_root, on_error, captions)


def load_image_captions(path: str) -> dict[str, list[str]]:
    """{image file name: [captions]}, keyed by base name so that `COCO_train2014_000000057870.jpg` and
    `train2014/COCO_train2014_000000057870.jpg` find the same entry."""
    try:
        with open(path, encoding="utf-8") as handle:
            mapping = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise CommandError(f"image captions {path}: cannot read it as JSON ({error})") from error
    if not isinstance(mapping, dict):
        raise CommandError(f"image captions {path}: expected a JSON object {{image file name: [captions]}}")
    captions = {}
    for image, value in mapping.items():
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise CommandError(f"image captions {path}: entry {image!r} is not a list of strings")
        captions[os.path.basename(image)] = value
    return captions


def _records(path: str):
    """(row label kind, row number, record or RowError) for every row of a JSONL or JSON-list file."""
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        text = handle.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as error:
            raise CommandError(f"{path}: not valid JSON: {error}") from error
        for index, record in enumerate(records):
            yield "row", index, record
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield "line", number, json.loads(line)
        except json.JSONDecodeError as error:
            yield "line", number, RowError(MALFORMED_JSON, None, f"not valid JSON: {error.msg}")


def _load_llava_rlhf_file(path: str, use_facts: bool, image_root: str, on_error: str, captions: dict | None):
    from datasets import Dataset, Features, Image, Sequence, Value

    from data_tools.formats import llava_rlhf
    from data_tools.images import resolve_image
    from rlhfv.reward.facts import fact_lines

    report = LoadReport()
    rows = []
    for kind, number, record in _records(path):
        report.read += 1
        try:
            if isinstance(record, RowError):
                raise record
            if not isinstance(record, dict):
                raise RowError(MALFORMED_JSON, None, f"expected a JSON object, got {type(record).__name__}")
            pair = llava_rlhf.parse(record)
            images = [resolve_image(value, label, image_root) for label, value in pair.images]
            row = {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected, "images": images}
            if use_facts:
                facts = record.get("facts")
                if facts is None and captions is not None and isinstance(record.get("image"), str):
                    facts = captions.get(os.path.basename(record["image"]))
                if facts is None:
                    hint = " and its image is not in `image_captions`" if captions is not None else ""
                    raise RowError(
                        MISSING_FIELD, "facts", f"is missing{hint} (train the plain reward model with `facts: none`)"
                    )
                row["facts"] = fact_lines(facts)
            rows.append(row)
            report.kept += 1
        except RowError as error:
            error.locate(path, number, kind)
            if on_error == "fail":
                raise CommandError(f"{error.message} (set `on_error: skip` to leave such rows out)") from error
            report.rejected.append(error.message)
            logger.warning("Skipped %s", error.message)
    if not rows:
        raise CommandError(f"{path}: no usable rows ({report.summary()})")
    has_images = any(row["images"] for row in rows)
    features = {
        "prompt": [{"role": Value("string"), "content": Value("string")}],
        "chosen": Value("string"),
        "rejected": Value("string"),
    }
    if has_images:
        features["images"] = Sequence(Image())
    else:
        for row in rows:
            del row["images"]
    if use_facts:
        features["facts"] = Sequence(Value("string"))
    return Dataset.from_list(rows, features=Features(features)), report


def _load_dense_folder(path: str, use_facts: bool):
    from datasets import load_from_disk

    dataset = load_from_disk(path)
    if isinstance(dataset, dict):
        if "train" not in dataset:
            raise CommandError(f"{path}: a dataset dictionary without a `train` split")
        dataset = dataset["train"]
    missing = {"prompt", "chosen", "rejected"} - set(dataset.column_names)
    if missing:
        raise CommandError(f"{path}: the dataset lacks the columns {sorted(missing)} (see docs/data_format.md)")
    if use_facts and "facts" not in dataset.column_names:
        raise CommandError(f"{path}: no `facts` column; train the plain reward model with `facts: none`")

    def flatten(row):
        # The dense format keeps answers as one assistant message; the reward model wants the text
        out = {key: _answer_text(row[key]) for key in ("chosen", "rejected")}
        return out

    keep = [c for c in ("prompt", "chosen", "rejected", "images", "facts") if c in dataset.column_names]
    if not use_facts:
        keep = [c for c in keep if c != "facts"]
    dataset = dataset.select_columns(keep).map(flatten, desc="reading answers")
    report = LoadReport(read=len(dataset), kept=len(dataset))
    return dataset, report


def _answer_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        content = value[0].get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(part.get("text", "") for part in content if part.get("type") == "text")
    raise CommandError(f"expected an answer as a string or one assistant message, got {value!r}")
