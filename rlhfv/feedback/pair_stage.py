"""The score and pairs stages of `rlhfv feedback`: claims + labels -> scores.jsonl -> pairs.jsonl, by RLAIF-V's
rules (rlhfv/feedback/scoring.py, rlhfv/feedback/pairing.py; docs/feedback.md, "Pair rules")."""

from __future__ import annotations

import json

from rlhfv.feedback.scoring import score_answer


def write_scores(run) -> None:
    """scores.jsonl: one row per answer, its score or the reason it has none."""
    c = run.config
    labels = {(r["id"], r["answer_index"]): r["labels"] for r in run.read_jsonl("labels.jsonl")}
    records = []
    for record in run.read_jsonl("claims.jsonl"):
        verdicts = [label["verdict"] for label in labels[(record["id"], record["answer_index"])]]
        questions = [claim["question"] for claim in record["claims"]]
        score, reason = score_answer(verdicts, questions, c.keep_repeated_claims)
        records.append(
            {
                "id": record["id"],
                "answer_index": record["answer_index"],
                "score": score,
                "reason": reason,
                "claims": len(verdicts),
                "false": sum(v is False for v in verdicts),
                "unlabeled": sum(v is None for v in verdicts),
            }
        )
    run.write_jsonl("scores.jsonl", records)


def write_pairs(run) -> None:
    """pairs.jsonl (with the dense spans) and pairs_stats.json."""
    from rlhfv.feedback.pairing import Candidate, PairRules, build_pairs

    c = run.config
    claims = {(r["id"], r["answer_index"]): r for r in run.read_jsonl("claims.jsonl")}
    labels = {(r["id"], r["answer_index"]): r["labels"] for r in run.read_jsonl("labels.jsonl")}
    scored: dict[str, list] = {}
    for s in run.read_jsonl("scores.jsonl"):
        if s["score"] is not None:
            text = claims[(s["id"], s["answer_index"])]["answer"]
            scored.setdefault(s["id"], []).append(Candidate(s["answer_index"], text, s["score"]))
    rules = PairRules(
        c.min_score_gap, c.max_pairs_per_instruction, c.seed, c.drop_identical_before_cap, c.length_balance
    )
    pairs, stats, ratio = build_pairs(scored, rules)
    rows = {r["id"]: r for r in run.answered()}
    records = [pair_record(p, rows[p.instruction_id], claims, labels, c.chosen_spans) for p in pairs]
    run.write_jsonl("pairs.jsonl", records)
    run.path("pairs_stats.json").write_text(json.dumps({**stats, "length_ratio": ratio}, indent=2) + "\n")


def pair_record(p, row: dict, claims: dict, labels: dict, chosen_spans: str) -> dict:
    """One pairs.jsonl row: the two answers, their scores, and the spans the dense loss reads."""
    from rlhfv.feedback.spans import chosen_side_spans, false_claim_spans

    chosen_key, rejected_key = (p.instruction_id, p.chosen), (p.instruction_id, p.rejected)
    verdicts = {key: [label["verdict"] for label in labels[key]] for key in (chosen_key, rejected_key)}
    rejected_claims = claims[rejected_key]["claims"]
    return {
        "pair_id": f"{p.instruction_id}-{p.chosen}-{p.rejected}",
        "id": p.instruction_id,
        "question": row["question"],
        "image_path": row.get("image_path"),
        "chosen": p.chosen_text,
        "rejected": p.rejected_text,
        "chosen_index": p.chosen,
        "rejected_index": p.rejected,
        "chosen_score": p.chosen_score,
        "rejected_score": p.rejected_score,
        "chosen_spans": chosen_side_spans(
            p.chosen_text, claims[chosen_key]["claims"], verdicts[chosen_key], rejected_claims, chosen_spans
        ),
        "rejected_spans": false_claim_spans(p.rejected_text, rejected_claims, verdicts[rejected_key]),
    }
