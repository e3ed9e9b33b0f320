"""AMBER: generative (CHAIR, Cover, Hal, Cog) and discriminative (yes/no) hallucination, scored as inference.py does.

Files of the AMBER release (`data/`), read as AMBER's inference.py reads them: `query/query_all.json` (or a per-task
query file) -- a JSON list of {id, image, query}; `annotations.json` -- item id N is entry N-1, generative items
(ids 1-1004) with `truth` and `hallu` object lists, discriminative items with `type` (`discriminative-hallucination`
for existence, `discriminative-attribute-state|number|action`, `discriminative-relation` or `relation`) and `truth`
("yes"/"no"); `relation.json` -- {object: [associated words]}; `safe_words.txt`; `metrics.txt` -- the counters'
starting values (the denominators start at 0.001, which is why an empty part reads 0.0 rather than failing).

Generative items, step for step as inference.py (AMBER, commit 534babf): the answer's words are NLTK-tokenized and
tagged; each word tagged as a noun (NN*) is lemmatized with WordNet and kept if it is in the hallucination vocabulary
(every key and associated word of relation.json, case as written there: "TV"). For each kept word: a safe word is
skipped (it still counts in CHAIR's denominator); an exact match with a ground-truth object or its associated word
covers that object (first match); otherwise an exact match with an annotated likely hallucination marks it for Cog,
and so does the first likely hallucination whose spaCy similarity is > 0.8 (both, when they differ); then the first
ground-truth word with similarity > 0.8 covers its object; a word still unmatched is a hallucination.
- CHAIR = hallucinated words / kept words;   Cover = covered truth objects / truth objects;
- Hal   = 100 - answers without hallucination / answers;   Cog = marked likely hallucinations / annotated ones.

Discriminative items: the answer must be exactly "Yes" or "No" (anything else is neither), "No" is the positive
class; accuracy, precision, recall, and F1 from the rounded precision and recall with AMBER's small epsilon, overall,
for existence, attribute (and its state/number/action parts) and relation. Every number is rounded to one decimal, as
printed by inference.py. AMBER Score = (100 - CHAIR + F1) / 2 (AMBER's paper; the script does not print it).

`--yes-no first-word` reads the first word of a discriminative answer instead, case and punctuation ignored: a named
deviation, for models that answer "Yes, there is ..." (the official script counts such an answer as wrong).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from rlhfv.eval.io import EvalInputError, read_rows
from rlhfv.eval.language import LanguageTools, approximate_note


# AMBER's annotation types -> (group, part); inference.py counts any type it does not list as relation
DISCRIMINATIVE_TYPES = {
    "discriminative-hallucination": ("existence", "ha"),
    "discriminative-attribute-state": ("attribute", "as"),
    "discriminative-attribute-number": ("attribute", "an"),
    "discriminative-attribute-action": ("attribute", "aa"),
    "discriminative-relation": ("relation", "asso"),
    "relation": ("relation", "asso"),
}
YES_NO_MODES = ("exact", "first-word")
SIMILARITY_THRESHOLD = 0.8


def read_queries(path: str | Path, images: str | Path | None) -> list[dict]:
    rows = read_rows(path)
    if not rows:  # scored, it would report zero items and exit 0
        raise EvalInputError(f"{path}: no queries (the file holds no rows)")
    out = []
    for row in rows:
        if not isinstance(row.get("id"), int):
            raise EvalInputError(f"{row['_where']}: field 'id' must be AMBER's integer item id")
        if not isinstance(row.get("query"), str) or not row["query"].strip():
            raise EvalInputError(f"{row['_where']}: missing field 'query'")
        if not isinstance(row.get("image"), str):
            raise EvalInputError(f"{row['_where']}: missing field 'image'")
        out.append(
            {
                "id": str(row["id"]),
                "question": row["query"],
                "image": row["image"],
                "_image": Path(images) / row["image"] if images is not None else None,
                "_where": row["_where"],
            }
        )
    return out


def load_annotations(path: str | Path) -> dict[str, dict]:
    rows = read_rows(path)
    out = {}
    for index, row in enumerate(rows):
        if row.get("id") != index + 1:
            raise EvalInputError(f"{row['_where']}: expected id {index + 1} (AMBER's annotations are in id order)")
        kind = row.get("type")
        if kind == "generative":
            for name in ("truth", "hallu"):
                if not isinstance(row.get(name), list):
                    raise EvalInputError(f"{row['_where']}: generative item needs a list field {name!r}")
        elif kind in DISCRIMINATIVE_TYPES:
            if row.get("truth") not in ("yes", "no"):
                raise EvalInputError(f"{row['_where']}: field 'truth' must be 'yes' or 'no'")
        else:
            known = ", ".join(["generative", *DISCRIMINATIVE_TYPES])
            raise EvalInputError(f"{row['_where']}: field 'type' is {kind!r}, not one of AMBER's types ({known})")
        out[str(row["id"])] = row
    return out


def load_association(path: str | Path) -> dict[str, list[str]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise EvalInputError(f"{path}: cannot read AMBER's relation file ({error})") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise EvalInputError(f"{path}: expected a JSON object {{object: [associated words]}}")
    return data


def load_safe_words(path: str | Path) -> list[str]:
    """One word a line, as inference.py reads them (the text before the line break, nothing stripped)."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise EvalInputError(f"{path}: cannot read AMBER's safe words ({error.strerror})") from None


