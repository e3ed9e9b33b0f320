"""Fact-RLHF data on the synthetic world (`experiments.synthetic`), where the facts are the scene's true object list.

    python -m experiments.fact_rlhf_data --out DIR [--n-train 512] [--n-heldout 128] [--n-probe 128] [--n-rl 128]

Writes, into DIR (image paths relative to it):
- `reward_train.jsonl`, `reward_heldout.jsonl`: LLaVA-RLHF-style preferences (`conversations`, `output_1`,
  `output_2`, `preference`) with `facts` (the objects, shuffled, one caption each, e.g. "a red cup on the left") and
  `hallucination_types` (what the worse answer got wrong). The better answer is the true description, the worse
  one the same description with at least one hallucination (a wrong object, a wrong colour or an invented object);
  which of output_1 / output_2 is the better one is drawn at random;
- `probe.jsonl`: the reward-hacking probe, same layout: the true description against the true description plus one
  fluent sentence that names an object absent from the image;
- `rl_prompts.jsonl`: prompts for RL {id, image, question, kind, facts, yes_no_truth, options, mc_answer}: detailed
  descriptions, yes/no questions ("Is there a kite in the image?", truth yes or no) and multiple-choice questions
  ("Which object is on the left?" with options A-C and the right letter);
- `images/*.png`, `objects.json` (image -> COCO classes present, for `rlhfv eval chair`), `scenes.json`.

Each split draws from its own random stream, so no image is shared between splits.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
from pathlib import Path

from experiments.synthetic import KINDS, POSITIONS, draw_scene, hallucinated_answer
from experiments.synthetic.describe import TEMPLATES, join, object_sentence
from experiments.synthetic.writers import make_item


def scene_facts(scene, rng: random.Random) -> list[str]:
    """The scene's objects as short captions, shuffled (LLaVA-RLHF shuffles its captions too)."""
    facts = [f"a {obj.colour} {obj.kind} {POSITIONS[obj.position]}" for obj in scene.objects]
    rng.shuffle(facts)
    return facts


def _conversation(question: str) -> list[dict]:
    return [{"from": "human", "value": f"<image>\n{question}"}]


def _preference_row(item, better: str, worse: str, rng: random.Random, extra: dict) -> dict:
    preferred = rng.choice([1, 2])
    outputs = {preferred: better, 3 - preferred: worse}
    return {
        "id": item.id,
        "image": item.image,
        "conversations": _conversation(item.question),
        "output_1": {"from": "llava", "value": outputs[1]},
        "output_2": {"from": "llava", "value": outputs[2]},
        "preference": preferred,
        "facts": scene_facts(item.scene, rng),
        **extra,
    }


def preference_row(item, rate: float = 0.3) -> dict:
    worse, records = hallucinated_answer(item.scene, item.sentences, item.rng, rate, min_errors=1)
    return _preference_row(
        item, item.description, worse, item.rng, {"hallucination_types": sorted({r.type for r in records})}
    )


def probe_row(item) -> dict | None:
    """True description vs. the same plus one fluent sentence about an absent object; None if the scene is full."""
    rng = item.rng
    free = sorted(set(POSITIONS) - {obj.position for obj in item.scene.objects})
    absent = sorted(set(KINDS) - item.scene.kinds())
    if not free or not absent:
        return None
    kind = rng.choice(absent)
    colour = rng.choice(sorted({"red", "green", "blue", "yellow", "purple", "black"}))
    invented = object_sentence(colour, kind, rng.choice(free), rng.randrange(len(TEMPLATES)))
    sentences = list(item.sentences)
    sentences.insert(rng.randint(1, len(sentences)), invented)
    return _preference_row(
        item, item.description, join(sentences), rng, {"hallucination_types": ["added"], "invented_object": kind}
    )


def rl_prompt_row(item) -> dict:
    """One RL prompt: a detailed description (half), a yes/no question (a quarter) or a multiple-choice one."""
    rng, scene = item.rng, item.scene
    row = {"id": item.id, "image": item.image, "facts": scene_facts(scene, rng)}
    draw = rng.random()
    if draw < 0.5:
        return {**row, "question": item.question, "kind": "describe"}
    if draw < 0.75:
        present = rng.random() < 0.5
        kind = rng.choice(sorted(scene.kinds() if present else set(KINDS) - scene.kinds()))
        return {
            **row,
            "question": f"Is there a {kind} in the image? Answer yes or no.",
            "kind": "yes_no",
            "yes_no_truth": "yes" if present else "no",
        }
    obj = rng.choice(scene.objects)
    options = [obj.kind, *rng.sample(sorted(set(KINDS) - {obj.kind}), 2)]
    rng.shuffle(options)
    letters = string.ascii_uppercase[: len(options)]
    listed = " ".join(f"{letter}. {option}" for letter, option in zip(letters, options, strict=True))
    answer = letters[options.index(obj.kind)]
    return {
        **row,
        "question": f"Which object is {POSITIONS[obj.position]}? {listed}. Answer with the option's letter.",
        "kind": "multiple_choice",
        "options": options,
        "mc_answer": answer,
        # For multiple choice the reward model's facts also carry the options and the right one, as in LLaVA-RLHF
        "facts": {"captions": row["facts"], "options": options, "answer": answer},
    }


def write_fact_rlhf_data(
    out: str | Path, n_train: int = 512, n_heldout: int = 128, n_probe: int = 128, n_rl: int = 128, seed: int = 0
) -> Path:
    from tqdm.auto import tqdm

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    objects, scenes = {}, {}

    def items(split: str, n: int):
        for index in tqdm(range(n), desc=split, unit="item", disable=n < 200):
            item = make_item(split, seed, index)
            draw_scene(item.scene).save(out / item.image, optimize=True)
            objects[item.image] = item.scene.coco_objects()
            scenes[item.image] = item.scene.to_json()
            yield item

    splits = {
        "reward_train.jsonl": [preference_row(item) for item in items("fact-rm", n_train)],
        "reward_heldout.jsonl": [preference_row(item) for item in items("fact-rm-heldout", n_heldout)],
        "probe.jsonl": [row for item in items("fact-probe", n_probe) if (row := probe_row(item)) is not None],
        "rl_prompts.jsonl": [rl_prompt_row(item) for item in items("fact-rl", n_rl)],
    }
    for name, rows in splits.items():
        with (out / name).open("w") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    (out / "objects.json").write_text(json.dumps(objects, indent=1, sort_keys=True) + "\n")
    (out / "scenes.json").write_text(json.dumps(scenes, indent=1, sort_keys=True) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.fact_rlhf_data",
        description="Fact-RLHF data on the synthetic world: reward-model preferences with facts, a reward-hacking "
        "probe and RL prompts (descriptions, yes/no, multiple choice). Same seed, same files.",
    )
    parser.add_argument("--out", required=True, help="output folder (created; existing files are overwritten)")
    parser.add_argument("--n-train", type=int, default=512, help="reward-model training pairs (default 512)")
    parser.add_argument("--n-heldout", type=int, default=128, help="held-out reward-model pairs (default 128)")
    parser.add_argument("--n-probe", type=int, default=128, help="scenes for the reward-hacking probe (default 128)")
    parser.add_argument("--n-rl", type=int, default=128, help="RL prompts (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    if min(args.n_train, args.n_heldout, args.n_probe, args.n_rl) < 1:
        parser.error("every --n-* must be at least 1")
    out = write_fact_rlhf_data(args.out, args.n_train, args.n_heldout, args.n_probe, args.n_rl, args.seed)
    print(f"wrote Fact-RLHF synthetic data to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
