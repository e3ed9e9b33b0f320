"""CHAIR: object hallucination in free-form answers (Object HalBench style).

Each answer's object mentions are found through a synonym table (surface form -> COCO class) and compared with the
image's ground-truth objects:

- CHAIR_s = responses that mention at least one hallucinated object / responses that mention any object;
- CHAIR_i = hallucinated object mentions / all object mentions (every mention counts, repeats included);
- recall  = ground-truth objects mentioned at least once / ground-truth objects, summed over images;
- length  = mean answer length in whitespace-separated words.

Matching is on whole words, longest form first, so "hot dog" is one mention of hot dog and never a dog, and
"teddy bear" is never a bear. Negations count as mentions ("there is no dog" mentions a dog), as in the CHAIR
literature: a cheap negation filter would hide as many hallucinations as it excuses.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rlhfv.eval.coco_synonyms import COCO_SYNONYMS, expand
from rlhfv.eval.io import EvalInputError, require, row_id


@dataclass(frozen=True)
class Mention:
    text: str  # as written in the answer
    cls: str
    start: int
    end: int


class ObjectExtractor:
    """Finds object mentions in text through a synonym table {class: [surface forms]}."""

    def __init__(self, table: dict[str, list[str]] | None = None):
        self.table = table if table is not None else COCO_SYNONYMS
        self.forms = expand(self.table)
        # hyphens and runs of spaces are one separator: "hot-dog" and "hot  dog" are "hot dog"
        self._canonical = {_canonical(form): cls for form, cls in self.forms.items()}
        # longest first (by words, then characters): the regex alternation takes the first form that matches
        ordered = sorted(self._canonical, key=lambda f: (len(f.split()), len(f)), reverse=True)
        alternatives = [r"[\s-]+".join(re.escape(word) for word in form.split()) for form in ordered]
        self._pattern = re.compile(r"(?<![a-z0-9])(" + "|".join(alternatives) + r")(?![a-z0-9])")

    def mentions(self, text: str) -> list[Mention]:
        found = []
        for match in self._pattern.finditer(text.lower()):
            cls = self._canonical[_canonical(match.group(1))]
            found.append(Mention(text[match.start() : match.end()], cls, match.start(), match.end()))
        return found

    def to_class(self, name: str) -> str | None:
        """A class name or surface form -> its class; None if the table does not know it."""
        name = " ".join(name.lower().split())
        if name in self.table:
            return name
        return self._canonical.get(_canonical(name))


def _canonical(form: str) -> str:
    return " ".join(re.split(r"[\s-]+", form.strip()))


def load_synonyms(path: str | Path) -> dict[str, list[str]]:
    """A user synonym table: JSON {class: [surface forms]}."""
    path = Path(path)
    try:
        table = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise EvalInputError(f"{path}: cannot read the synonym table ({error})") from None
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(s, str) for s in v) for k, v in table.items()
    ):
        raise EvalInputError(f"{path}: a synonym table must be a JSON object {{class: [surface form, ...]}}")
    try:
        expand(table)
    except ValueError as error:
        raise EvalInputError(f"{path}: {error}") from None
    return table


def load_ground_truth(path: str | Path, extractor: ObjectExtractor) -> dict[str, set[str]]:
    """Ground-truth objects per image: {key: set of classes}.

    Accepts COCO instances annotations (`images`, `annotations`, `categories`; keys are each image's `file_name`
    and its `id`) or a JSON object {image path or id: [class names or surface forms]} such as the synthetic
    world's `objects.json`. Names the table does not know are an error: they could never be matched.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise EvalInputError(f"{path}: cannot read ground truth ({error})") from None
    if isinstance(data, dict) and {"images", "annotations", "categories"} <= set(data):
        categories = {c["id"]: c["name"] for c in data["categories"]}
        by_image: dict[int, set[str]] = {image["id"]: set() for image in data["images"]}
        for annotation in data["annotations"]:
            name = categories[annotation["category_id"]]
            cls = extractor.to_class(name)
            if cls is None:
                raise EvalInputError(f"{path}: category {name!r} is not a class of the synonym table")
            by_image.setdefault(annotation["image_id"], set()).add(cls)
        truth = {}
        for image in data["images"]:
            truth[str(image["id"])] = by_image[image["id"]]
            truth[image["file_name"]] = by_image[image["id"]]
        return truth
    if not isinstance(data, dict):
        raise EvalInputError(f"{path}: expected COCO instances annotations or a JSON object {{image: [objects]}}")
    truth = {}
    for key, names in data.items():
        if not isinstance(names, list):
            raise EvalInputError(f"{path}: {key!r}: expected a list of object names, got {type(names).__name__}")
        classes = set()
        for name in names:
            cls = extractor.to_class(str(name))
            if cls is None:
                raise EvalInputError(f"{path}: {key!r}: object {name!r} is neither a class nor a synonym in the table")
            classes.add(cls)
        truth[str(key)] = classes
    return truth