def load_metrics(path: str | Path) -> dict[str, float]:
    """The counters' starting values from AMBER's metrics.txt (`name=value` lines)."""
    counters = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise EvalInputError(f"{path}: cannot read AMBER's metrics file ({error.strerror})") from None
    for number, line in enumerate(lines, start=1):
        parts = line.strip().split("=")
        if len(parts) != 2:
            continue  # inference.py skips such lines too
        try:
            counters[parts[0].strip()] = float(parts[1].strip())
        except ValueError:
            raise EvalInputError(f"{path}:line {number}: value {parts[1].strip()!r} is not a number") from None
    needed = [
        "chair_score",
        "chair_num",
        "safe_cover_score",
        "safe_cover_num",
        "hallu_cover_score",
        "hallu_cover_num",
        "non_hallu_score",
        "non_hallu_num",
    ]
    for prefix in ["", *(f"{part}_" for _, part in DISCRIMINATIVE_TYPES.values())]:
        needed += [
            f"{prefix}qa_{name}"
            for name in ("correct_score", "correct_num", "no_score", "no_num", "ans_no_score", "ans_no_num")
        ]
    absent = [name for name in dict.fromkeys(needed) if name not in counters]
    if absent:
        raise EvalInputError(f"{path}: missing counter(s) {', '.join(absent[:5])}: not AMBER's data/metrics.txt?")
    return counters


def extract_nouns(text: str, tools: LanguageTools) -> list[str]:
    """inference.py's extract_nouns: the WordNet lemma of every token tagged NN, NNS, NNP or NNPS."""
    tagged = tools.tag(tools.word_tokenize(text))
    return [tools.lemmatize(word) for word, pos in tagged if pos.startswith("NN")]


def score_generative(
    annotation: dict,
    answer: str,
    association: dict,
    safe_words: list[str],
    vocabulary: set[str],
    tools: LanguageTools,
    threshold: float = SIMILARITY_THRESHOLD,
) -> dict:
    """Counts for one generative item, in the order of the steps of inference.py (see the module docstring)."""
    for name in [*annotation["truth"], *annotation["hallu"]]:
        if name not in association:
            raise EvalInputError(f"annotation id {annotation['id']}: object {name!r} is not in relation.json")
    # candidate words, each pointing at the object it stands for: associated words first, then the objects
    truth_words = _candidates(annotation["truth"], association)
    hallu_words = _candidates(annotation["hallu"], association)

    def first(candidates, test):
        return next((index for word, index in candidates if test(word)), None)

    def similar(noun):
        return lambda word: tools.similarity(noun, word) > threshold

    nouns = [noun for noun in extract_nouns(answer, tools) if noun in vocabulary]
    covered, marked, flagged = set(), set(), []
    for noun in nouns:
        if noun in safe_words:
            continue
        exact = first(truth_words, noun.__eq__)
        if exact is not None:
            covered.add(exact)
            continue
        marked |= {i for i in (first(hallu_words, noun.__eq__), first(hallu_words, similar(noun))) if i is not None}
        near = first(truth_words, similar(noun))
        if near is not None:
            covered.add(near)
            continue
        flagged.append(noun)
    return {
        "object_words": nouns,
        "hallucinated_words": flagged,
        "truth": len(annotation["truth"]),
        "covered": len(covered),
        "hallu": len(annotation["hallu"]),
        "produced": len(marked),
    }


