"""summary.json, rejects.jsonl and the printed summary of a `rlhfv feedback` run (rlhfv/feedback/pipeline.py)."""

from __future__ import annotations

import json
from collections import Counter

from rlhfv.feedback.config import STAGES
from rlhfv.feedback.scoring import NO_CLAIMS


def summarize(run) -> dict:
    """summary.json and rejects.jsonl of a run, from its stage files."""
    rejects = [{"stage": "prompts", **r} for r in run.read_jsonl("instruction_rejects.jsonl")]
    for r in run.read_jsonl("answers.jsonl"):
        if "reject" in r:
            rejects.append({"stage": "sample", "id": r["id"], **r["reject"]})
    answers = sum(len(r["answers"]) for r in run.answered())
    claims = run.read_jsonl("claims.jsonl")
    for r in claims:
        if not r["claims"]:
            rejects.append(
                {
                    "stage": "claims",
                    "id": r["id"],
                    "answer_index": r["answer_index"],
                    "reason": NO_CLAIMS,
                    "detail": f"no claims in {r['answer'][:80]!r}",
                }
            )
    verdicts = Counter()
    for r in run.read_jsonl("labels.jsonl"):
        for n, label in enumerate(r["labels"]):
            verdicts[label["verdict"]] += 1
            if label["reason"]:
                rejects.append(
                    {
                        "stage": "label",
                        "id": r["id"],
                        "answer_index": r["answer_index"],
                        "claim": n,
                        "reason": label["reason"],
                        "detail": label["detail"],
                    }
                )
    scores = run.read_jsonl("scores.jsonl")
    labeled = verdicts[True] + verdicts[False]
    pair_stats = json.loads(run.path("pairs_stats.json").read_text()) if run.path("pairs_stats.json").is_file() else {}
    read = json.loads(run.path("instructions_read.json").read_text())
    summary = {
        "stages_done": [s for s in STAGES if run.stage_done(s)],
        "prompt_rows": read.get("rows"),
        "prompt_formats": read.get("formats"),
        "prompt_rows_merged": read.get("rows_merged"),
        "instructions_with_merged_rows": read.get("instructions_with_merged_rows"),
        "instructions": len(run.rows),
        "instructions_answered": len(run.answered()),
        "answers": answers,
        "claims": sum(len(r["claims"]) for r in claims),
        "claims_labeled": labeled,
        "claims_false": verdicts[False],
        "false_claim_rate": verdicts[False] / labeled if labeled else None,
        "answers_scored": sum(s["score"] is not None for s in scores),
        "answers_unscored": dict(Counter(s["reason"] for s in scores if s["reason"])),
        "mean_score": (
            sum(s["score"] for s in scores if s["score"] is not None)
            / max(1, sum(s["score"] is not None for s in scores))
        )
        if scores
        else None,
        **{f"pairs_{k}" if k != "pairs" else k: v for k, v in pair_stats.items()},
        "rejects": dict(Counter(r["reason"] for r in rejects)),
    }
    run.write_jsonl("rejects.jsonl", rejects)
    run.path("summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def format_summary(summary: dict) -> str:
    rate = summary.get("false_claim_rate")
    lines = [
        f"prompt rows {summary['prompt_rows']} ({', '.join(sorted(set(summary['prompt_formats'].values())))}): "
        f"{summary['prompt_rows_merged']} merged into {summary['instructions_with_merged_rows']} instruction(s) with "
        "the same image and question (instruction_merges.jsonl)",
        f"instructions {summary['instructions']} (answered {summary['instructions_answered']}), "
        f"answers {summary['answers']}, claims {summary['claims']}",
        f"claims labeled {summary['claims_labeled']}, judged false {summary['claims_false']}"
        + (f" (false-claim rate {rate:.3f})" if rate is not None else ""),
        f"answers scored {summary['answers_scored']}, unscored {summary['answers_unscored'] or 0}",
    ]
    if "pairs" in summary:
        lines.append(
            f"pairs {summary['pairs']} (candidates {summary.get('pairs_candidate_pairs', 0)}, identical dropped "
            f"{summary.get('pairs_identical_dropped', 0)}, over the cap {summary.get('pairs_over_cap_dropped', 0)}, "
            f"length-balanced away {summary.get('pairs_length_dropped', 0)} at ratio {summary.get('pairs_length_ratio')})"
        )
    lines.append(f"rejects {summary['rejects'] or 0}")
    return "\n".join(lines)
