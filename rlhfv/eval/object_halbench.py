"""Object HalBench (RLHF-V, RLAIF-V): detailed descriptions of 300 COCO val2014 images, scored with CHAIR.

Question file: JSONL, one prompt per line, with `image_id` (the COCO id, or a COCO file name), the prompt
(`question`, `text` or `prompt`), an optional id (`question_id` or `id`; default: the line's index) and the image
as a path (`image_path`, or `image` when it names a file) or embedded base64 (`image`, as in the RLHF-V release);
without either, `--images DIR` holds COCO_val2014_<12-digit id>.jpg.

Ground truth per image, as in CHAIR (Rohrbach et al.): the classes of the COCO instance annotations, together with
the COCO objects that the image's reference captions mention (found with the synonym matcher).

Objects in an answer are found in one of two ways:
- `rule`: the synonym matcher of `rlhfv.eval.chair` (whole words, longest form first; every mention counts);
- `llm`: an LLM behind the endpoint lists the objects the answer says are in the image, and each listed name is
  mapped to a COCO class with the same synonym table (names it does not know are reported, not scored). This is
  what the RLHF-V and RLAIF-V papers do (they used GPT-4); its numbers are the ones to put next to theirs.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

from rlhfv.eval.chair import ObjectExtractor
from rlhfv.eval.io import EvalInputError, read_rows


EXTRACTION_PROMPT = """Below is a description of an image. List every physical object that the description says is \
in the image, one per line, as a singular noun (for example "dog", "dining table", "person"). Leave out objects \
the description says are absent, abstract things (colours, the scene, the weather, emotions) and parts of objects. \
If the description names no object, answer with the single line "None". Answer with the list only.

