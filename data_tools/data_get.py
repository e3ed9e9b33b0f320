"""`rlhfv data get <name>`: the training data of the recipes, written where the recipes read it.

Each `prepare_*` function takes the folders the source's files were downloaded to (or the one `--from` folder), the
output folder and the parsed options, writes the files the recipes expect and returns a summary (a dict, printed
and saved as `summary.json`). Files are found by name anywhere under those folders, so a local copy may keep the
Hub's layout or be flat. A row that cannot be used is never dropped silently: it is counted in the summary with
its reason, and the first few are listed.
"""

from __future__ import annotations

import io
import json
import random
import re
import shutil
from pathlib import Path

from data_tools.errors import CommandError, RowError


SHOWN_PROBLEMS = 5  # rows listed in the summary per kind of problem


def find_file(roots: list[Path], pattern: str, what: str) -> Path:
    """The one file named like `pattern` under the roots."""
    matches = find_files(roots, pattern)
    if not matches:
        raise CommandError(f"no {what} ({pattern}) under {', '.join(map(str, roots))}")
    if len(matches) > 1:
        raise CommandError(f"several {what} files under {', '.join(map(str, roots))}: {[str(m) for m in matches]}")
    return matches[0]


def find_files(roots: list[Path], pattern: str) -> list[Path]:
    found = []
    for root in roots:
        found += [path for path in sorted(Path(root).rglob(pattern)) if path.is_file() and ".cache" not in path.parts]
    return found


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CommandError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def write_jsonl(path: Path, rows) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def image_extension(data: bytes, path: str | None) -> str:
    """The file suffix for embedded image bytes: the stored path's, else the format PIL reads."""
    if path and Path(path).suffix:
        return Path(path).suffix.lower()
    from PIL import Image

    kind = (Image.open(io.BytesIO(data)).format or "png").lower()
    return ".jpg" if kind == "jpeg" else f".{kind}"


def parquet_rows(paths: list[Path], columns: list[str] | None = None):
    """(file, row number from 1, row dict) for every row of the Parquet files, one batch in memory at a time."""
    import pyarrow.parquet as pq

    for path in paths:
        handle = pq.ParquetFile(path)
        wanted = None if columns is None else [c for c in columns if c in handle.schema_arrow.names]
        number = 0
        for batch in handle.iter_batches(batch_size=256, columns=wanted):
            for row in batch.to_pylist():
                number += 1
                yield path, number, row


def convert_into(inputs: list[Path], output: Path, format_name: str) -> dict:
    """Run `rlhfv convert` (rejected rows listed beside the output) and return its report numbers."""
    import argparse

    from data_tools import convert_cli

    parser = argparse.ArgumentParser(prog="rlhfv")
    convert_cli.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "convert",
            *map(str, inputs),
            "--output",
            str(output),
            "--format",
            format_name,
            "--on-error",
            "skip",
            "--overwrite",
            "--no-progress",
        ]
    )
    args.func(args)
    info = {"output": str(output)}
    rejects = Path(f"{output}.rejects.jsonl")
    info["rejected_rows_file"] = str(rejects) if rejects.is_file() and rejects.stat().st_size else None
    return info


