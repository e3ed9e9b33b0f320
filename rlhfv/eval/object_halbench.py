"""Object HalBench (RLHF-V, RLAIF-V): detailed descriptions of 300 COCO val2014 images, scored with CHAIR.

Question file: JSONL, one prompt per line, with `image_id` (the COCO id, or a COCO file name), the prompt
(`question`, `text` or `prompt`), an optional id (`question_id` or `id`; default: the line's index) and the image
as a path (`image_path`, or `image` when it names a file) or embedded base64 (`image`, as in the RLHF-V release);
without either, `--images DIR` holds COCO_val2014_<12-digit id>.jpg.

Scoring follows RLHF-V's eval/eval_gpt_obj_halbench.py and eval/summarize_gpt_obj_halbench_review.py (commit
8daac8a; the steps are in rlhfv.eval.objhal_chair). Ground truth per image: the classes of the COCO instance
annotations plus the COCO objects its reference captions name. Objects in an answer are found in one of two ways:
- `llm` (the papers' protocol, `--use_gpt` in the official script): the extractor model gets the official prompt as
  its system message with the question and answer filled in (temperature 0.2, max_tokens 512), replies with a JSON
  list of names, which are mapped to COCO classes; answers of three words or fewer are not sent (no objects);
- `rule` (the official script without `--use_gpt`): the answer's own words, as for the captions.
The synonym file and the prompt come from the user's copy of the RLHF-V repository (`--synonyms`, `--prompt-file`);
without them rlhfv's own table and prompt are used and the report says the numbers are not comparable with papers.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

from rlhfv.eval.io import EvalInputError, read_rows
from rlhfv.eval.language import LanguageTools, approximate_note
from rlhfv.eval.objhal_chair import (
    SynonymTable,
    compute_chair,
    extracted_names,
    printed_eval,
    printed_summary,
    text_names,
)


OFFICIAL_EXTRACTOR = "gpt-3.5-turbo-0613"  # eval_gpt_obj_halbench.py's Chat(model=...); retired by OpenAI
# rlhfv's own extraction prompt, used only without --prompt-file (the report then says: not comparable with papers)
EXTRACTION_PROMPT = """List every physical object that the answer below says is in the image, as a JSON list of \
names without attributes, for example ["dog", "dining table"]; answer [] if there is none.