Description:
{answer}"""

COMPARABLE_RULE = (
    "Rule-based extraction (synonym matcher): comparable with other rlhfv runs and with rule-based CHAIR numbers, "
    "NOT with the Object HalBench tables of RLHF-V / RLAIF-V, which extract objects with GPT-4."
)
COMPARABLE_LLM = (
    "LLM extraction mapped to COCO classes, truth = COCO instances + captions: the protocol of the RLHF-V / RLAIF-V "
    "Object HalBench tables (e.g. LLaVA-1.5-7B CHAIR_s/CHAIR_i about 53.6/25.2). Comparable when the same 300 "
    "questions, the same decoding and a GPT-4-class extractor are used; another extractor model moves the numbers."
)


def coco_file_name(image_id: int) -> str:
    return f"COCO_val2014_{image_id:012d}.jpg"


def _image_id(row: dict) -> int:
    value = row.get("image_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        digits = Path(value).stem.rsplit("_", 1)[-1]
        if digits.isdigit():
            return int(digits)
    raise EvalInputError(f"{row['_where']}: field 'image_id' must be a COCO image id or file name, got {value!r}")


def read_questions(path: str | Path, images: str | Path | None = None, need_images: bool = True) -> list[dict]:
    """Prompt rows {id, question, image_id, image, _image, _where}; `_image` is None without `need_images`."""
    path = Path(path)
    rows = read_rows(path)
    out, seen = [], {}
    for index, row in enumerate(rows):
        question = next((row[k] for k in ("question", "text", "prompt") if isinstance(row.get(k), str)), None)
        if not question or not question.strip():
            raise EvalInputError(f"{row['_where']}: missing field 'question' (or 'text' / 'prompt')")
        image_id = _image_id(row)
        key = row.get("question_id", row.get("id", index))
        if str(key) in seen:  # scored twice, it would count one question as two
            field = "question_id" if "question_id" in row else "id"
            raise EvalInputError(
                f"{row['_where']}: field {field!r}: duplicate id {str(key)!r} (first at {seen[str(key)]})"
            )
        seen[str(key)] = row["_where"]
        image_name = coco_file_name(image_id)
        source = _image_source(row, path.parent, images, image_name) if need_images else None
        out.append(
            {
                "id": str(key),
                "question": question,
                "image_id": image_id,
                "image": image_name,
                "_image": source,
                "_where": row["_where"],
            }
        )
    return out


def read_questions_for_scoring(path: str | Path) -> list[dict]:
    """The question rows without looking for images (scoring needs only ids, image ids and questions)."""
    return read_questions(path, need_images=False)


def _image_source(row: dict, base: Path, images: str | Path | None, image_name: str):
    for field in ("image_path", "image"):
        value = row.get(field)
        if not isinstance(value, str) or not value:
            continue
        if len(value) < 1024:  # may be a path; embedded images are longer, but a tiny one is not
            candidates = [Path(value) if Path(value).is_absolute() else base / value]
            if images is not None:
                candidates.append(Path(images) / Path(value).name)
            for candidate in candidates:
                try:
                    if candidate.is_file():
                        return candidate
                except OSError:  # e.g. a name too long for the file system: base64 text, not a path
                    pass
        if field == "image" and len(value) >= 64:
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                pass
    if images is None:
        raise EvalInputError(
            f"{row['_where']}: no image: the row has no image file or embedded image; pass --images with the COCO "
            "val2014 folder"
        )
    return Path(images) / image_name


def coco_truth(
    instances: list[str | Path], captions: list[str | Path], extractor: ObjectExtractor, image_ids: set[int]
) -> dict[int, set[str]]:
    """COCO classes per image: instance annotations, plus objects the reference captions mention.

    Several instance and caption files may be given (CHAIR's own code reads both train2014 and val2014).
    """
    truth: dict[int, set[str]] = {}
    known: set[int] = set()
    for path in instances:
        data = _load_json(path, "instances")
        if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
            raise EvalInputError(f"{path}: not COCO instances annotations (needs images, annotations, categories)")
        known |= {image["id"] for image in data["images"]}
        categories = {c["id"]: c["name"] for c in data["categories"]}
        for annotation in data["annotations"]:
            if annotation["image_id"] not in image_ids:
                continue
            name = categories[annotation["category_id"]]
            cls = extractor.to_class(name)
            if cls is None:
                raise EvalInputError(f"{path}: category {name!r} is not a class of the synonym table")
            truth.setdefault(annotation["image_id"], set()).add(cls)
    for path in captions:
        data = _load_json(path, "captions")
        if not isinstance(data, dict) or "annotations" not in data:
            raise EvalInputError(f"{path}: not COCO caption annotations (needs annotations)")
        known |= {image["id"] for image in data.get("images", [])}
        for annotation in data["annotations"]:
            if annotation["image_id"] in image_ids:
                found = {m.cls for m in extractor.mentions(annotation["caption"])}
                truth.setdefault(annotation["image_id"], set()).update(found)
    unknown = sorted(image_ids - known)
    if unknown:
        names = ", ".join(str(p) for p in [*instances, *captions])
        raise EvalInputError(
            f"no COCO annotations for image id(s) {unknown[:10]} in {names}: Object HalBench uses COCO 2014; pass "
            "instances_val2014.json and captions_val2014.json (and the train2014 files if some images are there)"
        )
    return {image_id: truth.get(image_id, set()) for image_id in image_ids}


def _load_json(path, what):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise EvalInputError(f"{path}: cannot read the COCO {what} file ({error})") from None


def parse_object_list(reply: str) -> list[str]:
    """Object names from an extraction reply: one per line; bullets, numbering and "None" are handled."""
    names = []
    for line in reply.splitlines():
        name = line.strip().lstrip("-*•0123456789.) ").strip().strip(".,;\"'").lower()
        if not name or name in {"none", "none."}:
            continue
        names.append(name)
    return names


def classes_from_names(names: list[str], extractor: ObjectExtractor) -> tuple[list[str], list[str]]:
    """COCO classes of the listed names (each name counts once) and the names the table does not know."""
    classes, unknown = [], []
    for name in names:
        cls = extractor.to_class(name)
        if cls is None:
            found = extractor.mentions(name)
            cls = found[0].cls if found else None
        if cls is None:
            unknown.append(name)
        else:
            classes.append(cls)
    return classes, unknown


def chair_metrics(responses: list[dict]) -> dict:
    """CHAIR from per-response `mentions` (COCO classes, repeats count), `truth` (set) and `words`.

    CHAIR_s = responses with a hallucinated object / responses mentioning any COCO object; CHAIR_i = hallucinated
    mentions / all mentions; recall = ground-truth objects mentioned / ground-truth objects. In percent.
    """
    mentioning = [r for r in responses if r["mentions"]]
    hallucinating = [r for r in mentioning if any(c not in r["truth"] for c in r["mentions"])]
    mentions = sum(len(r["mentions"]) for r in responses)
    hallucinated = sum(sum(c not in r["truth"] for c in r["mentions"]) for r in responses)
    truth_total = sum(len(r["truth"]) for r in responses)
    recalled = sum(len(set(r["mentions"]) & r["truth"]) for r in responses)

    def pct(a, b):
        return 100 * a / b if b else None

    return {
        "responses": len(responses),
        "responses_mentioning_objects": len(mentioning),
        "responses_with_hallucination": len(hallucinating),
        "mentions": mentions,
        "hallucinated_mentions": hallucinated,
        "chair_s": pct(len(hallucinating), len(mentioning)),
        "chair_i": pct(hallucinated, mentions),
        "recall": pct(recalled, truth_total),
        "mean_length_words": sum(r["words"] for r in responses) / len(responses) if responses else None,
    }


def score(
    questions: list[dict],
    answers: dict[str, dict],
    truth: dict[int, set[str]],
    extractor: ObjectExtractor,
    mode: str = "rule",
    client=None,
    prompt_template: str = EXTRACTION_PROMPT,
    missing: list[str] = (),
    progress: bool = True,
) -> tuple[dict, list[dict]]:
    """The report and one detail row per scored answer."""
    answered = [q for q in questions if q["id"] in answers]
    texts = [answers[q["id"]]["answer"] for q in answered]
    unknown_names: dict[str, int] = {}
    if mode == "rule":
        per_answer = [[m.cls for m in extractor.mentions(text)] for text in texts]
    elif mode == "llm":
        from rlhfv.endpoint import ChatRequest

        requests = [
            ChatRequest([{"role": "user", "content": prompt_template.replace("{answer}", text)}], max_tokens=512)
            for text in texts
        ]
        replies = client.chat_many(requests, progress=progress, desc="extract objects")
        per_answer = []
        for reply in replies:
            classes, unknown = classes_from_names(parse_object_list(reply.text), extractor)
            per_answer.append(classes)
            for name in unknown:
                unknown_names[name] = unknown_names.get(name, 0) + 1
    else:
        raise ValueError(f"unknown extraction mode {mode!r}: use 'rule' or 'llm'")
    responses, details = [], []
    for question, text, mentions in zip(answered, texts, per_answer, strict=True):
        gt = truth[question["image_id"]]
        responses.append({"mentions": mentions, "truth": gt, "words": len(text.split())})
        details.append(
            {
                "id": question["id"],
                "image_id": question["image_id"],
                "mentions": mentions,
                "hallucinated": sorted({c for c in mentions if c not in gt}),
                "ground_truth": sorted(gt),
            }
        )
    metrics = chair_metrics(responses)
    rep = {
        "benchmark": "object-halbench",
        "extraction": mode,
        **metrics,
        "missing_answers": list(missing),
        "units": "percent",
        "comparable_with_papers": COMPARABLE_LLM if mode == "llm" else COMPARABLE_RULE,
        # the extraction mode is part of the column name: rule and LLM numbers must never share a column
        "headline": {
            f"ObjHal CHAIR_s ({mode})": metrics["chair_s"],
            f"ObjHal CHAIR_i ({mode})": metrics["chair_i"],
            f"ObjHal recall ({mode})": metrics["recall"],
        },
    }
    if mode == "llm":
        rep["extractor_model"] = client.model
        rep["names_not_coco"] = dict(sorted(unknown_names.items(), key=lambda kv: -kv[1]))
    return rep, details


def format_report(rep: dict) -> str:
    def pct(v):
        return "n/a" if v is None else f"{v:.1f}"

    lines = [
        f"Object HalBench ({rep['extraction']} extraction): {rep['responses']} responses, "
        f"{rep['responses_mentioning_objects']} mention COCO objects",
        f"CHAIR_s  {pct(rep['chair_s'])}  ({rep['responses_with_hallucination']}/{rep['responses_mentioning_objects']})",
        f"CHAIR_i  {pct(rep['chair_i'])}  ({rep['hallucinated_mentions']}/{rep['mentions']})",
        f"recall   {pct(rep['recall'])}",
    ]
    if rep["missing_answers"]:
        lines.append(f"missing  {len(rep['missing_answers'])} questions had no answer (listed in the report)")
    lines.append(rep["comparable_with_papers"])
    return "\n".join(lines)
