"""How well does a model judge its own claims? Self-feedback labels against the synthetic world's truth.

The SFT model of an `rlhfv iterate` synthetic run (`<iterate out>/sft`) samples answers for the world's preference
images, the rule-based splitter makes claims, and the model answers each claim's yes/no question about the image
(`rlhfv feedback --labeler self`); the world's truth labels the same claims. Reported with Wilson 95% intervals:
accuracy of the self verdicts, recall of false claims (the ones a labeler exists to catch), the share of questions
answered yes/no at all (P(yes)+P(Yes)+P(no)+P(No) >= 0.5), and the agreement of the pairs the two labelers build.

    python -m experiments.self_feedback --iterate-out outputs/rlaif_v_synthetic --out outputs/self_feedback
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments.intervals import wilson


def judged_claims(feedback_dir: Path, truth):
    """(image, claim, truth's verdict, the run's own label) for every claim of a feedback run (`answers.jsonl`,
    `claims.jsonl`, `labels.jsonl`), in file order; `truth` is a `TruthLabeler`. A verdict is None where a labeler
    gave none."""
    from rlhfv.feedback.labeling import LabelRequest

    answers = {r["id"]: r for r in map(json.loads, (feedback_dir / "answers.jsonl").open())}
    labels = {
        (r["id"], r["answer_index"]): r["labels"] for r in map(json.loads, (feedback_dir / "labels.jsonl").open())
    }
    for record in map(json.loads, (feedback_dir / "claims.jsonl").open()):
        image = answers[record["id"]].get("image")
        truths = truth.label_many([LabelRequest(c["question"], None, image, c["text"]) for c in record["claims"]])
        own = labels[(record["id"], record["answer_index"])]
        for claim, t, s in zip(record["claims"], truths, own, strict=True):
            yield image, claim, t.verdict, s


def compare(feedback_dir: Path, scenes: Path) -> dict:
    from rlhfv.feedback.labeling import TruthLabeler

    counts = dict(claims=0, correct=0, truth_false=0, caught=0, answered=0, said_false=0)
    for _, _, verdict, s in judged_claims(feedback_dir, TruthLabeler.from_file(scenes)):
        if verdict is None or s["verdict"] is None:
            continue
        counts["claims"] += 1
        counts["correct"] += verdict == s["verdict"]
        counts["truth_false"] += verdict is False
        counts["caught"] += verdict is False and s["verdict"] is False
        counts["said_false"] += s["verdict"] is False
        counts["answered"] += (s["p_yes"] + s["p_no"]) >= 0.5
    n = counts["claims"]
    return {
        **counts,
        "accuracy": wilson(counts["correct"], n),
        "false_claim_recall": wilson(counts["caught"], counts["truth_false"]),
        "truth_false_rate": wilson(counts["truth_false"], n),
        "self_false_rate": wilson(counts["said_false"], n),
        "answers_yes_no": wilson(counts["answered"], n),
        "majority_baseline": max(counts["truth_false"], n - counts["truth_false"]) / n if n else None,
    }


def main(argv: list[str] | None = None) -> int:
    from rlhfv.feedback.config import FeedbackConfig
    from rlhfv.feedback.pipeline import run_feedback

    parser = argparse.ArgumentParser(prog="python -m experiments.self_feedback", description=__doc__.split("\n")[0])
    parser.add_argument("--iterate-out", required=True, help="output folder of a synthetic `rlhfv iterate` run")
    parser.add_argument("--out", required=True)
    parser.add_argument("--num-samples", type=int, default=4)
    parser.add_argument("--question-template", default=None)
    args = parser.parse_args(argv)
    root = Path(args.iterate_out)
    config = FeedbackConfig(
        prompts=str(root / "data" / "preference" / "prompts.jsonl"), policy=str(root / "sft"), out=args.out,
        num_samples=args.num_samples, max_new_tokens=64, sample_batch_size=16, labeler="self",
        min_answer_probability=0.0, on_error="skip", stop_after="label", device="cpu",
        question_template=args.question_template,
    )  # fmt: skip
    run_feedback(config)
    result = compare(Path(args.out), root / "data" / "preference" / "scenes.json")
    (Path(args.out) / "self_vs_truth.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
