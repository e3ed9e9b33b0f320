"""MMHal-Bench (LLaVA-RLHF): 96 image questions, 8 question types of 12, rated 0-6 by a judge model.

The official response template (`response_template.json`) is a JSON list of 96 items with `question_type`,
`question_topic`, `image_id`, `image_src`, `image_content` (a list of object annotations), `question`, `gt_answer`
and `model_answer`. Generation fills `model_answer` and keeps the order: the per-type scores take the items by
index mod 8 (attribute, adversarial, comparison, counting, relation, environment, holistic, other). Images are the
benchmark's image folder, found by the file name at the end of each item's `image_src` URL.

Reported, as in the benchmark's script: the average rating (0-6), the hallucination rate (share rated below 3) and
the 8 per-type average ratings.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

from rlhfv.eval.io import EvalInputError, read_rows, require
from rlhfv.eval.judge import QUESTION_TYPES


TEMPLATE_FIELDS = ("question_type", "image_src", "image_content", "question", "gt_answer")


def read_template(path: str | Path) -> list[dict]:
    """The template's items (each with `_where`), checked for the fields generation and judging need."""
    path = Path(path)
    if path.suffix != ".json":
        raise EvalInputError(f"{path}: MMHal-Bench's response file is a JSON list (response_template.json)")
    rows = read_rows(path)
    for row in rows:
        for name in TEMPLATE_FIELDS:
            if name not in row:
                raise EvalInputError(f"{row['_where']}: missing field {name!r} (not an MMHal-Bench response file?)")
        require(row, "question")
        require(row, "image_src")
    return rows


def image_file(row: dict, images: Path) -> Path:
    """The local copy of an item's image: the file name at the end of its `image_src` URL, in `images`."""
    name = Path(urlparse(row["image_src"]).path).name
    if not name:
        raise EvalInputError(f"{row['_where']}: field 'image_src' has no file name: {row['image_src']!r}")
    return images / name


def prompt_rows(template: list[dict], images: str | Path) -> list[dict]:
    """Generation rows; an item's id is its index in the template (the order the per-type scores rely on)."""
    images = Path(images)
    return [
        {
            "id": str(index),
            "question": row["question"],
            "image": image_file(row, images).name,
            "_image": image_file(row, images),
            "_where": row["_where"],
        }
        for index, row in enumerate(template)
    ]


def fill_template(template: list[dict], answers: dict[str, dict]) -> list[dict]:
    """A copy of the template with every `model_answer` filled, same order and fields."""
    filled = []
    for index, row in enumerate(template):
        if str(index) not in answers:
            raise EvalInputError(f"{row['_where']}: no answer generated for item {index}")
        item = {k: v for k, v in row.items() if k != "_where"}
        item["model_answer"] = answers[str(index)]["answer"]
        filled.append(item)
    return filled


