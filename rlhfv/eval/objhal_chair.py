"""Object HalBench's CHAIR, step for step as RLHF-V's eval/eval_gpt_obj_halbench.py computes it (commit 8daac8a).

The synonym table is the benchmark's own file, eval/data/synonyms_refine.txt (`load_synonym_file`): one COCO class a
line, its first name the class, ", " between names. Two-word names are merged before lookup: every multi-word name
of the table, "home plate" and "train track" (kept as themselves, so never a train), "baby"/"adult" + an animal (the
animal), "passenger jet/train", "bow tie" (a tie), "toilet seat" (a toilet), "wine glas" (a wine glass). A "seat"
next to a "toilet" anywhere in the same text is dropped (it is not a chair).

Words of a text (an answer in `rule` mode, and every COCO reference caption for the ground truth): NLTK's
`word_tokenize` of the lower-cased text, each token lemmatized with WordNet, two-word names merged, then kept when
the table knows them. In `llm` mode each name the extractor listed goes through spaCy (`"a " + name`): a two-word
name of the list above wins, else each run of nouns (NN, NNS, NNP, NNPS) gives one name, lemmas joined by spaces; the
names are deduplicated (first occurrence kept) and those the table does not know (e.g. "coffee mug") are dropped.

Numbers (`compute_chair`): CHAIR_s = responses with a hallucinated object / all responses; its "refined" form (the
papers' "Response Hall") divides by the responses that name any COCO object; CHAIR_i = hallucinated names / names;
object recall = the distinct correct classes per response, summed, / the ground-truth classes, summed; average
length = words split on single spaces, per response.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhfv.eval.io import EvalInputError
from rlhfv.eval.language import LanguageTools


ANIMALS = ["bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub"]
NOUN_TAGS = ("NNP", "NNPS", "NN", "NNS")


@dataclass
class SynonymTable:
    objects: set[str]  # every name of every class
    to_class: dict[str, str]  # name -> class (the first name of its line; a later line wins for a repeated name)
    double_words: dict[str, str]  # two-word name -> what it stands for
    source: str  # the file it came from, or "rlhfv" for rlhfv's own table


def table_from_lines(lines: list[str], source: str) -> SynonymTable:
    """The table as the official code builds it from the file's lines (blank lines included, as it reads them)."""
    objects, to_class = [], {}
    for line in lines:
        names = [name.strip() for name in line.strip().split(", ")]
        objects.extend(names)
        for name in names:
            to_class[name] = names[0]
    doubles = {word: word for word in to_class if len(word.strip().split(" ")) >= 2}
    doubles.update({"home plate": "home plate", "train track": "train track"})
    for animal in ANIMALS:
        doubles[f"baby {animal}"] = animal
        doubles[f"adult {animal}"] = animal
    for vehicle in ("jet", "train"):
        doubles[f"passenger {vehicle}"] = vehicle
    doubles.update({"bow tie": "tie", "toilet seat": "toilet", "wine glas": "wine glass"})
    return SynonymTable(set(objects), to_class, doubles, source)


def load_synonym_file(path: str | Path) -> SynonymTable:
    """The benchmark's synonyms_refine.txt."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise EvalInputError(f"{path}: cannot read the synonym file ({error.strerror})") from None
    lines = text.splitlines(keepends=True)
    if not any(", " in line for line in lines):
        raise EvalInputError(f"{path}: not a synonym file (one COCO class a line, names separated by ', ')")
    return table_from_lines(lines, str(path))


def rlhfv_table() -> SynonymTable:
    """rlhfv's own table (rlhfv.eval.coco_synonyms), the fallback without --synonyms: NOT comparable with papers."""
    from rlhfv.eval.coco_synonyms import COCO_SYNONYMS

    return table_from_lines([", ".join([cls, *forms]) for cls, forms in COCO_SYNONYMS.items()], "rlhfv")


def _merge_double_words(words: list[str], table: SynonymTable, keep_single: bool) -> list[str]:
    merged, i = [], 0
    while i < len(words):
        pair = " ".join(words[i : i + 2])
        if pair in table.double_words:
            merged.append(table.double_words[pair])
            i += 2
        else:
            if keep_single:
                merged.append(words[i])
            i += 1
    return merged


def coco_names(words: list[str], table: SynonymTable) -> list[tuple[str, str]]:
    """(name, class) for the names the table knows; "seat" goes when "toilet" is there too."""
    if "toilet" in words and "seat" in words:
        words = [word for word in words if word != "seat"]
    return [(word, table.to_class[word]) for word in words if word in table.objects]


