"""Metrics of the language-prior world, per image, with paired bootstrap confidence intervals.

Per answer (`image_records`), against the scene's ground truth:
- `case`: "absent" (the anchor is drawn without its usual companion), "present" (with it) or None (no anchor);
- `companion_named`: the answer names the anchor's companion (as CHAIR's object extractor reads it);
- CHAIR counts (`mentions`, `hallucinated`, `any_hallucinated`, `truth`, `recalled`) and `words`;
- `companion_at`: where the answer first names the companion, as a share of its length (0 = at the start), or None.

Aggregates (`summarize`), each a ratio of sums over images so that a bootstrap over images resamples them whole:
- companion hallucination rate = companion named / images with case "absent";
- companion recall = companion named / images with case "present" (a model that stops saying the word loses here);
- CHAIR_s = answers naming an absent object / answers naming any object; CHAIR_i = absent mentions / mentions;
- recall = true objects named / true objects; length = words per answer;
- other false claims = object sentences (the annotator's reading: kind, colour, position) that are false and are not
  an absent companion's / object sentences: every other error, which should stay rare.
"""

from __future__ import annotations

import random

from experiments.synthetic.annotator import find_claims
from experiments.synthetic.prior import COMPANIONS, anchor_of, companion_case
from experiments.synthetic.world import KINDS, Scene


METRICS = (
    "companion_hallucination",
    "companion_recall",
    "chair_s",
    "chair_i",
    "recall",
    "length_words",
    "other_false_claims",
)
# metric -> (numerator field, denominator field) over image records
_RATIOS = {
    "companion_hallucination": ("companion_hallucinated", "absent"),
    "companion_recall": ("companion_recalled", "present"),
    "chair_s": ("any_hallucinated", "any_mention"),
    "chair_i": ("hallucinated", "mentions"),
    "recall": ("recalled", "truth"),
    "length_words": ("words", "one"),
    "other_false_claims": ("other_false", "claims"),
}


def image_record(answer: str, scene: Scene, extractor) -> dict:
    """The per-image counts behind every metric (see the module docstring)."""
    truth = set(scene.coco_objects())
    mentions = extractor.mentions(answer)
    named = {m.cls for m in mentions}
    hallucinated = [m for m in mentions if m.cls not in truth]
    case = companion_case(scene)
    companion_named = case is not None and KINDS[COMPANIONS[anchor_of(scene)]] in named
    companion = KINDS[COMPANIONS[anchor_of(scene)]] if case else None
    claims = find_claims(answer)
    other_false = 0
    for claim in claims:
        obj = scene.at(claim["position"]) if claim["position"] else None
        true = obj is not None and obj.kind == claim["kind"] and claim["colour"] in (None, obj.colour)
        other_false += not true and not (case == "absent" and KINDS[claim["kind"]] == companion)
    return {
        "case": case,
        "companion_at": _first_mention_at(answer, mentions, KINDS[COMPANIONS[anchor_of(scene)]]) if case else None,
        "companion_named": companion_named,
        "absent": int(case == "absent"),
        "present": int(case == "present"),
        "companion_hallucinated": int(case == "absent" and companion_named),
        "companion_recalled": int(case == "present" and companion_named),
        "mentions": len(mentions),
        "hallucinated": len(hallucinated),
        "any_mention": int(bool(mentions)),
        "any_hallucinated": int(bool(hallucinated)),
        "truth": len(truth),
        "recalled": len(named & truth),
        "words": len(answer.split()),
        "claims": len(claims),
        "other_false": other_false,
        "one": 1,
    }


def _first_mention_at(answer: str, mentions, cls: str) -> float | None:
    for mention in mentions:
        if mention.cls == cls:
            return mention.start / max(1, len(answer))
    return None


def image_records(rows: list[dict], scenes: dict[str, Scene], extractor=None) -> dict[str, dict]:
    """{image: record} for answer rows {image, answer}; raises naming the row if its image has no scene."""
    from rlhfv.eval.chair import ObjectExtractor

    extractor = extractor or ObjectExtractor()
    records = {}
    for number, row in enumerate(rows, 1):
        if row.get("image") not in scenes:
            raise ValueError(f"answer row {number} (id {row.get('id')!r}): image {row.get('image')!r} has no scene")
        records[row["image"]] = image_record(row["answer"], scenes[row["image"]], extractor)
    return records


def summarize(records: list[dict]) -> dict:
    """metric -> value (None when its denominator is 0)."""
    out = {}
    for metric, (num, den) in _RATIOS.items():
        denominator = sum(r[den] for r in records)
        out[metric] = sum(r[num] for r in records) / denominator if denominator else None
    return out


def paired_bootstrap(a: dict[str, dict], b: dict[str, dict], samples: int = 2000, seed: int = 0) -> dict:
    """Mean and 95% interval of metric(b) - metric(a), resampling the images both were evaluated on (paired).

    `a` and `b` are `image_records` outputs on the same images. Returns metric -> {diff, low, high}.
    """
    images = sorted(a)
    if sorted(b) != images:
        raise ValueError("paired_bootstrap needs both record sets on the same images")
    rng = random.Random(seed)
    point_a, point_b = summarize([a[i] for i in images]), summarize([b[i] for i in images])
    draws: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(samples):
        pick = [images[rng.randrange(len(images))] for _ in images]
        sa, sb = summarize([a[i] for i in pick]), summarize([b[i] for i in pick])
        for metric in METRICS:
            if sa[metric] is not None and sb[metric] is not None:
                draws[metric].append(sb[metric] - sa[metric])
    result = {}
    for metric in METRICS:
        values = sorted(draws[metric])
        diff = None if point_a[metric] is None or point_b[metric] is None else point_b[metric] - point_a[metric]
        if not values:
            result[metric] = {"diff": diff, "low": None, "high": None}
            continue
        result[metric] = {
            "diff": diff,
            "low": values[int(0.025 * (len(values) - 1))],
            "high": values[int(0.975 * (len(values) - 1))],
        }
    return result
