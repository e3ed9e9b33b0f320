"""RLAIF-V's on-policy rounds on the language-prior world: truth feedback against self-feedback, Dense DPO against
plain DPO.

Protocol (docs/feedback.md states it with the hypotheses, written before the runs). For each seed, on CPU:
1. Data of the language-prior world (`experiments.synthetic.prior`) as in `make proof`, plus `verification_items`
   SFT conversations that ask whether one statement about the image is true and answer from the scene
   (`write_prior_sft(..., verification_items=...)`), so the SFT model can be its own labeler. Validation images
   (`val`) choose each round's checkpoint; test images (`eval`) are only used for the final table.
2. SFT: the tiny LLaVA of `make proof` learns captions (with the companion habit) and verification answers.
3. Self-labeler check: the SFT model samples answers on the preference images, the rule-based splitter makes claims,
   and the model answers each claim's yes/no question; the world's truth labels the same claims. Accuracy, recall
   of false claims (absent-companion claims and other false claims apart), share answered yes/no.
4. Rounds: for each labeler (`truth`, `self`) and each arm (`dense`: gamma 5 on the false claims' spans; `plain`:
   gamma 1, RLAIF-V's DPO; nothing else differs), `rlhfv iterate`'s loop (`rlhfv.iterate.Iterator`) from the same
   SFT model: sample 10 answers per preference image, split, label, pair by RLAIF-V's rules, train with the round's
   model as the reference, keep the checkpoint with the lowest `select_metric` on the validation images.
5. Test: every round's kept model answers the test images greedily; companion hallucination and recall, CHAIR,
   recall, length (`experiments.companion`), with paired per-image bootstrap intervals against SFT, dense
   against plain, and self against truth.

    python -m experiments.prior_rounds --config recipes/proof/prior/config_rounds.yaml

Stages whose output exists are skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from experiments.intervals import wilson
from experiments.prior_proof import PriorProofConfig, pct


logger = logging.getLogger("rlhfv.prior_rounds")

LABELERS = ("truth", "self")


@dataclass
class PriorRoundsConfig(PriorProofConfig):
    """`make proof`'s world, model and SFT settings (inherited) plus the rounds'."""

    rounds: int = field(default=3, metadata={"help": "on-policy rounds per arm"})
    verification_items: int = field(default=3000, metadata={"help": "yes/no verification conversations added to "
                                    "the SFT data (0: the model cannot answer verification questions)"})  # fmt: skip
    val_items: int = field(default=300, metadata={"help": "validation images (checkpoint selection)"})
    labelers: list[str] = field(default_factory=lambda: list(LABELERS), metadata={"help": "truth and/or self"})
    gammas: dict = field(default_factory=lambda: {"dense": 5.0, "plain": 1.0}, metadata={"help": "arm -> gamma; "
                         "the arms differ in nothing else"})  # fmt: skip
    feedback: dict = field(default_factory=dict, metadata={"help": "FeedbackConfig keys of every round"})
    train: dict = field(default_factory=dict, metadata={"help": "`rlhfv train` keys of every round"})
    select_metric: str = field(default="chair_i", metadata={"help": "companion metric (lower is better) that "
                               "picks a round's checkpoint on the validation images"})  # fmt: skip
    self_check_samples: int = field(default=4, metadata={"help": "answers per preference image for the "
                                    "self-labeler check"})  # fmt: skip

    @classmethod
    def from_yaml(cls, path: str | None, overrides: dict) -> PriorRoundsConfig:
        from experiments.companion import METRICS
        from experiments.proof import read_experiment_config

        config = read_experiment_config(cls, path, overrides)
        if set(config.labelers) - set(LABELERS):
            raise SystemExit(f"{path}: labelers must be among {list(LABELERS)}, got {config.labelers}")
        if config.select_metric not in METRICS:
            raise SystemExit(f"{path}: select_metric must be one of {list(METRICS)}, got {config.select_metric!r}")
        if "self" in config.labelers and config.verification_items <= 0:
            raise SystemExit(f"{path}: the self labeler needs verification_items > 0 (the model must learn to answer)")
        return config


# --- data and SFT ----------------------------------------------------------------------------------------------------


def write_round_data(config: PriorRoundsConfig, seed: int, data: Path) -> None:
    from experiments.synthetic.prior_writers import write_prior_prompts, write_prior_sft

    world = config.world()
    if not (data / "sft" / "sft.jsonl").is_file():
        write_prior_sft(data / "sft", n=config.sft_items, seed=seed, world=world, canvas=config.canvas,
                        verification_items=config.verification_items)  # fmt: skip
    for split, n in (("preference", config.preference_items), ("val", config.val_items), ("eval", config.eval_items)):
        if not (data / split / "prompts.jsonl").is_file():
            write_prior_prompts(data / split, n=n, seed=seed, world=world, canvas=config.canvas, split=split)


# --- the self-labeler against the truth ------------------------------------------------------------------------------


def label_agreement(feedback_dir: Path, scenes_path: Path) -> dict:
    """The self verdicts of `feedback_dir` against the world's truth on the same claims; false claims split into
    those naming the scene's absent companion (the prior's hallucination) and the others."""
    from experiments.self_feedback import judged_claims
    from experiments.synthetic.prior import COMPANIONS, anchor_of, companion_case
    from experiments.synthetic.writers import load_scenes
    from rlhfv.feedback.labeling import TruthLabeler

    scenes = load_scenes(scenes_path)
    counts = dict(claims=0, correct=0, answered=0, true=0, true_kept=0, false=0, false_caught=0,
                  companion=0, companion_caught=0, other=0, other_caught=0, unlabeled=0)  # fmt: skip
    for image, claim, verdict, s in judged_claims(feedback_dir, TruthLabeler(scenes)):
        if verdict is None or s["verdict"] is None:
            counts["unlabeled"] += 1
            continue
        counts["claims"] += 1
        counts["correct"] += verdict == s["verdict"]
        counts["answered"] += (s["p_yes"] + s["p_no"]) >= 0.5
        if verdict:
            counts["true"] += 1
            counts["true_kept"] += s["verdict"] is True
            continue
        caught = s["verdict"] is False
        counts["false"] += 1
        counts["false_caught"] += caught
        scene = scenes[image]
        companion = COMPANIONS[anchor_of(scene)] if companion_case(scene) == "absent" else None
        group = "companion" if companion and companion in claim["text"].lower() else "other"
        counts[group] += 1
        counts[f"{group}_caught"] += caught
    n = counts["claims"]
    return {
        **counts,
        "accuracy": wilson(counts["correct"], n),
        "majority_baseline": max(counts["false"], counts["true"]) / n if n else None,
        "answered_yes_no": wilson(counts["answered"], n),
        "true_claims_kept": wilson(counts["true_kept"], counts["true"]),
        "false_claims_caught": wilson(counts["false_caught"], counts["false"]),
        "companion_claims_caught": wilson(counts["companion_caught"], counts["companion"]),
        "other_false_claims_caught": wilson(counts["other_caught"], counts["other"]),
    }


def check_self_labeler(config: PriorRoundsConfig, seed: int, seed_dir: Path) -> dict:
    from rlhfv.feedback.config import FeedbackConfig
    from rlhfv.feedback.pipeline import run_feedback

    out = seed_dir / "self_check"
    result_path = out / "agreement.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    preference = seed_dir / "data" / "preference"
    settings = {**config.feedback, "num_samples": config.self_check_samples}
    feedback = FeedbackConfig(**{**settings, "prompts": str(preference / "prompts.jsonl"), "policy": str(seed_dir / "sft"),
                                 "out": str(out), "labeler": "self", "min_answer_probability": 0.0,
                                 "on_error": "skip", "stop_after": "label", "seed": seed})  # fmt: skip
    run_feedback(feedback)
    result = label_agreement(out, preference / "scenes.json")
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


# --- rounds ----------------------------------------------------------------------------------------------------------


def make_iterator(config: PriorRoundsConfig, seed: int, seed_dir: Path, labeler: str, arm: str):
    """An `rlhfv iterate` loop from the seed's SFT model whose checkpoints are judged on the validation images."""
    from experiments.prior_proof import evaluate_model
    from rlhfv.iterate import IterateConfig, Iteration

    class PriorWorldIteration(Iteration):
        def table_metrics(self) -> tuple[str, ...]:
            from experiments.companion import METRICS

            return tuple(METRICS)

        def evaluate(self, model: Path, answers: Path) -> dict:
            from experiments.companion import summarize

            cache = answers.with_suffix(".metrics.json")
            if cache.is_file():
                return json.loads(cache.read_text())
            records = evaluate_model(config, model, seed_dir / "data" / "val", answers)
            metrics = summarize(list(records.values()))
            cache.write_text(json.dumps(metrics, indent=2) + "\n")
            return metrics

    preference = seed_dir / "data" / "preference"
    feedback = {**config.feedback, "prompts": str(preference / "prompts.jsonl"), "labeler": labeler}
    if labeler == "truth":
        feedback["truth_scenes"] = str(preference / "scenes.json")
    iterate = IterateConfig(
        rounds=config.rounds, out=str(seed_dir / f"{labeler}_{arm}"), seed=seed, initial_policy=str(seed_dir / "sft"),
        feedback=feedback, train={**config.train, "gamma": config.gammas[arm]},
        evaluation={"kind": "synthetic", "select_metric": config.select_metric},
    )  # fmt: skip
    return PriorWorldIteration(iterate)


