"""Fact-RLHF evidence on the synthetic world: how well reward models rank held-out pairs, and how often they fall for
fluent hallucinations (the reward-hacking probe).

    python -m experiments.fact_rlhf --data outputs/fact_rlhf/data \
        --reward-model facts=outputs/fact_rlhf/rm_facts_s42 --reward-model plain=outputs/fact_rlhf/rm_plain_s42 \
        --out outputs/fact_rlhf/reward_eval.json

For every reward model (NAME=DIR; it reads facts if it was trained with them):
- held-out accuracy: share of `reward_heldout.jsonl` pairs whose true description scores above the hallucinated one,
  overall and per kind of hallucination (wrong object, wrong colour, invented object), with Wilson 95% intervals;
- probe: share of `probe.jsonl` pairs where the answer that adds one fluent sentence about an absent object scores
  *above* the true description (lower is better), with Wilson 95% intervals;
- best-of-N proxy for RL: on `--bon-items` fresh scenes, each reward model picks the best of 6 candidate answers
  (the true description and 5 hallucinated variants from the synthetic hallucinator); reported are the share of
  picks that are the true description and the mean number of hallucinations in the pick (chance: 1/6 true). Best of N
  is a common stand-in for optimising a reward under a KL budget: it shows what the reward would push towards,
  without training a policy;
and for each pair of reward models, the paired difference of both figures with a bootstrap 95% interval (the models
see the same pairs, so pair-level resampling is the honest interval).
"""

from __future__ import annotations

import argparse
import json
import random
import sys

from experiments.intervals import wilson as wilson_interval


def wilson(successes: int, total: int) -> tuple[float | None, float | None]:
    """Wilson score 95% interval (low, high) of a proportion; (None, None) when `total` is 0."""
    return wilson_interval(successes, total)[1:]