class Problems:
    """Counts and first examples of the rows left out, by reason."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < SHOWN_PROBLEMS:
            shown.append(where)

    def summary(self) -> dict:
        return {reason: {"rows": n, "first": self.examples[reason]} for reason, n in self.counts.items()}


# ---- RLHF-V ---------------------------------------------------------------------------------------------------------
def prepare_rlhf_v(roots: list[Path], out: Path, options) -> dict:
    inputs = [p for p in find_files(roots, "*.parquet") if "_prev" not in p.name] or find_files(roots, "*.jsonl")
    if not inputs:
        raise CommandError(f"no RLHF-V-Dataset Parquet file under {', '.join(map(str, roots))}")
    converted = convert_into(inputs, out / "dense", "rlhf-v")
    return {"inputs": [str(p) for p in inputs], "dense_dataset": converted}


# ---- RLAIF-V --------------------------------------------------------------------------------------------------------
def _safe_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "image"


def rlaif_v_prompts(inputs: list[Path], out: Path, limit: int | None) -> dict:
    """One {id, image, question} per distinct (image, question), the image written once under out/images."""
    seen: dict[tuple[str, str], str] = {}
    image_files: dict[str, str] = {}
    problems = Problems()
    rows = []
    columns = ["question", "image", "image_path", "idx", "ds_name"]
    for path, number, row in parquet_rows(inputs, columns):
        where = f"{path.name} row {number}"
        question, image = row.get("question"), row.get("image")
        if not isinstance(question, str) or not question.strip():
            problems.add("question missing or empty", where)
            continue
        if not isinstance(image, dict) or not image.get("bytes"):
            problems.add("image missing (expected {bytes, path})", where)
            continue
        key = row.get("image_path") or image.get("path") or f"{path.name}-{number}"
        if (key, question) in seen:
            continue
        if limit is not None and len(rows) >= limit:
            break
        if key not in image_files:
            name = f"{len(image_files):06d}_{_safe_stem(Path(str(key)).stem)}{image_extension(image['bytes'], key)}"
            (out / "images").mkdir(parents=True, exist_ok=True)
            (out / "images" / name).write_bytes(image["bytes"])
            image_files[key] = name
        prompt_id = f"rlaif-v-{len(rows)}"
        seen[(key, question)] = prompt_id
        rows.append(
            {
                "id": prompt_id,
                "image": f"images/{image_files[key]}",
                "question": question,
                "source": {"idx": row.get("idx"), "image_path": row.get("image_path")},
            }
        )
    write_jsonl(out / "prompts.jsonl", rows)
    return {
        "prompts": str(out / "prompts.jsonl"),
        "instructions": len(rows),
        "images": len(image_files),
        "limit": limit,
        "left_out": problems.summary(),
    }


def prepare_rlaif_v(roots: list[Path], out: Path, options) -> dict:
    inputs = find_files(roots, "*.parquet")
    if not inputs:
        raise CommandError(f"no RLAIF-V-Dataset Parquet files under {', '.join(map(str, roots))}")
    summary = {"inputs": [str(p) for p in inputs]}
    summary["prompts"] = rlaif_v_prompts(inputs, out, options.max_prompts)
    if not options.prompts_only:
        summary["dense_dataset"] = convert_into(inputs, out / "dense", "rlaif-v")
    return summary


# ---- LLaVA-RLHF -----------------------------------------------------------------------------------------------------
def _image_check(names, images: Path) -> dict:
    names = sorted(set(names))
    if not images.is_dir():
        return {
            "folder": str(images),
            "present": 0,
            "missing": len(names),
            "note": "folder not found: get the "
            "COCO train2017 images (http://images.cocodataset.org/zips/train2017.zip) and unpack them there",
        }
    missing = [name for name in names if not (images / name).is_file()]
    return {
        "folder": str(images),
        "present": len(names) - len(missing),
        "missing": len(missing),
        "first_missing": missing[:SHOWN_PROBLEMS],
    }


def prepare_llava_rlhf_preference(roots: list[Path], out: Path, options) -> dict:
    from data_tools.formats import llava_rlhf

    path = find_file(roots, "llava_7b_v1_preference.json", "LLaVA-RLHF preference file")
    captions_path = find_file(roots, "image_to_caption.json", "image -> captions file")
    rows = read_json(path)
    if not isinstance(rows, list):
        raise CommandError(f"{path}: expected a JSON list of preference rows, got {type(rows).__name__}")
    captions = read_json(captions_path)
    problems = Problems()
    usable = []
    for number, row in enumerate(rows, start=1):
        where = f"{path.name} row {number}"
        try:
            llava_rlhf.parse(row)
        except RowError as error:
            problems.add(f"{error.field}: {error.detail}", where)
            continue
        if row.get("image") is not None and row["image"] not in captions:
            problems.add("image has no captions in image_to_caption.json", where)
        usable.append(row)
    if options.heldout >= len(usable):
        raise CommandError(f"--heldout {options.heldout}: only {len(usable)} usable rows in {path}")
    order = list(range(len(usable)))
    random.Random(options.seed).shuffle(order)
    held = set(order[: options.heldout])
    heldout = [row for index, row in enumerate(usable) if index in held]
    train = [row for index, row in enumerate(usable) if index not in held]
    write_json(out / "preference_train.json", train)
    write_json(out / f"preference_heldout{options.heldout}.json", heldout)
    shutil.copyfile(captions_path, out / "image_to_caption.json")
    return {
        "input": str(path),
        "rows": len(rows),
        "train": {"file": str(out / "preference_train.json"), "rows": len(train)},
        "heldout": {
            "file": str(out / f"preference_heldout{options.heldout}.json"),
            "rows": len(heldout),
            "seed": options.seed,
        },
        "captions": {"file": str(out / "image_to_caption.json"), "images": len(captions)},
        "problems": problems.summary(),
        "images": _image_check([r["image"] for r in usable if isinstance(r.get("image"), str)], Path(options.images)),
    }


YES_NO = {"yes": "yes", "no": "no"}
OPTION = re.compile(r"^\(?([A-Ea-e])\)?[.:)]?$")


def rl_prompt(row: dict, index: int, captions: dict) -> dict:
    """One RL prompt from a row of llava_ppo50k-aokvqa12k-vqa10k.json (conversations: human question, gpt answer)."""
    from data_tools.formats import check_text, strip_image_placeholder

    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns or not isinstance(turns[0], dict):
        raise RowError("bad_value", "conversations", "expected a list of {from, value} turns")
    if turns[0].get("from") != "human":
        raise RowError("bad_value", "conversations[0].from", f"expected 'human', got {turns[0].get('from')!r}")
    question = strip_image_placeholder(check_text(turns[0].get("value"), "conversations[0].value"))
    image = check_text(row.get("image"), "image")
    if image not in captions:
        raise RowError("bad_value", "image", "has no captions in image_to_caption.json")
    reference = ""
    if len(turns) > 1 and isinstance(turns[1], dict) and isinstance(turns[1].get("value"), str):
        reference = turns[1]["value"].strip()
    words = reference.lower().rstrip(".!").strip()
    option = OPTION.match(reference)
    return {
        "id": str(row.get("id") if row.get("id") is not None else f"ppo-{index}"),
        "image": image,
        "question": question,
        "facts": list(captions[image]),
        "yes_no_truth": YES_NO.get(words),
        "mc_answer": option.group(1).upper() if option else None,
    }


def prepare_llava_rlhf_rl(roots: list[Path], out: Path, options) -> dict:
    path = find_file(roots, "llava_ppo50k-aokvqa12k-vqa10k.json", "LLaVA-RLHF RL prompt file")
    captions = read_json(find_file(roots, "image_to_caption.json", "image -> captions file"))
    rows = read_json(path)
    problems = Problems()
    prompts = []
    for index, row in enumerate(rows):
        try:
            prompts.append(rl_prompt(row, index, captions))
        except RowError as error:
            problems.add(f"{error.field}: {error.detail}", f"{path.name} row {index + 1}")
    write_jsonl(out / "rl_prompts.jsonl", prompts)
    return {
        "input": str(path),
        "rows": len(rows),
        "prompts": {
            "file": str(out / "rl_prompts.jsonl"),
            "rows": len(prompts),
            "yes_no": sum(p["yes_no_truth"] is not None for p in prompts),
            "multiple_choice": sum(p["mc_answer"] is not None for p in prompts),
        },
        "left_out": problems.summary(),
        "images": _image_check([p["image"] for p in prompts], Path(options.images)),
    }
