"""`rlhfv reward-pairs`: reward-ranked preference pairs for Dense DPO.

    rlhfv reward-pairs --prompts PROMPTS.jsonl --reward-model DIR --policy MODEL --n 8 --margin 1.0 --output_dir DIR

For each prompt (the RL prompt layout: image, question, facts; see rlhfv/reward/prompts.py) the policy samples `--n`
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
from dataclasses import dataclass, field

from data_tools.errors import CommandError
from data_tools.settings import add_settings_arguments, check_range, output_field, read_settings


@dataclass
class RewardPairsConfig:
    prompts: str = field(
        default="", metadata={"required": True, "help": "JSONL of prompts {id, image, question, facts[, samples]}."}
    )
    reward_model: str = field(
        default="", metadata={"required": True, "help": "Folder of a reward model trained by `rlhfv reward`."}
    )
    policy: str | None = field(
        default=None,
        metadata={"help": "Model to sample from (folder, Hub id or tiny:llava); omit if the rows have samples."},
    )
    out: str = output_field("Output folder (a dense preference dataset).", required=True, default="")
    n: int = field(default=8, metadata={"help": "Answers sampled per prompt (at least 2)."})
    margin: float = field(
        default=1.0,
        metadata={"help": "Least best-minus-worst score for a pair (>= 0; 0 pairs any two answers the model ranks)."},
    )
    max_new_tokens: int = field(default=128, metadata={"help": "Longest sampled answer, in tokens."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (> 0)."})
    batch_size: int = field(default=8, metadata={"help": "Reward-model batch size."})
    image_root: str | None = field(
        default=None, metadata={"help": "Folder for relative image paths (default: the prompts file's folder)."}
    )
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    overwrite: bool = field(
        default=False,
        metadata={"help": "Replace an existing --output_dir dataset (swapped in only when the new one is complete)."},
    )

    def __post_init__(self):
        check_range("n", self.n, minimum=2)  # a pair needs two answers
        check_range("margin", self.margin, minimum=0)  # a negative margin would pair a worse answer as chosen
        check_range("max_new_tokens", self.max_new_tokens, minimum=1)
        check_range("temperature", self.temperature, above=0)
        check_range("batch_size", self.batch_size, minimum=1)
        check_range("seed", self.seed, minimum=0)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "reward-pairs",
        help="score N sampled answers per prompt with a reward model; best vs worst -> dense preference pairs",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_arguments(parser, RewardPairsConfig)
    parser.set_defaults(func=run)


# what the command writes into its dataset folder beside `save_to_disk`'s files
OWN_FILES = ("pair_report.json", "samples.jsonl")


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


def run(arguments) -> int:
    import torch
    from tqdm.auto import tqdm

    from data_tools.outputs import check_output, staged
    from rlhfv.reward.inputs import score_answers
    from rlhfv.reward.loading import load_reward_model_and_processor, load_vlm
    from rlhfv.reward.pairs import PairReport, build_pair, pairs_dataset, sample_answers
    from rlhfv.reward.prompts import load_rl_prompts

    (args,) = read_settings(arguments, RewardPairsConfig)
    dataset = load_rl_prompts(args.prompts, args.image_root)
    given = _row_samples(args.prompts)
    if args.policy is None and any(s is None for s in given):
        missing = sum(s is None for s in given)
        raise CommandError(f"{args.prompts}: {missing} rows have no `samples`; give --policy to sample answers")
    # before any sampling: the dataset never replaces an input, nor an existing dataset without --overwrite
    inputs = [args.prompts, args.reward_model, args.policy, args.image_root]
    check_output("--output_dir", args.out, inputs, "dataset", args.overwrite, OWN_FILES)
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
    with staged(args.out) as folder:
        pairs_dataset(pairs).save_to_disk(folder)
        with open(os.path.join(folder, "pair_report.json"), "w") as handle:
            json.dump(vars(report), handle, indent=1)
        with open(os.path.join(folder, "samples.jsonl"), "w") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
    print(f"{report.summary()}; wrote {args.out}")
    return 0
