"""`rlhfv feedback-pairs`: preference pairs from scored answers in RLAIF-V's layout, by RLAIF-V's pair rules.

    rlhfv feedback-pairs --answers divided.jsonl --judgements autocheck.jsonl --output_dir pairs/
    rlhfv feedback-pairs --answers divided.jsonl --judgements autocheck.jsonl --picks picks.jsonl --output_dir pairs/

The inputs are the two files RLAIF-V's `utils/get_preference_pairs.py` reads (rlhfv/feedback/rlaifv_layout.py).
The output is what its three pair scripts together give (pairs, cap of two per ds_question_id, identical texts
dropped, length balancing): <output_dir>/pairs.jsonl in RLAIF-V's pair layout {image_path, ds_question_id, question,
chosen, rejected, org_infos} plus the two answers' question ids, and <output_dir>/pairs_stats.json. RLAIF-V's cap picks with
an unseeded generator; --picks replays one run's picks exactly, otherwise the pick is seeded by --seed.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from data_tools.errors import CommandError
from data_tools.settings import add_settings_arguments, check_range, output_field, read_settings


@dataclass
class FeedbackPairsSettings:
    """`rlhfv feedback-pairs`: the two input files of RLAIF-V's get_preference_pairs.py and its pair rules."""

    answers: str = field(
        default="",
        metadata={
            "required": True,
            "help": "Divided answers (get_preference_pairs.py's --gpt_divide_gq_path): {question_id, "
            "ds_question_id, raw_question, answer, facts, metainfos}.",
        },
    )
    judgements: str = field(
        default="",
        metadata={
            "required": True,
            "help": "Labeler output (its --autocheck_path): one row per claim question {question_id, raw_question, "
            "scores: {yes, Yes, no, No}, metainfos}.",
        },
    )
    picks: str | None = field(
        default=None,
        metadata={
            "help": "JSONL {ds_question_id, pairs: [[chosen, rejected] question ids]}: the cap's picks to replay "
            "(every ds_question_id with more pairs than the cap)."
        },
    )
    out: str = output_field("Output folder (pairs.jsonl, pairs_stats.json).", required=True, default="")
    seed: int = field(default=0, metadata={"help": "Seed of the cap's pick without --picks."})
    min_score_gap: int = field(default=1, metadata={"help": "Least score difference of a pair."})
    max_pairs_per_instruction: int = field(
        default=2, metadata={"help": "Pairs kept per ds_question_id (RLAIF-V's --sample_num; <= 0 keeps all)."}
    )
    drop_identical_before_cap: bool = field(
        default=False,
        metadata={
            "help": "Drop identical-text pairs before the cap, so the cap picks among distinct texts (RLAIF-V drops "
            "them after it)."
        },
    )
    keep_repeated_claims: bool = field(
        default=False,
        metadata={
            "help": "Keep answers whose judgements are fewer than their claims only because a claim question "
            "repeats (RLAIF-V drops them)."
        },
    )
    min_answer_probability: float = field(
        default=0.0,
        metadata={
            "help": "Leave answers with a judgement whose P(yes)+P(Yes)+P(no)+P(No) is below this unscored (0: "
            "off, as RLAIF-V)."
        },
    )
    length_balance: bool = field(
        default=True,
        metadata={"help": "RLAIF-V's length balancing (get_pairs_filter_shorten.py); --no-length-balance skips it."},
    )

    def __post_init__(self):
        check_range("min_score_gap", self.min_score_gap, minimum=1)
        check_range("min_answer_probability", self.min_answer_probability, minimum=0, maximum=1)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "feedback-pairs",
        help="pairs from scored answers in RLAIF-V's layout (answers + judgements files), by RLAIF-V's pair rules",
        description=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_arguments(parser, FeedbackPairsSettings)
    parser.set_defaults(func=lambda arguments: main(read_settings(arguments, FeedbackPairsSettings)[0]))


def pair_records(scored, pairs, cap_group_of) -> list[dict]:
    """RLAIF-V's pair rows (get_preference_pairs.py's layout) with the two answers' question ids."""
    records = []
    for p in pairs:
        chosen, rejected = scored.answers[str(p.chosen)], scored.answers[str(p.rejected)]
        group = cap_group_of(p.instruction_id)
        for side, row in (("chosen", chosen), ("rejected", rejected)):
            if str(row["ds_question_id"]) != group:
                raise CommandError(
                    f"answer {row['question_id']} ({side}): field 'ds_question_id' "
                    f"{row['ds_question_id']!r} differs from its judgements' {group!r}"
                )
        question = chosen.get("question", chosen["raw_question"])
        if question != rejected.get("question", rejected["raw_question"]):
            raise CommandError(f"answers {p.chosen} and {p.rejected}: field 'question' differs within one pair")
        image_path = chosen["metainfos"]["image_path"]
        if image_path != rejected["metainfos"]["image_path"]:
            raise CommandError(f"answers {p.chosen} and {p.rejected}: field 'metainfos.image_path' differs")
        records.append(
            {
                "image_id": str(image_path).split("/")[-1],
                "image_path": image_path,
                "ds_question_id": group,
                "question": question,
                "chosen": p.chosen_text,
                "rejected": p.rejected_text,
                "chosen_question_id": chosen["question_id"],
                "rejected_question_id": rejected["question_id"],
                "org_infos": {
                    "ds_question_id": group,
                    "scores": {
                        "chosen": {"judge": scored.judgements[str(p.chosen)], "score": str(p.chosen_score)},
                        "rejected": {"judge": scored.judgements[str(p.rejected)], "score": str(p.rejected_score)},
                    },
                },
            }
        )
    return records


def main(args) -> int:
    from rlhfv.feedback.pairing import PairRules, build_pairs
    from rlhfv.feedback.rlaifv_layout import cap_group_of, read_picks, read_scored

    scored = read_scored(args.answers, args.judgements, args.keep_repeated_claims, args.min_answer_probability)
    picks = read_picks(args.picks) if args.picks else None
    rules = PairRules(
        args.min_score_gap,
        args.max_pairs_per_instruction,
        args.seed,
        args.drop_identical_before_cap,
        args.length_balance,
    )
    try:
        pairs, stats, ratio = build_pairs(scored.groups, rules, picks, cap_group_of)
    except KeyError as error:
        raise CommandError(
            f"{args.picks}: no picks for ds_question_id {error.args[0]}, which has more pairs than "
            f"the cap ({args.max_pairs_per_instruction})"
        ) from None
    except ValueError as error:
        raise CommandError(f"{args.picks}: {error}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = pair_records(scored, pairs, cap_group_of)
    with (out / "pairs.jsonl").open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    report = {
        **scored.counts,
        **stats,
        "length_ratio": ratio,
        "picks": args.picks,
        "seed": None if args.picks else args.seed,
    }
    (out / "pairs_stats.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"pairs {len(records)} (candidates {stats['candidate_pairs']}, over the cap {stats['over_cap_dropped']}, "
        f"identical dropped {stats['identical_dropped']}, length-balanced away {stats['length_dropped']} at "
        f"ratio {ratio}); answers {scored.counts['answers']}, claim-count mismatches "
        f"{scored.counts['answers_claim_count_mismatch']}"
    )
    print(f"wrote {out / 'pairs.jsonl'}, {out / 'pairs_stats.json'}")
    return 0
