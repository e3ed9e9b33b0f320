"""`rlhfv data get <benchmark>`: the benchmark files `rlhfv eval` reads, in the layout its commands expect."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from data_tools.data_get import (
    Problems,
    find_file,
    find_files,
    image_extension,
    parquet_rows,
    read_json,
    write_jsonl,
)
from data_tools.errors import CommandError


MMHAL_FIELDS = ("question_type", "question_topic", "image_id", "image_src", "image_content", "question", "gt_answer")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


def _copy_images(sources: list[Path], target: Path) -> int:
    target.mkdir(parents=True, exist_ok=True)
    for path in sources:
        shutil.copyfile(path, target / path.name)
    return len(sources)


def _unzip_images(archive: Path, target: Path) -> int:
    """Every image inside the zip, written flat (by file name) into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    with zipfile.ZipFile(archive) as handle:
        for member in handle.infolist():
            name = Path(member.filename).name
            if member.is_dir() or not name.lower().endswith(IMAGE_SUFFIXES) or name.startswith("._"):
                continue
            (target / name).write_bytes(handle.read(member))
            count += 1
    return count


# ---- MMHal-Bench ----------------------------------------------------------------------------------------------------
def prepare_mmhal(roots: list[Path], out: Path, options) -> dict:
    template_path = find_file(roots, "response_template.json", "MMHal-Bench response template")
    items = read_json(template_path)
    if not isinstance(items, list):
        raise CommandError(f"{template_path}: expected a JSON list of questions, got {type(items).__name__}")
    for number, item in enumerate(items, start=1):
        missing = [name for name in MMHAL_FIELDS if name not in item]
        if missing:
            raise CommandError(
                f"{template_path}: item {number}: missing field {missing[0]!r} (not MMHal-Bench's template?)"
            )
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template_path, out / "response_template.json")
    archives = find_files(roots, "test_data.zip")
    if archives:
        written = _unzip_images(archives[0], out / "images")
    else:  # a local copy with the images already unpacked
        written = _copy_images(
            [p for p in find_files(roots, "*") if p.suffix.lower() in IMAGE_SUFFIXES], out / "images"
        )
    wanted = [Path(str(item["image_src"])).name for item in items]
    missing = [name for name in wanted if not (out / "images" / name).is_file()]
    if missing:
        raise CommandError(
            f"MMHal-Bench: {len(missing)} of {len(wanted)} images not found (first: {missing[0]}); the images come "
            "in test_data.zip of the dataset repository"
        )
    return {
        "template": str(out / "response_template.json"),
        "questions": len(items),
        "images": {"folder": str(out / "images"), "written": written, "used": len(set(wanted))},
    }


# ---- POPE -----------------------------------------------------------------------------------------------------------
def _pope_image_name(row: dict) -> str:
    source = row.get("image_source")
    if isinstance(source, str) and source.strip():
        name = Path(source.strip()).name
        return name if Path(name).suffix.lower() in IMAGE_SUFFIXES else f"{name}.jpg"
    return f"pope_{row['question_id']}.jpg"


def prepare_pope(roots: list[Path], out: Path, options) -> dict:
    inputs = find_files(roots, "*.parquet")
    if not inputs:
        raise CommandError(f"no POPE Parquet files under {', '.join(map(str, roots))}")
    splits: dict[str, list[dict]] = {}
    problems = Problems()
    images = out / "val2014"
    images.mkdir(parents=True, exist_ok=True)
    columns = ["question_id", "question", "answer", "category", "image_source", "image"]
    for path, number, row in parquet_rows(inputs, columns):
        where = f"{path.name} row {number}"
        answer = str(row.get("answer") or "").strip().lower()
        if row.get("category") not in ("random", "popular", "adversarial"):
            problems.add(f"category {row.get('category')!r} is not random, popular or adversarial", where)
            continue
        if answer not in ("yes", "no") or not row.get("question") or row.get("question_id") is None:
            problems.add("question_id, question or a yes/no answer missing", where)
            continue
        name = _pope_image_name(row)
        target = images / name
        if not target.is_file():
            image = row.get("image")
            if not isinstance(image, dict) or not image.get("bytes"):
                problems.add("image missing (expected {bytes, path})", where)
                continue
            if not Path(name).suffix:
                name += image_extension(image["bytes"], image.get("path"))
            target.write_bytes(image["bytes"])
        splits.setdefault(row["category"], []).append(
            {"question_id": row["question_id"], "image": name, "text": row["question"], "label": answer}
        )
    if not splits:
        raise CommandError(f"POPE: no usable question in {', '.join(map(str, inputs))}")
    for split, rows in splits.items():
        write_jsonl(out / f"coco_pope_{split}.json", rows)
    return {
        "splits": {split: len(rows) for split, rows in splits.items()},
        "images": {"folder": str(images), "files": sum(1 for _ in images.iterdir())},
        "left_out": problems.summary(),
    }


