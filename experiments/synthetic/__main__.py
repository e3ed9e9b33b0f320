"""`python -m experiments.synthetic {corrections,sft,prompts} --n N --seed S --out DIR`: seeded synthetic data sets."""

from __future__ import annotations

import argparse
import sys

from experiments.synthetic.world import DEFAULT_CANVAS, MAX_OBJECTS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.synthetic",
        description="Generate a synthetic world with known truth: images of simple objects at known positions, "
        "questions, true descriptions, hallucinated answers and their corrections. Same seed, same files.",
    )
    subparsers = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    helps = {
        "corrections": "hallucinated answers and their corrections: corrections.jsonl {id, image, question, response, "
        "corrected} + hallucinations.jsonl (what was made up, with spans)",
        "sft": "SFT conversations with true descriptions: sft.jsonl {id, images, messages}",
        "prompts": "held-out eval prompts: prompts.jsonl {id, image, question}, the input of `rlhfv eval generate`",
    }
    for name, text in helps.items():
        sub = subparsers.add_parser(
            name,
            help=text,
            description=text + ". Also writes images/*.png, objects.json "
            "(image -> COCO classes present) and scenes.json (image -> objects with colour "
            "and position).",
        )
        sub.add_argument("--n", type=int, required=True, help="number of items")
        sub.add_argument(
            "--world",
            choices=["glyph", "prior"],
            default="glyph",
            help="glyph: the first world (errors between look-alike glyphs); prior: the language-prior world, where "
            "SFT captions name an anchor's usual companion even when it is absent (experiments/synthetic/prior.py). "
            "Default glyph",
        )
        sub.add_argument(
            "--prior-rate",
            type=float,
            default=None,
            help="prior world: share of captions that name an absent companion (default 0.6; sft only)",
        )
        sub.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        sub.add_argument("--out", required=True, help="output folder (created; existing files are overwritten)")
        sub.add_argument(
            "--split",
            default=None,
            help=f"name of the random stream (default: {'eval' if name == 'prompts' else name}); different splits "
            "give different images",
        )
        sub.add_argument(
            "--canvas", type=int, default=DEFAULT_CANVAS, help=f"image side in pixels (default {DEFAULT_CANVAS})"
        )
        sub.add_argument(
            "--max-objects",
            type=int,
            default=MAX_OBJECTS,
            help=f"objects per image, at most (1-5, default {MAX_OBJECTS})",
        )
        if name == "corrections":
            sub.add_argument(
                "--rate",
                type=float,
                default=0.3,
                help="hallucination rate: chance that each object sentence is falsified and that one invented "
                "sentence is added (default 0.3; at least one hallucination per answer either way)",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    from experiments.synthetic.writers import write_corrections, write_prompts, write_sft

    args = build_parser().parse_args(argv)
    if args.n < 1:
        print("error: --n must be at least 1", file=sys.stderr)
        return 2
    if not 1 <= args.max_objects <= 5:
        print("error: --max-objects must be between 1 and 5 (there are 5 positions)", file=sys.stderr)
        return 2
    if args.canvas < 24:
        print("error: --canvas must be at least 24 pixels", file=sys.stderr)
        return 2
    if args.world == "prior":
        return _main_prior(args)
    common = {"n": args.n, "seed": args.seed, "canvas": args.canvas, "max_objects": args.max_objects}
    if args.split:
        common["split"] = args.split
    if args.kind == "corrections":
        if not 0.0 <= args.rate <= 1.0:
            print("error: --rate must be in [0, 1]", file=sys.stderr)
            return 2
        path = write_corrections(args.out, rate=args.rate, **common)
    elif args.kind == "sft":
        path = write_sft(args.out, **common)
    else:
        path = write_prompts(args.out, **common)
    print(f"wrote {args.n} items to {path}")
    return 0


def _main_prior(args) -> int:
    from experiments.synthetic.prior import PriorWorld
    from experiments.synthetic.prior_writers import write_prior_corrections, write_prior_prompts, write_prior_sft

    if args.prior_rate is not None and not 0.0 <= args.prior_rate <= 1.0:
        print("error: --prior-rate must be in [0, 1]", file=sys.stderr)
        return 2
    world = PriorWorld() if args.prior_rate is None else PriorWorld(prior_rate=args.prior_rate)
    common = {"n": args.n, "seed": args.seed, "canvas": args.canvas, "world": world}
    if args.split:
        common["split"] = args.split
    writer = {"corrections": write_prior_corrections, "sft": write_prior_sft, "prompts": write_prior_prompts}
    path = writer[args.kind](args.out, **common)
    print(f"wrote {args.n} items to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