def text_names(text: str, table: SynonymTable, tools: LanguageTools) -> list[tuple[str, str]]:
    """The official `caption_to_words`: tokens of the lower-cased text, WordNet lemmas, two-word names merged."""
    words = [tools.lemmatize(word) for word in tools.word_tokenize(text.lower())]
    return coco_names(_merge_double_words(words, table, keep_single=True), table)


def extracted_names(names: list, table: SynonymTable, tools: LanguageTools) -> list[tuple[str, str]]:
    """The official `get_pred_objs_match` + `caption_objects_to_coco_objects` for an extractor's list."""
    refined = []
    for name in names:
        analyzed = tools.analyze_phrase(f"a {name}")
        doubles = _merge_double_words([lemma for lemma, _ in analyzed], table, keep_single=False)
        refined += doubles if doubles else _noun_runs(analyzed)
    unique = list(dict.fromkeys(refined))
    return coco_names(unique, table)


def _noun_runs(analyzed: list[tuple[str, str]]) -> list[str]:
    runs, current = [], []
    for lemma, tag in analyzed:
        if tag in NOUN_TAGS:
            current.append(lemma)
        elif current:
            runs.append(" ".join(current))
            current = []
    if current:
        runs.append(" ".join(current))
    return runs


def compute_chair(responses: list[dict]) -> dict:
    """The official `compute_chair` totals. Each response: {names: [(name, class)], truth: set, answer: str}."""
    t = dict.fromkeys(
        ["responses", "naming", "hallucinating", "names", "hallucinated", "correct_classes", "truth", "words"], 0
    )
    for r in responses:
        hallucinated = [cls for _, cls in r["names"] if cls not in r["truth"]]
        t["responses"] += 1
        t["naming"] += bool(r["names"])
        t["hallucinating"] += bool(hallucinated)
        t["names"] += len(r["names"])
        t["hallucinated"] += len(hallucinated)
        t["correct_classes"] += len({cls for _, cls in r["names"] if cls in r["truth"]})
        t["truth"] += len(r["truth"])
        t["words"] += len(r["answer"].strip().split(" "))

    def ratio(a, b):
        return a / b if b else None

    metrics = {
        "CHAIRs": ratio(t["hallucinating"], t["responses"]),
        "CHAIRs_refine": ratio(t["hallucinating"], t["naming"]),
        "CHAIRi": ratio(t["hallucinated"], t["names"]),
        "obj_rec": ratio(t["correct_classes"], t["truth"]),
        "sentence_num": float(t["responses"]),
        "coco_sentence_num": float(t["naming"]),
        "coco_word_count": float(t["correct_classes"]),
        "gt_word_count": float(t["truth"]),
        "avg_word_len": ratio(t["words"], t["responses"]),
    }
    return {"overall_metrics": metrics, "totals": t}


def printed_eval(metrics: dict) -> dict[str, str | None]:
    """The line eval_gpt_obj_halbench.py prints (print_metrics), as it prints it."""

    def one(value, scale=100):  # the script's "%0.001f": one decimal
        return None if value is None else f"{value * scale:.1f}"

    return {
        "CHAIRs": one(metrics["CHAIRs"]),
        "CHAIRsr": one(metrics["CHAIRs_refine"]),
        "CHAIRi": one(metrics["CHAIRi"]),
        "sent_num": f"{int(metrics['sentence_num'])}",
        "coco_num": f"{int(metrics['coco_sentence_num'])}",
        "avg_len": one(metrics["avg_word_len"], 1),
    }


def printed_summary(metrics: dict) -> dict[str, str | None]:
    """The lines summarize_gpt_obj_halbench_review.py prints, as it prints them."""

    def pct(value, places=2):
        return None if value is None else f"{value * 100:.{places}f}"

    def correct(value):
        return None if value is None else f"{(1 - value) * 100:.2f}"

    return {
        "Response Hall": pct(metrics["CHAIRs_refine"]),
        "Object Hall": pct(metrics["CHAIRi"]),
        "Response Correct": correct(metrics["CHAIRs_refine"]),
        "Object Correct": correct(metrics["CHAIRi"]),
        "Object Recall": pct(metrics["obj_rec"]),
        "Average Length": None if metrics["avg_word_len"] is None else f"{metrics['avg_word_len']:.2f}",
        "COCO Sent Number": str(metrics["coco_sentence_num"]),
        "COCO Word Number": str(metrics["coco_word_count"]),
        "GT Word Number": str(metrics["gt_word_count"]),
    }