# ---- Object HalBench ------------------------------------------------------------------------------------------------
def _annotation(roots: list[Path], out: Path, name: str) -> Path:
    found = find_files(roots, name)
    if found:
        shutil.copyfile(found[0], out / name)
        return out / name
    for archive in find_files(roots, "annotations_trainval2014.zip"):
        with zipfile.ZipFile(archive) as handle:
            member = next((m for m in handle.namelist() if m.endswith(f"/{name}") or m == name), None)
            if member:
                (out / name).write_bytes(handle.read(member))
                return out / name
    raise CommandError(f"Object HalBench: no {name} (or annotations_trainval2014.zip) under the --from folder")


def prepare_object_halbench(roots: list[Path], out: Path, options) -> dict:
    import json

    out.mkdir(parents=True, exist_ok=True)
    candidates = [p for p in find_files(roots, "*.jsonl") if "halbench" in p.name.lower()] or find_files(
        roots, "*.jsonl"
    )
    if len(candidates) != 1:
        raise CommandError(
            f"Object HalBench: expected one question file (*.jsonl) under the --from folder, found {len(candidates)}"
        )
    questions = 0
    with open(candidates[0], encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if "image_id" not in row or not any(k in row for k in ("question", "text", "prompt")):
                raise CommandError(f"{candidates[0]}: line {number}: needs image_id and question (or text, prompt)")
            questions += 1
    shutil.copyfile(candidates[0], out / "questions.jsonl")
    instances = _annotation(roots, out, "instances_val2014.json")
    captions = _annotation(roots, out, "captions_val2014.json")
    return {
        "questions": {"file": str(out / "questions.jsonl"), "rows": questions},
        "instances": str(instances),
        "captions": str(captions),
    }


# ---- AMBER ----------------------------------------------------------------------------------------------------------
AMBER_FILES = ("annotations.json", "relation.json", "safe_words.txt", "metrics.txt")


def prepare_amber(roots: list[Path], out: Path, options) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    for name in AMBER_FILES:
        shutil.copyfile(find_file(roots, name, f"AMBER {name}"), out / name)
    queries = find_files(roots, "query_*.json")
    if not any(p.name == "query_all.json" for p in queries):
        raise CommandError("AMBER: no query_all.json under the --from folder (it is in AMBER's data/query/)")
    for path in queries:
        shutil.copyfile(path, out / path.name)
    items = len(read_json(out / "query_all.json"))
    images = [p for p in find_files(roots, "AMBER_*") if p.suffix.lower() in IMAGE_SUFFIXES]
    for archive in find_files(roots, "*.zip") if not images else []:
        _unzip_images(archive, out / "image")
    if images:
        _copy_images(images, out / "image")
    count = sum(1 for p in (out / "image").glob("AMBER_*")) if (out / "image").is_dir() else 0
    if count == 0:
        raise CommandError(
            "AMBER: no images (AMBER_<n>.jpg) under the --from folder: unpack AMBER's image archive there"
        )
    return {
        "queries": items,
        "query_files": sorted(p.name for p in queries),
        "images": {"folder": str(out / "image"), "files": count},
    }