def truth_for(row: dict, truth: dict[str, set[str]]) -> set[str]:
    """Look an answer's ground truth up by id, then image path, then image file name."""
    candidates = [row_id(row)]
    image = row.get("image")
    if isinstance(image, str):
        candidates += [image, Path(image).name]
    for key in candidates:
        if key in truth:
            return truth[key]
    raise EvalInputError(f"{row['_where']}: no ground truth for this answer (looked up {candidates})")


def score_answers(
    rows: list[dict], truth: dict[str, set[str]], extractor: ObjectExtractor, field: str = "answer"
) -> tuple[dict, list[dict]]:
    """CHAIR report over `rows` and one detail row per answer."""
    details = []
    mentions_total = hallucinated_total = 0
    with_mentions = with_hallucination = 0
    truth_total = recalled_total = 0
    words = 0
    per_class: dict[str, Counter] = {}
    for row in rows:
        if not isinstance(row.get(field), str):
            require(row, field)  # raises with the file, row and field
        answer = row[field]  # an empty answer is a valid answer that mentions nothing
        gt = truth_for(row, truth)
        mentions = extractor.mentions(answer)
        hallucinated = [m for m in mentions if m.cls not in gt]
        recalled = {m.cls for m in mentions} & gt
        mentions_total += len(mentions)
        hallucinated_total += len(hallucinated)
        with_mentions += bool(mentions)
        with_hallucination += bool(hallucinated)
        truth_total += len(gt)
        recalled_total += len(recalled)
        words += len(answer.split())
        for m in mentions:
            counts = per_class.setdefault(m.cls, Counter())
            counts["mentions"] += 1
            counts["hallucinated_mentions"] += m.cls not in gt
        for cls in gt:
            counts = per_class.setdefault(cls, Counter())
            counts["in_ground_truth"] += 1
            counts["recalled"] += cls in recalled
        details.append(
            {
                "id": row_id(row),
                "mentions": [[m.text, m.cls] for m in mentions],
                "hallucinated": sorted({m.cls for m in hallucinated}),
                "recalled": sorted(recalled),
                "ground_truth": sorted(gt),
            }
        )
    report = {
        "responses": len(rows),
        "responses_mentioning_objects": with_mentions,
        "responses_with_hallucination": with_hallucination,
        "mentions": mentions_total,
        "hallucinated_mentions": hallucinated_total,
        "chair_s": _ratio(with_hallucination, with_mentions),
        "chair_i": _ratio(hallucinated_total, mentions_total),
        "recall": _ratio(recalled_total, truth_total),
        "mean_length_words": _ratio(words, len(rows)),
        "per_class": {
            cls: {k: counts[k] for k in ("mentions", "hallucinated_mentions", "in_ground_truth", "recalled")}
            for cls, counts in sorted(per_class.items())
        },
    }
    return report, details


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def format_report(report: dict) -> str:
    def pct(value):
        return "n/a" if value is None else f"{100 * value:.1f}%"

    lines = [
        f"responses             {report['responses']} ({report['responses_mentioning_objects']} mention objects)",
        f"CHAIR_s               {pct(report['chair_s'])}  "
        f"({report['responses_with_hallucination']}/{report['responses_mentioning_objects']} responses)",
        f"CHAIR_i               {pct(report['chair_i'])}  "
        f"({report['hallucinated_mentions']}/{report['mentions']} mentions)",
        f"recall                {pct(report['recall'])}",
        "mean length (words)   "
        + ("n/a" if report["mean_length_words"] is None else f"{report['mean_length_words']:.1f}"),
    ]
    worst = sorted(report["per_class"].items(), key=lambda kv: -kv[1]["hallucinated_mentions"])[:5]
    worst = [(cls, c["hallucinated_mentions"]) for cls, c in worst if c["hallucinated_mentions"]]
    if worst:
        lines.append("most hallucinated     " + ", ".join(f"{cls} ({n})" for cls, n in worst))
    return "\n".join(lines)
