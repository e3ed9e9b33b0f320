"""AMBER: generative (CHAIR, Cover, Hal, Cog) and discriminative (yes/no) hallucination, from its own files.

Files of the AMBER release (`data/`): `query/query_all.json` (or `query_generative.json`, `query_discriminative*.json`)
-- a JSON list of {id, image, query}; `annotations.json` -- a JSON list where item id N is entry N-1, generative
items (ids 1-1004) with `truth` and `hallu` object lists, discriminative items with `type`
("discriminative-existence", "discriminative-attribute-state|number|action", "discriminative-relation") and `truth`
("yes"/"no"); `relation.json` -- {object: [associated words]}; `safe_words.txt` -- one word a line. The images are
AMBER_<n>.jpg in the image folder.

Generative metrics follow AMBER's inference.py: the object words of an answer are its words that appear in the
hallucination vocabulary (every key and associated word of relation.json); a safe word is never a hallucination; a
word that is a ground-truth object or one of its associated words covers that object; any other object word is a
hallucination, and if it is one of the item's annotated likely hallucinations (`hallu`, or their associated words)
it counts for Cog.
- CHAIR = hallucinated object words / object words;       Cover = ground-truth objects covered / ground truth;
- Hal   = answers with at least one hallucinated word;     Cog = annotated hallucinations produced / annotated.
AMBER matches a word to an object also when their spaCy word vectors have similarity > 0.8 (`en_core_web_lg`). When
spaCy and that model are installed they are used; otherwise words match exactly or by their singular form, a
deviation the report states (it can only lower Cover and raise CHAIR for synonyms the vectors would have caught).

Discriminative metrics: accuracy, and precision, recall and F1 with "No" as the positive class, per type (existence,
attribute, relation) and overall. AMBER Score = (100 - CHAIR + F1) / 2.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from rlhfv.eval.io import EvalInputError, read_rows


DISCRIMINATIVE_GROUPS = {
    "discriminative-existence": "existence",
    "discriminative-attribute-state": "attribute",
    "discriminative-attribute-number": "attribute",
    "discriminative-attribute-action": "attribute",
    "discriminative-relation": "relation",
}
IRREGULAR = {"men": "man", "women": "woman", "children": "child", "people": "person", "mice": "mouse",
             "feet": "foot", "teeth": "tooth", "geese": "goose", "knives": "knife", "leaves": "leaf",
             "shelves": "shelf", "wolves": "wolf", "loaves": "loaf", "sheep": "sheep", "fish": "fish"}  # fmt: skip
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


def read_queries(path: str | Path, images: str | Path | None) -> list[dict]:
    rows = read_rows(path)
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
        elif kind in DISCRIMINATIVE_GROUPS:
            if row.get("truth") not in ("yes", "no"):
                raise EvalInputError(f"{row['_where']}: field 'truth' must be 'yes' or 'no'")
        else:
            raise EvalInputError(f"{row['_where']}: unknown type {kind!r}")
        out[str(row["id"])] = row
    return out


def load_association(path: str | Path) -> dict[str, list[str]]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise EvalInputError(f"{path}: cannot read AMBER's relation file ({error})") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise EvalInputError(f"{path}: expected a JSON object {{object: [associated words]}}")
    return data


def load_safe_words(path: str | Path) -> set[str]:
    try:
        return {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}
    except OSError as error:
        raise EvalInputError(f"{path}: cannot read AMBER's safe words ({error.strerror})") from None


class WordMatcher:
    """Word-to-object matching: spaCy vector similarity when available (AMBER's rule), else exact match."""

    def __init__(self, vectors: str = "auto", model: str = "en_core_web_lg", threshold: float = 0.8):
        self.nlp = None
        self.threshold = threshold
        self.deviation = None
        if vectors != "off":
            try:
                import spacy

                self.nlp = spacy.load(model)
            except (ImportError, OSError) as error:
                if vectors == "on":
                    raise EvalInputError(
                        f"word vectors requested but unavailable ({error}): pip install spacy && python -m spacy "
                        f"download {model}"
                    ) from None
        if self.nlp is None:
            self.deviation = (
                f"word similarity by exact/singular-form match, not spaCy {model} vectors > {threshold} as in AMBER: "
                "synonyms the vectors would match count as hallucinations here (CHAIR/Hal can be higher, Cover "
                "lower); words are lower-cased and every word in the vocabulary counts, not only those tagged "
                "as nouns"
            )

    def similar(self, a: str, b: str) -> bool:
        if a == b:
            return True
        if self.nlp is None:
            return False
        return self._doc(a).similarity(self._doc(b)) > self.threshold

    @lru_cache(maxsize=100_000)  # noqa: B019 (one matcher per run)
    def _doc(self, word: str):
        return self.nlp(word)


def object_words(text: str, vocabulary: set[str]) -> list[str]:
    """The words of `text` in AMBER's hallucination vocabulary, each in its vocabulary (singular) form."""
    found = []
    for word in _WORD.findall(text.lower()):
        for form in _forms(word):
            if form in vocabulary:
                found.append(form)
                break
    return found


def _forms(word: str) -> list[str]:
    forms = [word]
    if word in IRREGULAR:
        forms.append(IRREGULAR[word])
    if word.endswith("ies") and len(word) > 4:
        forms.append(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        forms.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss") and len(word) > 2:
        forms.append(word[:-1])
    return forms


def score_generative(
    annotation: dict, answer: str, association: dict, safe: set[str], vocabulary: set[str], matcher: WordMatcher
) -> dict:
    """Counts for one generative item, following AMBER's inference.py."""
    truth, hallu = annotation["truth"], annotation["hallu"]
    for name in [*truth, *hallu]:
        if name not in association:
            raise EvalInputError(f"annotation id {annotation['id']}: object {name!r} is not in relation.json")
    # candidate words, each pointing at the object it stands for; associated words first, as in AMBER
    truth_words = [(w, i) for i, t in enumerate(truth) for w in association[t]] + [(t, i) for i, t in enumerate(truth)]
    hallu_words = [(w, i) for i, h in enumerate(hallu) for w in association[h]] + [(h, i) for i, h in enumerate(hallu)]
    covered, produced, flagged = set(), set(), []
    words = object_words(answer, vocabulary)
    for word in words:
        if word in safe:
            continue
        exact_truth = next((i for w, i in truth_words if w == word), None)
        if exact_truth is not None:
            covered.add(exact_truth)
            continue
        hit = next((i for w, i in hallu_words if matcher.similar(word, w)), None)
        if hit is not None:
            produced.add(hit)
        near_truth = next((i for w, i in truth_words if matcher.similar(word, w)), None)
        if near_truth is not None:
            covered.add(near_truth)
            continue
        flagged.append(word)
    return {
        "object_words": len(words),
        "hallucinated_words": flagged,
        "truth": len(truth),
        "covered": len(covered),
        "hallu": len(hallu),
        "produced": len(produced),
    }


def parse_yes_no(answer: str) -> str | None:
    """'yes' or 'no' from the answer's first word (case and punctuation ignored); None if it is neither."""
    match = re.match(r"\s*([A-Za-z]+)", answer)
    word = match.group(1).lower() if match else ""
    return word if word in ("yes", "no") else None


def binary_metrics(pairs: list[tuple[str, str | None]], positive: str) -> dict:
    """Accuracy, precision, recall, F1 (percent) for (truth, prediction) pairs; an unclear prediction (None) is
    wrong and is not a positive prediction."""
    n = len(pairs)
    tp = sum(t == positive and p == positive for t, p in pairs)
    predicted = sum(p == positive for _, p in pairs)
    actual = sum(t == positive for t, _ in pairs)
    correct = sum(t == p for t, p in pairs)
    precision = 100 * tp / predicted if predicted else None
    recall = 100 * tp / actual if actual else None
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else (0.0 if n else None)
    return {
        "n": n,
        "accuracy": 100 * correct / n if n else None,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "unclear_answers": sum(p is None for _, p in pairs),
    }


def score(
    annotations: dict[str, dict],
    answers: dict[str, dict],
    association: dict,
    safe: set[str],
    matcher: WordMatcher,
    expected_ids: list[str],
    missing: list[str] = (),
) -> tuple[dict, list[dict]]:
    vocabulary = set(association) | {w for words in association.values() for w in words}
    totals = {"object_words": 0, "hallucinated": 0, "truth": 0, "covered": 0, "hallu": 0, "produced": 0}
    generative_n = with_hallucination = 0
    groups: dict[str, list] = {"existence": [], "attribute": [], "relation": []}
    details = []
    for key in expected_ids:
        if key not in answers:
            continue
        if key not in annotations:
            raise EvalInputError(f"{answers[key]['_where']}: id {key} is not in annotations.json")
        annotation, answer = annotations[key], answers[key]["answer"]
        if annotation["type"] == "generative":
            counts = score_generative(annotation, answer, association, safe, vocabulary, matcher)
            generative_n += 1
            with_hallucination += bool(counts["hallucinated_words"])
            totals["object_words"] += counts["object_words"]
            totals["hallucinated"] += len(counts["hallucinated_words"])
            for name in ("truth", "covered", "hallu", "produced"):
                totals[name] += counts[name]
            details.append({"id": key, "type": "generative", **counts})
        else:
            prediction = parse_yes_no(answer)
            groups[DISCRIMINATIVE_GROUPS[annotation["type"]]].append((annotation["truth"], prediction))
            details.append({"id": key, "type": annotation["type"], "truth": annotation["truth"], "answer": prediction})

    def pct(a, b):
        return 100 * a / b if b else None

    generative = {
        "n": generative_n,
        "chair": pct(totals["hallucinated"], totals["object_words"]),
        "cover": pct(totals["covered"], totals["truth"]),
        "hal": pct(with_hallucination, generative_n),
        "cog": pct(totals["produced"], totals["hallu"]),
    }
    all_pairs = [pair for pairs in groups.values() for pair in pairs]
    discriminative = {
        "overall": binary_metrics(all_pairs, "no"),
        **{name: binary_metrics(pairs, "no") for name, pairs in groups.items() if pairs},
    }
    f1 = discriminative["overall"]["f1"]
    amber_score = (100 - generative["chair"] + f1) / 2 if generative["chair"] is not None and all_pairs else None
    rep = {
        "benchmark": "amber",
        "generative": generative,
        "discriminative": discriminative,
        "amber_score": amber_score,
        "missing_answers": list(missing),
        "deviations": [d for d in [matcher.deviation, _LENIENT] if d],
        "units": "percent",
        "comparable_with_papers": (
            "Discriminative accuracy/precision/recall/F1 and the generative metrics follow AMBER's inference.py; "
            "with word vectors installed, generative numbers are comparable with AMBER tables, without them see "
            "'deviations'."
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
    return rep, details


_LENIENT = (
    "yes/no answers are read from the first word, case and punctuation ignored ('Yes, there is' is yes); AMBER's "
    "script accepts only the exact strings 'Yes' and 'No'"
)


def format_report(rep: dict) -> str:
    def f(v):
        return "n/a" if v is None else f"{v:.1f}"

    g, d = rep["generative"], rep["discriminative"]
    lines = [
        f"AMBER generative ({g['n']} answers): CHAIR {f(g['chair'])}  Cover {f(g['cover'])}  Hal {f(g['hal'])}  "
        f"Cog {f(g['cog'])}",
    ]
    for name, m in d.items():
        lines.append(
            f"discriminative {name:<10} n={m['n']:<5} acc {f(m['accuracy'])}  P {f(m['precision'])}  "
            f"R {f(m['recall'])}  F1 {f(m['f1'])}  unclear {m['unclear_answers']}"
        )
    lines.append(f"AMBER score {f(rep['amber_score'])}")
    for deviation in rep["deviations"]:
        lines.append(f"deviation: {deviation}")
    if rep["missing_answers"]:
        lines.append(f"missing: {len(rep['missing_answers'])} items had no answer (listed in the report)")
    return "\n".join(lines)