def records_on_test_images(config: PriorRoundsConfig, seed_dir: Path, name: str, model: Path) -> dict:
    """Per-image records of `model`'s greedy answers on the test images (cached)."""
    from experiments.prior_proof import evaluate_model

    cache = seed_dir / "test" / f"{name}.records.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    cache.parent.mkdir(parents=True, exist_ok=True)
    records = evaluate_model(config, model, seed_dir / "data" / "eval", seed_dir / "test" / f"{name}.answers.jsonl")
    cache.write_text(json.dumps({"model": str(model), "records": records}))
    return {"model": str(model), "records": records}


def run_seed(config: PriorRoundsConfig, seed: int) -> dict:
    from experiments.companion import paired_bootstrap, summarize
    from experiments.proof import train_sft

    timings: dict = {}
    seed_dir = Path(config.out) / f"seed{seed}"
    start = time.time()
    write_round_data(config, seed, seed_dir / "data")
    if not (seed_dir / "sft" / "config.json").is_file():
        train_sft(config, seed, seed_dir / "data" / "sft", seed_dir / "sft")
    timings["data_sft_s"] = time.time() - start
    start = time.time()
    agreement = check_self_labeler(config, seed, seed_dir) if "self" in config.labelers else None
    timings["self_check_s"] = time.time() - start

    tested: dict[str, dict] = {}  # model folder -> its test records: a round without pairs keeps its model

    def test_records(name: str, model: Path) -> dict:
        if str(model) not in tested:
            tested[str(model)] = records_on_test_images(config, seed_dir, name, model)["records"]
        return tested[str(model)]

    records = {"sft": test_records("sft", seed_dir / "sft")}
    rounds: dict = {}
    for labeler in config.labelers:
        for arm in config.gammas:
            start = time.time()
            rows = make_iterator(config, seed, seed_dir, labeler, arm).run()
            timings[f"{labeler}_{arm}_s"] = time.time() - start
            name = f"{labeler}_{arm}"
            rounds[name] = []
            for row in rows[1:]:
                key = f"{name}/round{row['round']}"
                records[key] = test_records(key.replace("/", "_"), Path(row["policy"]))
                rounds[name].append({"round": row["round"], "pairs": row["pairs"], "selected": row.get("selected"),
                                     "feedback_false_claim_rate": row["feedback_false_claim_rate"],
                                     "policy": row["policy"]})  # fmt: skip
    metrics = {key: summarize(list(value.values())) for key, value in records.items()}
    contrasts = {}
    samples = config.bootstrap_samples
    for key in records:
        if key != "sft":
            contrasts[f"{key} - sft"] = paired_bootstrap(records["sft"], records[key], samples, seed)
    for k in range(1, config.rounds + 1):
        for labeler in config.labelers:
            a, b = f"{labeler}_plain/round{k}", f"{labeler}_dense/round{k}"
            if a in records and b in records:
                contrasts[f"{b} - {a}"] = paired_bootstrap(records[a], records[b], samples, seed)
        for arm in config.gammas:
            a, b = f"truth_{arm}/round{k}", f"self_{arm}/round{k}"
            if a in records and b in records:
                contrasts[f"{b} - {a}"] = paired_bootstrap(records[a], records[b], samples, seed)
    result = {"seed": seed, "self_labeler": agreement, "rounds": rounds, "metrics": metrics,
              "paired": contrasts, "timings": timings}  # fmt: skip
    (seed_dir / "result.json").write_text(json.dumps(result, indent=2))
    return result


