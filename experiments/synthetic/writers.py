"""Write synthetic data sets to disk: corrections (preference data), SFT conversations, and held-out eval prompts.

Every item is generated from its own random stream, seeded by (split, seed, index), so a data set is the same on
every machine and item i does not depend on how many items come before or after it. Each writer uses its own split
name by default, so SFT images, correction images and eval images never coincide.

Files in the output folder (image paths in JSONL and JSON files are relative to that folder):
- `images/<id>.png`
- `objects.json`: image path -> sorted COCO class names present (the ground truth for `rlhfv eval chair`)
- `scenes.json`: image path -> objects with kind, colour, position and box (the ground truth for the annotator)
- `corrections.jsonl` | `sft.jsonl` | `prompts.jsonl`
- `hallucinations.jsonl` (corrections only): id -> what the hallucinating generator changed, with spans
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from experiments.synthetic.annotator import correct
from experiments.synthetic.describe import QUESTIONS, TEMPLATES, Sentence, describe, join, object_sentence
from experiments.synthetic.hallucinate import hallucinated_answer
from experiments.synthetic.world import (
    DEFAULT_CANVAS,
    KINDS,
    MAX_OBJECTS,
    POSITIONS,
    Scene,
    draw_scene,
    sample_scene,
)


@dataclass(frozen=True)
class Item:
    id: str
    image: str  # relative path
    scene: Scene
    question: str
    sentences: list[Sentence]
    rng: random.Random  # the item's own stream, for anything drawn after the description

    @property
    def description(self) -> str:
        return join(self.sentences)


def make_item(split: str, seed: int, index: int, canvas: int = DEFAULT_CANVAS, max_objects: int = MAX_OBJECTS) -> Item:
    rng = random.Random(f"rlhfv-synthetic/{split}/{seed}/{index}")
    scene = sample_scene(rng, canvas, max_objects)
    sentences = describe(scene, rng)
    question = rng.choice(QUESTIONS)
    item_id = f"{split}-s{seed}-{index:05d}"
    return Item(item_id, f"images/{item_id}.png", scene, question, sentences, rng)


def iter_items(split: str, n: int, seed: int, canvas: int = DEFAULT_CANVAS, max_objects: int = MAX_OBJECTS):
    for index in range(n):
        yield make_item(split, seed, index, canvas, max_objects)


def _write_common(out: Path, items: list[Item]) -> None:
    (out / "images").mkdir(parents=True, exist_ok=True)
    for item in items:
        draw_scene(item.scene).save(out / item.image, optimize=True)
    _write_json(out / "objects.json", {item.image: item.scene.coco_objects() for item in items})
    _write_json(out / "scenes.json", {item.image: item.scene.to_json() for item in items})


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _progress(iterable, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="item", disable=total < 200)


def write_corrections(
    out: str | Path,
    n: int,
    seed: int = 0,
    rate: float = 0.3,
    split: str = "corrections",
    canvas: int = DEFAULT_CANVAS,
    max_objects: int = MAX_OBJECTS,
) -> Path:
    """`n` rows of {id, image, question, response, corrected}: a hallucinated answer and its annotator correction.

    Every response has at least one hallucination, so `corrected != response` always holds.
    """
    out = Path(out)
    items, rows, records = [], [], []
    for item in _progress(iter_items(split, n, seed, canvas, max_objects), n, "corrections"):
        response, hallucinations = hallucinated_answer(item.scene, item.sentences, item.rng, rate, min_errors=1)
        corrected = correct(response, item.scene).text
        items.append(item)
        rows.append(
            {
                "id": item.id,
                "image": item.image,
                "question": item.question,
                "response": response,
                "corrected": corrected,
            }
        )
        records.append({"id": item.id, "hallucinations": [h.to_json() for h in hallucinations]})
    _write_common(out, items)
    _write_jsonl(out / "corrections.jsonl", rows)
    _write_jsonl(out / "hallucinations.jsonl", records)
    return out / "corrections.jsonl"


def visual_question(item: Item) -> tuple[str, str]:
    """A short question about one detail of the image and its true answer, drawn from the item's own stream.

    Three kinds, in the words of the descriptions so that what is learnt carries over to them: what is at a
    position (possibly nothing), what colour an object is, whether an object of some kind is there.
    """
    rng, scene = item.rng, item.scene
    kind_of_question = rng.randrange(3)
    if kind_of_question == 0:
        position = rng.choice(sorted(POSITIONS))
        obj = scene.at(position)
        question = f"What is {POSITIONS[position]}?"
        if obj is None:
            return question, f"There is nothing {POSITIONS[position]}."
        return question, object_sentence(obj.colour, obj.kind, position, rng.randrange(len(TEMPLATES))).text
    if kind_of_question == 1:
        obj = rng.choice(scene.objects)
        return f"What colour is the {obj.kind}?", f"The {obj.kind} is {obj.colour}."
    kind = rng.choice(sorted(KINDS))
    present = [o for o in scene.objects if o.kind == kind]
    question = f"Is there a {kind} in the image?"
    if not present:
        return question, f"No, there is no {kind}."
    obj = present[0]
    return question, f"Yes, there is a {obj.colour} {obj.kind} {POSITIONS[obj.position]}."


def write_sft(
    out: str | Path,
    n: int,
    seed: int = 0,
    split: str = "sft",
    canvas: int = DEFAULT_CANVAS,
    max_objects: int = MAX_OBJECTS,
    visual_questions: float = 0.0,
) -> Path:
    """`n` conversations {id, images, messages}: a question about the image and its true description.

    With `visual_questions` > 0, that share of the conversations is instead a short question about one detail of
    the image (`visual_question`): cheap grounding, which teaches a small model to read the image before it learns
    the long descriptions. With the default 0 the output is the same as before the option existed.
    """
    if not 0.0 <= visual_questions <= 1.0:
        raise ValueError(f"visual_questions must be in [0, 1], got {visual_questions}")
    out = Path(out)
    items = list(_progress(iter_items(split, n, seed, canvas, max_objects), n, "sft"))
    rows = []
    for item in items:
        question, answer = item.question, item.description
        if visual_questions > 0 and item.rng.random() < visual_questions:
            question, answer = visual_question(item)
        rows.append(
            {
                "id": item.id,
                "images": [item.image],
                "messages": [
                    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},
                    {"role": "assistant", "content": [{"type": "text", "text": answer}]},
                ],
            }
        )
    _write_common(out, items)
    _write_jsonl(out / "sft.jsonl", rows)
    return out / "sft.jsonl"


def write_prompts(
    out: str | Path,
    n: int,
    seed: int = 0,
    split: str = "eval",
    canvas: int = DEFAULT_CANVAS,
    max_objects: int = MAX_OBJECTS,
) -> Path:
    """`n` held-out prompts {id, image, question} (the input of `rlhfv eval generate`) and their ground truth."""
    out = Path(out)
    items = list(_progress(iter_items(split, n, seed, canvas, max_objects), n, "prompts"))
    rows = [{"id": item.id, "image": item.image, "question": item.question} for item in items]
    _write_common(out, items)
    _write_jsonl(out / "prompts.jsonl", rows)
    return out / "prompts.jsonl"


def load_scenes(path: str | Path) -> dict[str, Scene]:
    """`scenes.json` -> {image path: Scene}."""
    return {image: Scene.from_json(objects) for image, objects in json.loads(Path(path).read_text()).items()}