def _candidates(objects: list[str], association: dict) -> list[tuple[str, int]]:
    words = [(word, index) for index, name in enumerate(objects) for word in association[name]]
    return words + [(name, index) for index, name in enumerate(objects)]


def read_yes_no(answer: str, mode: str = "exact") -> str:
    """The answer as inference.py compares it ("Yes" / "No" exactly), or its first word made "Yes"/"No"."""
    if mode == "exact":
        return answer
    match = re.match(r"\s*([A-Za-z]+)", answer)
    word = match.group(1).lower() if match else ""
    return {"yes": "Yes", "no": "No"}.get(word, answer)


def count_discriminative(counters: dict, part: str, truth: str, answer: str) -> None:
    """inference.py's counters for one yes/no item, overall ('') and for its part (ha, as, an, aa, asso)."""
    for prefix in ("", f"{part}_"):
        counters[f"{prefix}qa_correct_num"] += 1
        if truth == "yes":
            counters[f"{prefix}qa_correct_score"] += answer == "Yes"
        else:
            counters[f"{prefix}qa_no_num"] += 1
            counters[f"{prefix}qa_correct_score"] += answer == "No"
            counters[f"{prefix}qa_no_score"] += answer == "No"
        if answer == "No":
            counters[f"{prefix}qa_ans_no_num"] += 1
            counters[f"{prefix}qa_ans_no_score"] += truth == "no"


def generative_metrics(c: dict) -> dict:
    """inference.py's generative numbers, rounded to one decimal as it prints them."""
    return {
        "chair": round(c["chair_score"] / c["chair_num"] * 100, 1),
        "cover": round(c["safe_cover_score"] / c["safe_cover_num"] * 100, 1),
        "hal": round(100 - c["non_hallu_score"] / c["non_hallu_num"] * 100, 1),
        "cog": round(c["hallu_cover_score"] / c["hallu_cover_num"] * 100, 1),
    }


def discriminative_metrics(c: dict, parts: tuple[str, ...], epsilon: float = 0.0001) -> dict:
    """Accuracy, precision, recall (rounded) and F1 from the rounded precision and recall, as inference.py."""

    def total(name):
        return sum(c[f"{part}qa_{name}"] for part in parts)

    precision = round(total("ans_no_score") / total("ans_no_num") * 100, 1)
    recall = round(total("no_score") / total("no_num") * 100, 1)
    return {
        "accuracy": round(total("correct_score") / total("correct_num") * 100, 1),
        "precision": precision,
        "recall": recall,
        "f1": round(2 * (precision / 100) * (recall / 100) / ((precision / 100) + (recall / 100) + epsilon) * 100, 1),
    }


# the parts inference.py prints, with their counter prefixes and F1 epsilon (existence uses 0.001)
PARTS = {
    "overall": (("",), 0.0001),
    "existence": (("ha_",), 0.001),
    "attribute": (("as_", "an_", "aa_"), 0.0001),
    "state": (("as_",), 0.0001),
    "number": (("an_",), 0.0001),
    "action": (("aa_",), 0.0001),
    "relation": (("asso_",), 0.0001),
}


