"""POPE: yes/no object probing ("Is there a <object> in the image?") on the random, popular and adversarial splits.

Files of the POPE release (`output/coco/coco_pope_<split>.json`, one JSON object a line): `question_id`, `image`
(a COCO file name), `text` (the question) and `label` ("yes"/"no"). The images are COCO val2014.

Answers are read as POPE's own evaluation does: only the first sentence; "no" if it contains the word "no" or
"not" (or "No"), otherwise "yes". An answer that is neither a clear yes nor a clear no is counted and listed
(`unclear_answers`), and by default scored as POPE scores it (as "yes"), so the numbers stay comparable with the
papers; `--unclear-as wrong` scores it as wrong instead.

Metrics per split, "yes" being the positive class: accuracy, precision, recall, F1 and the yes-ratio (share of
answers read as yes), in percent.
"""

from __future__ import annotations

import re
from pathlib import Path

from rlhfv.eval.io import EvalInputError, read_rows, require


SPLITS = ("random", "popular", "adversarial")


def find_split_files(folder: str | Path) -> dict[str, Path]:
    """{split: file} from a folder holding POPE's `*_pope_<split>.json` files (e.g. coco_pope_random.json)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvalInputError(f"{folder}: no such folder (expected POPE's output/coco folder)")
    found = {}
    for split in SPLITS:
        matches = sorted(folder.glob(f"*pope_{split}.json*"))
        if len(matches) > 1:
            raise EvalInputError(f"{folder}: several files for split {split!r}: {[m.name for m in matches]}")
        if matches:
            found[split] = matches[0]
    if not found:
        raise EvalInputError(f"{folder}: no POPE split files (*_pope_random.json, *_pope_popular.json, ...)")
    return found


def read_questions(path: str | Path, images: str | Path | None = None) -> list[dict]:
    rows = read_rows(path)
    out, seen = [], {}
    for row in rows:
        for name in ("question_id", "image", "text", "label"):
            if name not in row:
                raise EvalInputError(f"{row['_where']}: missing field {name!r} (not a POPE question file?)")
            require(row, name, (str, int) if name == "question_id" else (str,))
        if row["label"] not in ("yes", "no"):
            raise EvalInputError(f"{row['_where']}: field 'label' must be 'yes' or 'no', got {row['label']!r}")
        key = str(row["question_id"])
        if key in seen:  # scored twice, it would count one question as two
            raise EvalInputError(f"{row['_where']}: field 'question_id': duplicate id {key!r} (first at {seen[key]})")
        seen[key] = row["_where"]
        out.append(
            {
                "id": str(row["question_id"]),
                "question": row["text"],
                "image": row["image"],
                "label": row["label"],
                "_image": Path(images) / row["image"] if images is not None else None,
                "_where": row["_where"],
            }
        )
    return out


def read_answer(text: str) -> tuple[str, bool]:
    """(POPE's reading, whether the answer was a clear yes or no). POPE keeps the first sentence, drops commas
    and reads "no" when the words hold "No", "no" or "not", and "yes" otherwise."""
    first = text.split(".")[0].replace(",", "")
    words = first.split(" ")
    reading = "no" if ("No" in words or "no" in words or "not" in words) else "yes"
    lowered = set(re.findall(r"[a-z]+", first.lower()))
    clear = ("yes" in lowered) != bool(lowered & {"no", "not"})
    return reading, clear


def split_metrics(labels: list[str], predictions: list[str]) -> dict:
    n = len(labels)
    tp = sum(t == "yes" and p == "yes" for t, p in zip(labels, predictions, strict=True))
    fp = sum(t == "no" and p == "yes" for t, p in zip(labels, predictions, strict=True))
    tn = sum(t == "no" and p == "no" for t, p in zip(labels, predictions, strict=True))
    fn = sum(t == "yes" and p == "no" for t, p in zip(labels, predictions, strict=True))
    precision = 100 * tp / (tp + fp) if tp + fp else None
    recall = 100 * tp / (tp + fn) if tp + fn else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else (0.0 if n else None)
    return {
        "n": n,
        "accuracy": 100 * (tp + tn) / n if n else None,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": 100 * (tp + fp) / n if n else None,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def score_split(questions: list[dict], answers: dict[str, dict], unclear_as: str = "pope") -> tuple[dict, list]:
    labels, predictions, unclear, details = [], [], [], []
    for q in questions:
        if q["id"] not in answers:
            continue
        reading, clear = read_answer(answers[q["id"]]["answer"])
        if not clear:
            unclear.append(q["id"])
            if unclear_as == "wrong":
                reading = "no" if q["label"] == "yes" else "yes"
        labels.append(q["label"])
        predictions.append(reading)
        details.append({"id": q["id"], "label": q["label"], "read_as": reading, "clear": clear})
    metrics = split_metrics(labels, predictions)
    metrics["unclear_answers"] = unclear
    return metrics, details


def report(per_split: dict[str, dict], missing: dict[str, list[str]], unclear_as: str) -> dict:
    headline = {}
    for split, m in per_split.items():
        headline[f"POPE {split} acc"] = m["accuracy"]
        headline[f"POPE {split} F1"] = m["f1"]
        headline[f"POPE {split} yes%"] = m["yes_ratio"]
    return {
        "benchmark": "pope",
        "splits": per_split,
        "missing_answers": missing,
        "unclear_as": unclear_as,
        "units": "percent",
        "comparable_with_papers": (
            "Answers are read with POPE's own rule; comparable with published POPE tables for the same split files "
            "and prompt."
            if unclear_as == "pope"
            else "Unclear answers were scored as wrong, not as POPE scores them: compare only with rlhfv runs."
        ),
        "headline": headline,
    }


def format_report(rep: dict) -> str:
    def f(v):
        return "n/a" if v is None else f"{v:.1f}"

    lines = [f"{'split':<12} {'n':>5} {'acc':>6} {'prec':>6} {'recall':>6} {'F1':>6} {'yes%':>6} unclear"]
    for split, m in rep["splits"].items():
        lines.append(
            f"{split:<12} {m['n']:>5} {f(m['accuracy']):>6} {f(m['precision']):>6} {f(m['recall']):>6} "
            f"{f(m['f1']):>6} {f(m['yes_ratio']):>6} {len(m['unclear_answers'])}"
        )
    for split, ids in rep["missing_answers"].items():
        if ids:
            lines.append(f"{split}: {len(ids)} questions had no answer (listed in the report)")
    return "\n".join(lines)