def write_filled(path: str | Path, filled: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(filled, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)  # the template may be overwritten in place: never leave it half-written


def judge_inputs(path: str | Path, allow_missing: bool = False) -> tuple[list[dict], list[str]]:
    """Judge items from a filled response file (id = the item's index) and the ids of unanswered items.

    An item with an empty or absent `model_answer` is unanswered: an error, or with `allow_missing` left out and
    listed. A file whose `question_type` names disagree with the index-mod-8 rule was reordered or filtered: its
    per-type scores would be wrong, so it is refused.
    """
    from rlhfv.eval.judge import normalize_items

    rows = read_template(path)
    missing = []
    for index, row in enumerate(rows):
        answer = row.get("model_answer")
        if answer is not None and not isinstance(answer, str):
            raise EvalInputError(f"{row['_where']}: field 'model_answer' must be text")
        if not answer or not answer.strip():
            missing.append(str(index))
        expected = QUESTION_TYPES[index % 8]
        if isinstance(row["question_type"], str) and row["question_type"].strip().lower() != expected:
            raise EvalInputError(
                f"{row['_where']}: question_type {row['question_type']!r} but item {index} must be {expected!r} "
                "(index mod 8): the file was reordered or filtered, and the per-type scores would be wrong"
            )
    if missing and not allow_missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise EvalInputError(
            f"{path}: {len(missing)} of {len(rows)} items have no model_answer (items {shown}); run `rlhfv eval mmhal "
            "generate` (it resumes), or pass --allow-missing to judge the answered ones and list the others"
        )
    # the type comes from the index (the benchmark's rule), also when unanswered items are left out
    answered = [{**row, "id": str(i), "question_type": i % 8} for i, row in enumerate(rows) if str(i) not in missing]
    return normalize_items(answered), missing


def report(
    results: list[dict], judge_model: str, prompt: str, missing: list[str] = (), ratings: str = "official"
) -> dict:
    """The benchmark's numbers from per-item ratings; an item's type is its id (its template index) mod 8.

    `printed` holds the three lines of summarize_gpt_mmhal.py as it prints them (average with 2 decimals, the
    hallucination rate as a fraction with 2 decimals, the per-type averages rounded to 2).
    """
    n = len(results)
    per_type = {}
    for t, name in enumerate(QUESTION_TYPES):
        ratings_t = [r["rating"] for r in results if int(r["id"]) % 8 == t]
        per_type[name] = sum(ratings_t) / len(ratings_t) if ratings_t else None
    average = sum(r["rating"] for r in results) / n if n else None
    rate = sum(r["rating"] < 3 for r in results) / n if n else None
    official_prompt = prompt != "rlhfv rubric"
    deviations = []
    if ratings == "lenient":
        deviations.append(
            "--ratings lenient: ratings read in more forms, a malformed reply stops the run; "
            "summarize_gpt_mmhal.py rates a reply without exactly one 'rating: N' as 0"
        )
    if not official_prompt:
        deviations.append("rlhfv's own rubric, not the published prompt (--prompt-file)")
    return {
        "benchmark": "mmhal",
        "mode": "official (LLaVA-RLHF summarize_gpt_mmhal.py)" if not deviations else "deviating: see deviations",
        "ratings": ratings,
        "items": n,
        "missing_answers": list(missing),
        "average_score": average,
        "hallucination_rate": 100 * rate if n else None,
        "per_type_score": per_type,
        "printed": {
            "average_score": None if average is None else f"{average:.2f}",
            "hallucination_rate": None if rate is None else f"{rate:.2f}",
            "per_type": [None if per_type[t] is None else str(round(per_type[t], 2)) for t in QUESTION_TYPES],
        },
        "replies_without_one_rating": [r["id"] for r in results if not r.get("rating_found", True)],
        "judge_model": judge_model,
        "judge_prompt": prompt,
        "deviations": deviations,
        "units": "score 0-6; hallucination_rate in percent (printed: as a fraction, as the official script)",
        "comparable_with_papers": (
            "Comparable with a paper's MMHal-Bench table only when judged with the same judge model (the official "
            "script names gpt-4-0314) and the published prompt (--prompt-file): papers used different GPT-4 "
            "versions, so compare within one paper. "
            + (
                "This run used the published-prompt file."
                if official_prompt
                else "This run used rlhfv's own rubric, not the published prompt: compare only with other rlhfv runs."
            )
        ),
        "headline": {"MMHal score": average, "MMHal hallucination %": 100 * rate if n else None},
    }


def format_report(rep: dict) -> str:
    p = rep["printed"]
    lines = [f"MMHal-Bench: {rep['items']} items, judge {rep['judge_model']}, mode: {rep['mode']}"]
    lines.append(f"Average score: {p['average_score']}")
    lines.append(f"Hallucination rate: {p['hallucination_rate']}")
    lines.append("Average score for each question type: " + ",".join(str(v) for v in p["per_type"]))
    if rep["replies_without_one_rating"]:
        lines.append(
            f"{len(rep['replies_without_one_rating'])} replies without exactly one 'rating: N' were "
            "rated 0, as the official script does (items listed in the report)"
        )
    lines += [f"deviation: {d}" for d in rep["deviations"]]
    return "\n".join(lines)
