"""`rlhfv reward-pairs`: reward-ranked preference pairs for Dense DPO.

    rlhfv reward-pairs --prompts PROMPTS.jsonl --reward-model DIR --policy MODEL --n 8 --margin 1.0 --out DIR

For each prompt (the RL prompt layout: image, question, facts; see rlhfv/rl/data.py) the policy samples `--n`
answers (or the rows' own `samples` lists are used, without `--policy`), the reward model scores them (reading the
row's facts if it was trained with them), and the best and the worst answer become a pair when their scores differ by
at least `--margin`. The output folder is a dense preference dataset (`save_to_disk`), with word-diff spans, that
`rlhfv train` reads as `dataset_name`; `pair_report.json` counts the prompts left out and why, and `samples.jsonl`
keeps every sample with its score.
"""

from __future__ import annotations

import argparse
import json
import os

from data_tools.errors import CommandError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "reward-pairs",
        help="score N sampled answers per prompt with a reward model; best vs worst -> dense preference pairs",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--prompts", required=True, help="JSONL of prompts {id, image, question, facts[, samples]}")
    parser.add_argument("--reward-model", required=True, help="folder of a reward model trained by `rlhfv reward`")
    parser.add_argument(
        "--policy", help="model to sample from (folder, Hub id or tiny:llava); omit if rows have samples"
    )
    parser.add_argument("--out", required=True, help="output folder (a dense preference dataset)")
    parser.add_argument("--n", type=int, default=8, help="answers sampled per prompt (default 8)")
    parser.add_argument(
        "--margin", type=float, default=1.0, help="least best-minus-worst score for a pair (default 1)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=128, help="longest sampled answer (default 128)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    parser.add_argument("--batch-size", type=int, default=8, help="reward-model batch size (default 8)")
    parser.add_argument("--image-root", help="folder for relative image paths (default: the prompts file's folder)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.set_defaults(func=run)


def _row_samples(path: str) -> list[list[str] | None]:
    samples = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            value = json.loads(line).get("samples")
            if value is not None and (not isinstance(value, list) or not all(isinstance(s, str) for s in value)):
                raise CommandError(f"{path}, line {number}, field 'samples': expected a list of strings")
            samples.append(value)
    return samples


def run(args) -> int:
    import torch
    from tqdm.auto import tqdm

    from rlhfv.reward.inputs import score_answers
    from rlhfv.reward.loading import load_reward_model_and_processor, load_vlm
    from rlhfv.reward.pairs import PairReport, build_pair, pairs_dataset, sample_answers
    from rlhfv.rl.data import load_rl_prompts

    if args.n < 2:
        raise CommandError("--n must be at least 2 (a pair needs two answers)")
    dataset = load_rl_prompts(args.prompts, args.image_root)
    given = _row_samples(args.prompts)
    if args.policy is None and any(s is None for s in given):
        missing = sum(s is None for s in given)
        raise CommandError(f"{args.prompts}: {missing} rows have no `samples`; give --policy to sample answers")
    reward_model, reward_processor, settings = load_reward_model_and_processor(args.reward_model)
    use_facts = settings.get("facts") != "none"
    if use_facts and "facts" not in dataset.column_names:
        raise CommandError(f"the reward model reads facts, but {args.prompts} has no `facts`")
    policy = processor = None
    if args.policy is not None:
        if str(args.policy).startswith("tiny:"):
            print(
                f"note: --policy {args.policy} builds an untrained tiny model: its answers are random text, useful to "
                "exercise the pipeline only; give a trained policy's folder for pairs that mean something"
            )
        torch.manual_seed(args.seed)
        policy, processor = load_vlm(args.policy, seed=args.seed)
        policy.eval()

    report, pairs, records = PairReport(), [], []
    for index in tqdm(range(len(dataset)), desc="prompts", unit="prompt"):
        row = dataset[index]
        images = row.get("images") or []
        samples = given[index]
        if samples is None:
            samples = sample_answers(
                policy,
                processor,
                [row["prompt"]],
                [images],
                args.n,
                max_new_tokens=args.max_new_tokens,
                temperature=args.temperature,
            )[0]
        facts = [row["facts"]] * len(samples) if use_facts else None
        scores = score_answers(
            reward_model,
            reward_processor,
            [row["prompt"]] * len(samples),
            samples,
            [images] * len(samples),
            facts,
            settings.get("facts_template"),
            batch_size=args.batch_size,
        )
        source = f"reward-pairs:{args.prompts}:{index + 1}"
        pair = build_pair({**row, "source": source}, samples, scores, args.margin, report)
        if pair is not None:
            pairs.append(pair)
        records.append({"id": row["id"], "samples": samples, "scores": scores, "paired": pair is not None})

    if not pairs:
        raise CommandError(f"no pairs: {report.summary()} (lower --margin or sample more answers)")
    os.makedirs(args.out, exist_ok=True)
    pairs_dataset(pairs).save_to_disk(args.out)
    with open(os.path.join(args.out, "pair_report.json"), "w") as handle:
        json.dump(vars(report), handle, indent=1)
    with open(os.path.join(args.out, "samples.jsonl"), "w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    print(f"{report.summary()}; wrote {args.out}")
    return 0
