"""RL prompts: a JSONL file of {id, image | images, question | prompt, facts, yes_no_truth, mc_answer, ...}.

Rows become TRL's conversational prompt format (`prompt` messages + `images`), keeping the columns the rewards read:
`facts` (lines), `yes_no_truth` ("yes" / "no" / null) and `mc_answer` (the right option's letter / null). A row
without an `id` is named `<file stem>-<line>`. A bad row stops the load with its file, line and field.
"""

from __future__ import annotations

import json
import os

from data_tools.errors import BAD_VALUE, MALFORMED_JSON, MISSING_FIELD, CommandError, RowError


def _row(record, image_root: str, has_facts: bool, default_id: str) -> dict:
    from data_tools.formats import check_text, image_fields, prompt_messages
    from data_tools.images import resolve_image
    from rlhfv.reward.facts import fact_lines

    if not isinstance(record, dict):
        raise RowError(MALFORMED_JSON, None, f"expected a JSON object, got {type(record).__name__}")
    if "prompt" in record:
        prompt = prompt_messages(record["prompt"], "prompt")
    elif "question" in record:
        prompt = [{"role": "user", "content": check_text(record["question"], "question")}]
    else:
        raise RowError(MISSING_FIELD, "question", "is missing (give `question` or `prompt`)")
    images = [resolve_image(value, label, image_root) for label, value in image_fields(record)]
    row_id = record.get("id")
    row = {"id": default_id if row_id is None else str(row_id), "prompt": prompt, "images": images}
    if has_facts:
        if record.get("facts") is None:
            raise RowError(MISSING_FIELD, "facts", "is missing (other rows have facts; every row needs them)")
        row["facts"] = fact_lines(record["facts"])
    truth = record.get("yes_no_truth")
    if truth is not None and str(truth).lower() not in ("yes", "no"):
        raise RowError(BAD_VALUE, "yes_no_truth", f"expected yes, no or null, got {truth!r}")
    row["yes_no_truth"] = None if truth is None else str(truth).lower()
    answer = record.get("mc_answer")
    if answer is not None and (not isinstance(answer, str) or len(answer.strip()) != 1 or not answer.isalpha()):
        raise RowError(BAD_VALUE, "mc_answer", f"expected one option letter or null, got {answer!r}")
    row["mc_answer"] = None if answer is None else answer.strip().upper()
    return row


def load_rl_prompts(path: str, image_root: str | None = None):
    """The RL prompt dataset (see the module docstring)."""
    from datasets import Dataset, Features, Image, Sequence, Value

    if not os.path.isfile(path):
        raise CommandError(f"RL prompts not found: {path}")
    image_root = image_root or os.path.dirname(os.path.abspath(path))
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append((number, json.loads(line)))
            except json.JSONDecodeError as error:
                raise CommandError(f"{path}, line {number}: not valid JSON: {error.msg} [{MALFORMED_JSON}]") from error
    if not records:
        raise CommandError(f"{path}: no prompts")
    has_facts = any(isinstance(record, dict) and record.get("facts") is not None for _, record in records)
    rows = []
    for number, record in records:
        try:
            default_id = f"{os.path.splitext(os.path.basename(path))[0]}-{number}"
            rows.append(_row(record, image_root, has_facts, default_id))
        except RowError as error:
            raise CommandError(error.locate(path, number, "line").message) from error
    features = {
        "id": Value("string"),
        "prompt": [{"role": Value("string"), "content": Value("string")}],
        "images": Sequence(Image()),
        "yes_no_truth": Value("string"),
        "mc_answer": Value("string"),
    }
    if has_facts:
        features["facts"] = Sequence(Value("string"))
    if not any(row["images"] for row in rows):
        del features["images"]
        for row in rows:
            del row["images"]
    return Dataset.from_list(rows, features=Features(features))