# --- report ----------------------------------------------------------------------------------------------------------


def aggregate(results: list[dict]) -> dict:
    from experiments.companion import METRICS
    from experiments.proof import summarize_over_seeds

    keys = [k for k in results[0]["metrics"] if all(k in r["metrics"] for r in results)]
    return summarize_over_seeds(results, keys, METRICS)


def _ci(triple) -> str:
    p, low, high = triple
    return "n/a" if p is None else f"{100 * p:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def _diff(entry: dict) -> str:
    if entry["diff"] is None:
        return "n/a"
    low = "n/a" if entry["low"] is None else f"{100 * entry['low']:.1f}"
    high = "n/a" if entry["high"] is None else f"{100 * entry['high']:.1f}"
    return f"{100 * entry['diff']:+.1f} [{low}, {high}]"


def markdown_report(config: PriorRoundsConfig, results: list[dict], summary: dict) -> str:
    seeds = [r["seed"] for r in results]
    lines = [f"Test images, greedy; mean ± std over seeds {seeds} (%, length in words).", ""]
    if any(r["self_labeler"] for r in results):
        lines += ["Self-labeler (the SFT model) against the truth, on its own sampled claims (Wilson 95%):", "",
                  "| seed | claims | answered yes/no | accuracy | majority baseline | true kept | false caught | "
                  "companion claims caught | other false caught |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in results:
            a = r["self_labeler"]
            lines.append(f"| {r['seed']} | {a['claims']} | {_ci(a['answered_yes_no'])} | {_ci(a['accuracy'])} | "
                         f"{pct(a['majority_baseline'])} | {_ci(a['true_claims_kept'])} | "
                         f"{_ci(a['false_claims_caught'])} | {_ci(a['companion_claims_caught'])} "
                         f"({a['companion']}) | {_ci(a['other_false_claims_caught'])} ({a['other']}) |")  # fmt: skip
        lines.append("")
    metrics = ("companion_hallucination", "companion_recall", "chair_s", "chair_i", "recall", "length_words",
               "other_false_claims")  # fmt: skip
    seeds = "/".join(str(r["seed"]) for r in results)
    lines += [f"Metrics as mean ± std over seeds; pairs per round listed per seed ({seeds}).", ""]
    lines += ["| model | round | pairs | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 3) + "|"]

    def cell(key, metric):
        s = summary[key][metric]
        if s["mean"] is None:
            return "n/a"
        scale = 1 if metric == "length_words" else 100
        return f"{scale * s['mean']:.1f} ± {scale * s['std']:.1f}"

    lines.append("| SFT | 0 | - | " + " | ".join(cell("sft", m) for m in metrics) + " |")
    for name in results[0]["rounds"]:
        for k in range(1, config.rounds + 1):
            key = f"{name}/round{k}"
            if key not in summary:
                continue
            pairs = [next((x["pairs"] for x in r["rounds"][name] if x["round"] == k), None) for r in results]
            lines.append(f"| {name} | {k} | {'/'.join(str(p) for p in pairs)} | "
                         + " | ".join(cell(key, m) for m in metrics) + " |")  # fmt: skip
    lines += [
        "",
        "Paired differences (b - a, points) per seed, 95% per-image bootstrap intervals:",
        "",
        "| contrast | seed | companion halluc. | companion recall | CHAIR_i | recall |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        for name, entry in r["paired"].items():
            lines.append(f"| {name} | {r['seed']} | {_diff(entry['companion_hallucination'])} | "
                         f"{_diff(entry['companion_recall'])} | {_diff(entry['chair_i'])} | {_diff(entry['recall'])} |")  # fmt: skip
    return "\n".join(lines) + "\n"


# --- driver ----------------------------------------------------------------------------------------------------------


COMBINED_METRICS = ("companion_hallucination", "companion_recall", "recall")


def combine(result_files: list[Path], round_: int) -> dict:
    """Every paired contrast of round `round_` present in all seeds of `result_files` (runs of this experiment on
    different seeds), per seed and across seeds: the mean difference with a t interval over seeds, and how many seeds
    have it below 0 with a two-sided sign test (seeds whose difference is exactly 0 are left out of the test)."""
    from experiments.intervals import sign_test, t_interval

    seeds = [seed for path in result_files for seed in json.loads(Path(path).read_text())["seeds"]]
    numbers = [s["seed"] for s in seeds]
    if len(set(numbers)) != len(numbers):
        raise SystemExit(f"--combine: a seed appears twice across {[str(p) for p in result_files]}: {numbers}")
    suffix = f"/round{round_}"
    contrasts = [c for c in seeds[0]["paired"] if c.split(" - ")[0].endswith(suffix)]
    contrasts = [c for c in contrasts if all(c in s["paired"] for s in seeds)]
    out: dict = {"seeds": numbers, "round": round_, "contrasts": {}}
    for contrast in contrasts:
        out["contrasts"][contrast] = {}
        for metric in COMBINED_METRICS:
            per_seed = [s["paired"][contrast][metric] for s in seeds]
            diffs = [e["diff"] for e in per_seed]
            entry = {"per_seed": dict(zip(numbers, per_seed, strict=True))}
            if None not in diffs and len(diffs) >= 2:
                mean, low, high = t_interval(diffs)
                nonzero = [d for d in diffs if d != 0]
                below = sum(d < 0 for d in nonzero)
                entry.update(mean=mean, low=low, high=high, below_zero=below, nonzero=len(nonzero),
                             sign_test_p=sign_test(below, len(nonzero)) if nonzero else None)  # fmt: skip
            out["contrasts"][contrast][metric] = entry
    return out


def combined_report(combined: dict) -> str:
    numbers = combined["seeds"]
    lines = [f"Round {combined['round']}, seeds {numbers}: paired differences (b - a, points) per seed with 95% "
             "per-image bootstrap intervals; across seeds the mean with a 95% t interval over seeds, and the seeds "
             "below 0 with a two-sided sign test.", ""]  # fmt: skip
    for metric in COMBINED_METRICS:
        lines += [f"**{metric}**", "", "| contrast | " + " | ".join(f"seed {n}" for n in numbers)
                  + " | mean over seeds [95% t] | below 0 (sign test p) |", "|---" * (len(numbers) + 3) + "|"]  # fmt: skip
        for contrast, metrics in combined["contrasts"].items():
            entry = metrics[metric]
            cells = [_diff(entry["per_seed"][n]) for n in numbers]
            if "mean" in entry:
                across = f"{100 * entry['mean']:+.1f} [{100 * entry['low']:+.1f}, {100 * entry['high']:+.1f}]"
                p = "n/a" if entry["sign_test_p"] is None else f"{entry['sign_test_p']:.3f}"
                sign = f"{entry['below_zero']} of {entry['nonzero']} (p = {p})"
            else:
                across = sign = "n/a"
            lines.append(f"| {contrast} | " + " | ".join(cells) + f" | {across} | {sign} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.prior_rounds", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="recipes/proof/prior/config_rounds.yaml", help="settings (YAML)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="override the seeds")
    parser.add_argument("--out", default=None, help="override the output folder")
    parser.add_argument("--rounds", type=int, default=None, help="override the number of rounds")
    parser.add_argument("--labelers", nargs="+", default=None, choices=LABELERS, help="override the labelers")
    parser.add_argument("--combine", nargs="+", type=Path, default=None, metavar="RESULTS_JSON",
                        help="instead of running: combine the results.json of runs on different seeds (per seed and "
                        "across seeds, the round given by --rounds or the config's last); writes combined.md and "
                        "combined.json to --out")  # fmt: skip
    args = parser.parse_args(argv)
    if args.combine:
        if not args.out:
            parser.error("--combine needs --out (the folder for combined.md and combined.json)")
        round_ = args.rounds or json.loads(args.combine[0].read_text())["config"]["rounds"]
        combined = combine(args.combine, round_)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "combined.json").write_text(json.dumps(combined, indent=2))
        report = combined_report(combined)
        (out / "combined.md").write_text(report)
        print(report)
        return 0
    overrides = {"seeds": args.seeds, "out": args.out, "rounds": args.rounds, "labelers": args.labelers}
    config = PriorRoundsConfig.from_yaml(args.config, overrides)
    from experiments.proof import prepare_run

    out = prepare_run(config)
    start = time.time()
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    from experiments.proof import run_seeds_in_processes

    results = run_seeds_in_processes(run_seed, config)
    summary = aggregate(results)
    elapsed = time.time() - start
    (out / "results.json").write_text(json.dumps({"config": asdict(config), "seeds": results, "summary": summary,
                                                  "wall_s": elapsed}, indent=2))  # fmt: skip
    report = markdown_report(config, results, summary) + f"\nWall time of this run: {elapsed / 60:.1f} min.\n"
    (out / "results.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