Question: {question}
Answer: {answer}"""


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
    if not rows:  # scored, it would report zero items and exit 0
        raise EvalInputError(f"{path}: no questions (the file holds no rows)")
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
    instances: list[str | Path],
    captions: list[str | Path],
    table: SynonymTable,
    tools: LanguageTools | None,
    image_ids: set[int],
    caption_classes=None,
) -> dict[int, set[str]]:
    """COCO classes per image: instance annotations, plus the objects its reference captions name.

    Several instance and caption files may be given (the official code reads both train2014 and val2014).
    `caption_classes(caption) -> classes` replaces the official caption reading (rlhfv iterate's offline matcher).
    """
    if caption_classes is None:
        caption_classes = lambda caption: {cls for _, cls in text_names(caption, table, tools)}  # noqa: E731
    truth: dict[int, set[str]] = {image_id: set() for image_id in image_ids}
    known: set[int] = set()
    for path in instances:
        data = _load_json(path, "instances")
        if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
            raise EvalInputError(f"{path}: not COCO instances annotations (needs images, annotations, categories)")
        known |= {image["id"] for image in data["images"]}
        categories = {c["id"]: c["name"] for c in data["categories"]}
        for annotation in data["annotations"]:
            if annotation["image_id"] in image_ids:
                name = categories[annotation["category_id"]]
                if name not in table.to_class:
                    raise EvalInputError(f"{path}: category {name!r} is not in the synonym table ({table.source})")
                truth[annotation["image_id"]].add(table.to_class[name])
    for path in captions:
        data = _load_json(path, "captions")
        if not isinstance(data, dict) or "annotations" not in data:
            raise EvalInputError(f"{path}: not COCO caption annotations (needs annotations)")
        known |= {image["id"] for image in data.get("images", [])}
        for annotation in data["annotations"]:
            if annotation["image_id"] in image_ids:
                truth[annotation["image_id"]].update(caption_classes(annotation["caption"]))
    unknown = sorted(image_ids - known)
    if unknown:
        names = ", ".join(str(p) for p in [*instances, *captions])
        raise EvalInputError(
            f"no COCO annotations for image id(s) {unknown[:10]} in {names}: Object HalBench uses COCO 2014; pass "
            "instances_val2014.json and captions_val2014.json (and the train2014 files if some images are there)"
        )
    return truth


def _load_json(path, what):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise EvalInputError(f"{path}: cannot read the COCO {what} file ({error})") from None


def parse_object_list(reply: str) -> list:
    """The official parse_object_list: the reply as JSON, else its last line when the reply holds '["'."""
    try:
        parsed = json.loads(reply)
    except json.JSONDecodeError:
        if '["' not in reply:
            raise ValueError("the reply is not a JSON list") from None
        try:
            parsed = json.loads(reply.strip().split("\n")[-1])
        except json.JSONDecodeError:
            raise ValueError("the reply is not a JSON list") from None
    if not isinstance(parsed, (list, str, dict)):  # the official code iterates over whatever JSON it got
        raise ValueError(f"the reply is JSON but not a list ({type(parsed).__name__})")
    return list(parsed)


def fill_prompt(template: str, question: str, answer: str) -> str:
    """The official get_gpt_resp: {question} first, then {answer}, replaced literally."""
    return template.replace("{question}", question).replace("{answer}", answer)


def extract_with_llm(client, items: list[dict], template: str, progress: bool = True) -> list[list]:
    """The extractor's list for each item ({question, answer}); [] without a request for answers of <= 3 words."""
    from rlhfv.endpoint import ChatRequest, EndpointReplyError

    sent = [i for i, item in enumerate(items) if len(item["answer"].strip().split()) > 3]
    requests = [
        ChatRequest(
            [{"role": "system", "content": fill_prompt(template, items[i]["question"], items[i]["answer"])}],
            temperature=0.2,
            max_tokens=512,
        )
        for i in sent
    ]
    try:
        replies = client.chat_many(requests, validate=parse_object_list, progress=progress, desc="extract objects")
    except EndpointReplyError as error:
        where = items[sent[error.index]]["_where"]
        raise EvalInputError(
            f"{where}: the extractor's reply is not a JSON list ({error.reason}): {error.reply!r}"
        ) from None
    lists = [[] for _ in items]
    for i, reply in zip(sent, replies, strict=True):
        lists[i] = parse_object_list(reply.text)
    return lists


def score(questions: list[dict], answers: dict[str, dict], truth: dict[int, set[str]], setup: dict) -> tuple:
    """The report and one detail row per scored answer.

    `setup`: table (SynonymTable), tools (LanguageTools), mode ("rule"/"llm"), client and template (llm),
    prompt_source, missing, progress.
    """
    table, tools, mode = setup["table"], setup["tools"], setup["mode"]
    answered = [q for q in questions if q["id"] in answers]
    items = [
        {
            "question": q["question"],
            "answer": answers[q["id"]]["answer"].replace("Assistant:", "").strip(),
            "_where": answers[q["id"]]["_where"],
        }
        for q in answered
    ]
    if mode == "llm":
        lists = extract_with_llm(setup["client"], items, setup["template"], setup.get("progress", True))
        found = [extracted_names(names, table, tools) for names in lists]
    elif mode == "rule":
        lists = [None] * len(items)
        found = [text_names(item["answer"], table, tools) for item in items]
    else:
        raise ValueError(f"unknown extraction mode {mode!r}: use 'rule' or 'llm'")
    responses, details = [], []
    for question, item, names, listed in zip(answered, items, found, lists, strict=True):
        gt = truth[question["image_id"]]
        responses.append({"names": names, "truth": gt, "answer": item["answer"]})
        details.append(
            {
                "id": question["id"],
                "image_id": question["image_id"],
                "extracted": listed,
                "names": [list(n) for n in names],
                "ground_truth": sorted(gt),
                "hallucinated": [n for n, cls in names if cls not in gt],
            }
        )
    return _report(compute_chair(responses), setup), details


def _report(chair: dict, setup: dict) -> dict:
    metrics, mode = chair["overall_metrics"], setup["mode"]
    deviations = []
    if setup["table"].source == "rlhfv":
        deviations.append("rlhfv's own synonym table, not the benchmark's synonyms_refine.txt (--synonyms)")
    if mode == "llm" and setup.get("prompt_source") == "rlhfv":
        deviations.append("rlhfv's own extraction prompt, not the official one (--prompt-file)")
    if approximate_note(setup["tools"]):
        deviations.append(approximate_note(setup["tools"]))
    official = "eval_gpt_obj_halbench.py " + ("--use_gpt" if mode == "llm" else "without --use_gpt")
    if deviations:
        comparable = "NOT comparable with papers: " + "; ".join(deviations)
    elif mode == "llm":
        comparable = (
            f"The official protocol; comparable with the RLHF-V / RLAIF-V tables when the extractor is "
            f"theirs ({OFFICIAL_EXTRACTOR}, retired: a substitute moves the numbers)"
        )
    else:
        comparable = "The official script's rule-based path: NOT comparable with the papers' tables (LLM extraction)"

    def pct(value):
        return None if value is None else 100 * value

    return {
        "benchmark": "object-halbench",
        "extraction": mode,
        "mode": f"official ({official})" if not deviations else "deviating: see deviations",
        "extractor_model": setup["client"].model if mode == "llm" else None,
        "synonyms": setup["table"].source,
        "prompt": setup.get("prompt_source") if mode == "llm" else None,
        "overall_metrics": metrics,
        "printed": printed_summary(metrics),
        "printed_eval": printed_eval(metrics),
        "totals": chair["totals"],
        "chair_s": pct(metrics["CHAIRs_refine"]),
        "chair_i": pct(metrics["CHAIRi"]),
        "recall": pct(metrics["obj_rec"]),
        "mean_length_words": metrics["avg_word_len"],
        "missing_answers": list(setup.get("missing", [])),
        "deviations": deviations,
        "approximate": bool(setup["tools"].approximate),
        "units": "percent (printed: as the official summary prints them)",
        "comparable_with_papers": comparable,
        # the extraction mode is part of the column name: rule and LLM numbers must never share a column
        "headline": {
            f"ObjHal CHAIR_s ({mode})": pct(metrics["CHAIRs_refine"]),
            f"ObjHal CHAIR_i ({mode})": pct(metrics["CHAIRi"]),
            f"ObjHal recall ({mode})": pct(metrics["obj_rec"]),
        },
    }


def format_report(rep: dict) -> str:
    model = f", extractor {rep['extractor_model']}" if rep["extractor_model"] else ""
    lines = [f"Object HalBench ({rep['extraction']} extraction{model}), mode: {rep['mode']}"]
    lines += [f"{name:<16}: {value}" for name, value in rep["printed"].items()]
    lines.append("eval line       : " + "  ".join(f"{k} {v}" for k, v in rep["printed_eval"].items()))
    lines += [f"deviation: {d}" for d in rep["deviations"]]
    if rep["missing_answers"]:
        lines.append(f"missing  {len(rep['missing_answers'])} questions had no answer (listed in the report)")
    lines.append(rep["comparable_with_papers"])
    return "\n".join(lines)