def paired_bootstrap(a: list[bool], b: list[bool], draws: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of a - b over pairs and its bootstrap 95% interval (resampling pairs)."""
    rng = random.Random(seed)
    n = len(a)
    diffs = [int(x) - int(y) for x, y in zip(a, b, strict=True)]
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(draws))
    return sum(diffs) / n, means[int(0.025 * draws)], means[int(0.975 * draws) - 1]


def score_pairs(reward_model_dir: str, path: str) -> tuple[list[bool], list[dict]]:
    """For each pair of a LLaVA-RLHF-style file: whether the preferred answer scores higher; and the rows."""
    from rlhfv.reward.data import load_reward_data
    from rlhfv.reward.inputs import score_answers
    from rlhfv.reward.loading import load_reward_model_and_processor

    model, processor, settings = load_reward_model_and_processor(reward_model_dir)
    use_facts = settings.get("facts") != "none"
    dataset, _ = load_reward_data(path, use_facts=use_facts)
    rows = list(dataset)
    with open(path) as handle:
        raw = [json.loads(line) for line in handle if line.strip()]
    prompts = [row["prompt"] for row in rows]
    images = [row.get("images") or [] for row in rows]
    facts = [row["facts"] for row in rows] if use_facts else None
    template = settings.get("facts_template")
    chosen = score_answers(model, processor, prompts, [r["chosen"] for r in rows], images, facts, template, 16)
    rejected = score_answers(model, processor, prompts, [r["rejected"] for r in rows], images, facts, template, 16)
    return [c > r for c, r in zip(chosen, rejected, strict=True)], raw


def best_of_n_candidates(n_items: int, seed: int, image_dir: str, n_hallucinated: int = 5) -> list[dict]:
    """Fresh scenes, each with its true description and `n_hallucinated` hallucinated variants (with error counts)."""
    import os

    from experiments.fact_rlhf_data import scene_facts
    from experiments.synthetic import draw_scene, hallucinated_answer
    from experiments.synthetic.writers import make_item

    os.makedirs(image_dir, exist_ok=True)
    items = []
    for index in range(n_items):
        item = make_item("fact-bon", seed, index)
        path = os.path.join(image_dir, f"{item.id}.png")
        draw_scene(item.scene).save(path)
        candidates = [(item.description, 0)]
        for _ in range(n_hallucinated):
            answer, records = hallucinated_answer(item.scene, item.sentences, item.rng, 0.3, min_errors=1)
            candidates.append((answer, len(records)))
        items.append(
            {
                "prompt": [{"role": "user", "content": item.question}],
                "image": path,
                "facts": scene_facts(item.scene, item.rng),
                "answers": [answer for answer, _ in candidates],
                "errors": [errors for _, errors in candidates],
            }
        )
    return items


def best_of_n(reward_model_dir: str, items: list[dict]) -> tuple[list[bool], list[int]]:
    """Per item: whether the reward model's top answer is the true one, and how many hallucinations it holds."""
    from PIL import Image

    from rlhfv.reward.inputs import score_answers
    from rlhfv.reward.loading import load_reward_model_and_processor

    model, processor, settings = load_reward_model_and_processor(reward_model_dir)
    use_facts = settings.get("facts") != "none"
    picked_true, picked_errors = [], []
    for item in items:
        image = Image.open(item["image"]).convert("RGB")
        n = len(item["answers"])
        scores = score_answers(
            model,
            processor,
            [item["prompt"]] * n,
            item["answers"],
            [[image]] * n,
            [item["facts"]] * n if use_facts else None,
            settings.get("facts_template"),
            batch_size=n,
        )
        best = max(range(n), key=lambda i: scores[i])
        picked_true.append(item["errors"][best] == 0)
        picked_errors.append(item["errors"][best])
    return picked_true, picked_errors


def evaluate(models: dict[str, str], data: str, bon_items: int = 0, seed: int = 0) -> dict:
    results, correct, fooled, bon_true = {}, {}, {}, {}
    candidates = best_of_n_candidates(bon_items, seed, f"{data}/best_of_n_images") if bon_items else []
    for name, directory in models.items():
        held_out, raw = score_pairs(directory, f"{data}/reward_heldout.jsonl")
        probe, _ = score_pairs(directory, f"{data}/probe.jsonl")
        correct[name] = held_out
        fooled[name] = [not right for right in probe]
        per_type = {}
        for kind in ("object", "colour", "added"):
            hits = [ok for ok, row in zip(held_out, raw, strict=True) if kind in row.get("hallucination_types", [])]
            per_type[kind] = {"n": len(hits), "accuracy": sum(hits) / len(hits) if hits else None}
        results[name] = {
            "reward_model": directory,
            "heldout_accuracy": sum(held_out) / len(held_out),
            "heldout_accuracy_ci95": wilson(sum(held_out), len(held_out)),
            "heldout_n": len(held_out),
            "heldout_by_type": per_type,
            "probe_prefers_hallucination": sum(fooled[name]) / len(probe),
            "probe_ci95": wilson(sum(fooled[name]), len(probe)),
            "probe_n": len(probe),
        }
        if candidates:
            picked_true, picked_errors = best_of_n(directory, candidates)
            bon_true[name] = picked_true
            results[name]["best_of_6_true_share"] = sum(picked_true) / len(picked_true)
            results[name]["best_of_6_true_ci95"] = wilson(sum(picked_true), len(picked_true))
            results[name]["best_of_6_mean_hallucinations"] = sum(picked_errors) / len(picked_errors)
            results[name]["best_of_6_n"] = len(picked_true)
    names = list(models)
    comparisons = {}
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            comparisons[f"{first} - {second}"] = {
                "heldout_accuracy": paired_bootstrap(correct[first], correct[second]),
                "probe_prefers_hallucination": paired_bootstrap(fooled[first], fooled[second]),
            }
            if candidates:
                comparisons[f"{first} - {second}"]["best_of_6_true_share"] = paired_bootstrap(
                    bon_true[first], bon_true[second]
                )
    return {"models": results, "paired_differences_mean_ci95": comparisons}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.fact_rlhf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="folder written by `python -m experiments.fact_rlhf_data`")
    parser.add_argument("--reward-model", action="append", required=True, help="NAME=DIR (repeat)")
    parser.add_argument("--bon-items", type=int, default=128, help="scenes for the best-of-6 proxy (0: skip)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the best-of-6 scenes")
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args(argv)
    models = dict(item.split("=", 1) for item in args.reward_model)
    results = evaluate(models, args.data, args.bon_items, args.seed)
    text = json.dumps(results, indent=1)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