def score(
    annotations: dict[str, dict],
    answers: dict[str, dict],
    assets: dict,
    tools: LanguageTools,
    yes_no: str = "exact",
    missing: list[str] = (),
) -> tuple[dict, list[dict]]:
    """AMBER's numbers over the answers, in the answer file's order (as inference.py reads it).

    `assets`: {"association": relation.json, "safe_words": safe_words.txt lines, "metrics": metrics.txt counters,
    "threshold": similarity threshold}.
    """
    association, safe_words = assets["association"], assets["safe_words"]
    counters = dict(assets["metrics"])
    vocabulary = set(association) | {word for words in association.values() for word in words}
    item_counts = {name: 0 for name in PARTS}
    item_counts["generative"] = 0
    details = []
    for key, row in answers.items():
        if key not in annotations:
            raise EvalInputError(f"{row['_where']}: id {key} is not in annotations.json")
        annotation, answer = annotations[key], row["answer"]
        if annotation["type"] == "generative":
            counts = score_generative(
                annotation, answer, association, safe_words, vocabulary, tools, assets.get("threshold", 0.8)
            )
            _add_generative(counters, counts)
            item_counts["generative"] += 1
            details.append({"id": key, "type": "generative", **counts})
        else:
            group, part = DISCRIMINATIVE_TYPES[annotation["type"]]
            read = read_yes_no(answer, yes_no)
            count_discriminative(counters, part, annotation["truth"], read)
            for name, (prefixes, _) in PARTS.items():
                item_counts[name] += name == "overall" or f"{part}_" in prefixes
            details.append({"id": key, "type": annotation["type"], "truth": annotation["truth"], "answer": read})
    return _report(counters, item_counts, tools, yes_no, missing), details


def _add_generative(counters: dict, counts: dict) -> None:
    counters["chair_score"] += len(counts["hallucinated_words"])
    counters["chair_num"] += len(counts["object_words"])
    counters["safe_cover_score"] += counts["covered"]
    counters["safe_cover_num"] += counts["truth"]
    counters["hallu_cover_score"] += counts["produced"]
    counters["hallu_cover_num"] += counts["hallu"]
    counters["non_hallu_score"] += not counts["hallucinated_words"]
    counters["non_hallu_num"] += 1


def _report(counters: dict, item_counts: dict, tools: LanguageTools, yes_no: str, missing) -> dict:
    generative = {"n": item_counts["generative"], **generative_metrics(counters)}
    discriminative = {
        name: {"n": item_counts[name], **discriminative_metrics(counters, prefixes, epsilon)}
        for name, (prefixes, epsilon) in PARTS.items()
    }
    f1 = discriminative["overall"]["f1"]
    approximate = approximate_note(tools)
    deviations = [d for d in [approximate, _FIRST_WORD if yes_no == "first-word" else None] if d]
    mode = "official (AMBER inference.py)" if not deviations else "deviating: see deviations"
    return {
        "benchmark": "amber",
        "mode": mode,
        "generative": generative,
        "discriminative": discriminative,
        "amber_score": round((100 - generative["chair"] + f1) / 2, 2),
        "yes_no": yes_no,
        "approximate": bool(approximate),
        "counters": counters,
        "missing_answers": list(missing),
        "deviations": deviations,
        "units": "percent, rounded to one decimal as AMBER's inference.py prints",
        "comparable_with_papers": (
            "Equal to AMBER's inference.py (evaluation type 'a') on these files; comparable with AMBER tables."
            if not deviations
            else "NOT the official script's numbers: see 'deviations'."
        ),
        "headline": {
            "AMBER CHAIR": generative["chair"],
            "AMBER Cover": generative["cover"],
            "AMBER Hal": generative["hal"],
            "AMBER Cog": generative["cog"],
            "AMBER Acc": discriminative["overall"]["accuracy"],
            "AMBER F1": f1,
        },
    }


_FIRST_WORD = (
    "--yes-no first-word: yes/no answers read from the first word, case and punctuation ignored ('Yes, there is' is "
    "yes); AMBER's script accepts only the exact strings 'Yes' and 'No'"
)


def format_report(rep: dict) -> str:
    g, d = rep["generative"], rep["discriminative"]
    lines = [
        f"AMBER, mode: {rep['mode']}",
        f"generative ({g['n']} answers): CHAIR {g['chair']}  Cover {g['cover']}  Hal {g['hal']}  Cog {g['cog']}",
    ]
    for name, m in d.items():
        lines.append(
            f"discriminative {name:<10} n={m['n']:<5} acc {m['accuracy']}  P {m['precision']}  R {m['recall']}  "
            f"F1 {m['f1']}"
        )
    lines.append(f"AMBER score {rep['amber_score']}")
    lines += [f"deviation: {deviation}" for deviation in rep["deviations"]]
    if rep["missing_answers"]:
        lines.append(f"missing: {len(rep['missing_answers'])} items had no answer (listed in the report)")
    return "\n".join(lines)
