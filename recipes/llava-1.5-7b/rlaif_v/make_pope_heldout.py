"""A POPE-format question file on COCO val2014 images that POPE itself does not use, for `rlhfv iterate`'s held-out
pick of the best checkpoint (`evaluation.kind: pope`).

POPE's random setting, rebuilt on other images: for each of `--images` images (drawn with `--seed` among the val2014
images with at least `--per-image` annotated object classes and not in any POPE split), `--per-image` questions about
objects present in its COCO instance annotations (label "yes") and as many about COCO classes absent from it
("no"), asked as POPE asks: "Is there a <class> in the image?". Selecting on these questions leaves POPE's own
500 images untouched for the final `rlhfv eval pope` report.

    python recipes/llava-1.5-7b/rlaif_v/make_pope_heldout.py --pope-dir POPE/output/coco \
        --instances coco/annotations/instances_val2014.json --output_dir data/pope_heldout/pope_heldout.json
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from data_tools.settings import add_output_argument


def build(pope_files: list[Path], instances: dict, images: int, per_image: int, seed: int) -> list[dict]:
    used = {json.loads(line)["image"] for path in pope_files for line in path.read_text().splitlines() if line.strip()}
    names = {c["id"]: c["name"] for c in instances["categories"]}
    files = {image["id"]: image["file_name"] for image in instances["images"]}
    present: dict[int, set[str]] = {}
    for annotation in instances["annotations"]:
        present.setdefault(annotation["image_id"], set()).add(names[annotation["category_id"]])
    pool = sorted(i for i, found in present.items() if files[i] not in used and len(found) >= per_image)
    if len(pool) < images:
        raise SystemExit(f"only {len(pool)} images qualify (need {images}); lower --images or --per-image")
    rng = random.Random(seed)
    rows = []
    for image_id in rng.sample(pool, images):
        absent = sorted(set(names.values()) - present[image_id])
        asked = [(o, "yes") for o in rng.sample(sorted(present[image_id]), per_image)]
        asked += [(o, "no") for o in rng.sample(absent, per_image)]
        for name, label in asked:
            rows.append({"question_id": len(rows), "image": files[image_id],
                         "text": f"Is there a {name} in the image?", "label": label})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pope-dir", required=True, help="POPE's output/coco folder (its images are left out)")
    parser.add_argument("--instances", required=True, help="COCO instances_val2014.json")
    add_output_argument(parser, required=True, help="the question file to write (JSONL, POPE's fields)")
    parser.add_argument("--images", type=int, default=100, help="images to ask about (default 100)")
    parser.add_argument("--per-image", type=int, default=3, help="yes and no questions per image (default 3 each)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pope_files = sorted(Path(args.pope_dir).glob("*pope_*.json"))
    if not pope_files:
        raise SystemExit(f"{args.pope_dir}: no POPE split files (*_pope_random.json, ...)")
    rows = build(pope_files, json.loads(Path(args.instances).read_text()), args.images, args.per_image, args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"wrote {out}: {len(rows)} questions on {args.images} images, half of them 'yes'")


if __name__ == "__main__":
    main()
