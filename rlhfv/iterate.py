"""`rlhfv iterate --config RECIPE`: RLAIF-V's iterative on-policy rounds.

Each round: sample -> label -> pairs (`rlhfv feedback`) -> train (`rlhfv train`, with this round's starting model as
the policy AND the reference, so the reference moves every round) -> evaluate every candidate checkpoint on the
held-out prompts -> the best becomes the next round's policy and reference. Every stage of every round is saved
under `out/round_<k>/` and skipped when done, so a killed run resumes where it stopped. A per-round table
(`rounds.md`, `rounds.json`) and plot (`rounds.png`) are rewritten after each round.

Recipe keys (docs/feedback.md): rounds, out, seed, initial_policy | synthetic, feedback (FeedbackConfig keys),
train (`rlhfv train` recipe keys), evaluation (kind: none | synthetic | pope | object_halbench, select_metric,
select_mode, ...: rlhfv/iterate_evaluation.py).

    rlhfv iterate --config recipes/synthetic/rlaif_v/iterate.yaml
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import fields
from pathlib import Path

from data_tools.errors import CommandError
from data_tools.outputs import write_text
from rlhfv.extensions import import_module, import_object
from rlhfv.iterate_config import IterateConfig, record_or_compare_settings
from rlhfv.iterate_evaluation import SYNTHETIC_WORLD
from rlhfv.iterate_report import TABLE_METRICS, markdown_table, plot_caption, write_table


# the synthetic mode's world writers (research code in the checkout's experiments/, see rlhfv.extensions)
SYNTHETIC_WORLD_WRITERS = "experiments.synthetic.writers"


logger = logging.getLogger("rlhfv.iterate")


class Iteration:
    def __init__(self, config: IterateConfig):
        self.config = config
        self.out = Path(config.out)
        self.timings: dict = {}

    # ---- a rerun into the same folder: the rounds already done keep their settings -----------------------------
    def check_previous_settings(self) -> list[str]:
        """Record the settings in the output folder; on a rerun, warn with each setting that differs (the finished
        rounds are reused as they are, as `rlhfv train` warns on resume). Returns the changes."""
        return record_or_compare_settings(self.config, self.out)

    # ---- set-up: the synthetic world and its SFT model -----------------------------------------------------------
    def proof_config(self):
        ProofConfig = import_object(SYNTHETIC_WORLD + ":ProofConfig", what="synthetic")

        known = {f.name for f in fields(ProofConfig)}
        unknown = set(self.config.synthetic) - known
        if unknown:
            raise CommandError(f"synthetic: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        return ProofConfig(**self.config.synthetic)

    def setup(self) -> Path:
        """The round-1 policy; in the synthetic mode, also the world's prompt files (built once)."""
        if self.config.initial_policy:
            return Path(self.config.initial_policy)
        writers = import_module(SYNTHETIC_WORLD_WRITERS, what="synthetic")
        write_prompts, write_sft = writers.write_prompts, writers.write_sft
        train_sft = import_object(SYNTHETIC_WORLD + ":train_sft", what="synthetic")

        proof = self.proof_config()
        data, seed = self.out / "data", self.config.seed
        if not (data / "preference" / "prompts.jsonl").is_file():
            write_sft(
                data / "sft",
                n=proof.sft_items,
                seed=seed,
                canvas=proof.canvas,
                visual_questions=proof.sft_visual_questions,
            )
            write_prompts(
                data / "preference", n=proof.preference_items, seed=seed, split="preference", canvas=proof.canvas
            )
            write_prompts(data / "eval", n=proof.eval_items, seed=seed, split=proof.eval_split, canvas=proof.canvas)
        sft = self.out / "sft"
        if not (sft / "config.json").is_file():
            start = time.time()
            train_sft(proof, seed, data / "sft", sft)
            self.timings["sft_s"] = round(time.time() - start, 1)
        return sft

    # ---- one round ---------------------------------------------------------------------------------------------
    def feedback_config(self, k: int, policy: Path):
        from rlhfv.feedback.config import FeedbackConfig

        values = dict(self.config.feedback)
        unknown = set(values) - FeedbackConfig.field_names()
        if unknown:
            raise CommandError(f"feedback: unknown keys {sorted(unknown)}")
        if self.config.synthetic:
            values.setdefault("prompts", str(self.out / "data" / "preference" / "prompts.jsonl"))
            if values.get("labeler") == "truth":
                values.setdefault("truth_scenes", str(self.out / "data" / "preference" / "scenes.json"))
        # images embedded in the prompts rows are written once for all rounds
        values.setdefault("images_dir", str(self.out / "images"))
        values.update(policy=str(policy), out=str(self.out / f"round_{k}" / "feedback"), seed=self.config.seed + k - 1)
        return FeedbackConfig(**values)

    def train_round(self, k: int, policy: Path, dataset: Path) -> Path | None:
        """Train from `policy` (also the reference) on `dataset`; None when the round has no pairs."""
        import yaml

        from rlhfv.train import cli_main as train_main

        out = self.out / f"round_{k}" / "train"
        if (out / "train.done").is_file():
            return out
        if dataset_rows(dataset) == 0:
            return None
        recipe = {
            **self.config.train,
            "model_name_or_path": str(policy),
            "dataset_name": str(dataset),
            "output_dir": str(out),
            "seed": self.config.seed + k - 1,
        }
        recipe_path = self.out / f"round_{k}" / "train_recipe.yaml"
        recipe_path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        try:
            code = train_main(["--config", str(recipe_path)], prog="rlhfv iterate (train)")
        except CommandError as error:
            raise CommandError(f"round {k}: training failed: {error}") from None
        if code:
            raise CommandError(f"round {k}: training failed with exit code {code}")
        (out / "train.done").write_text("done\n")
        return out

    def candidates(self, trained: Path) -> list[Path]:
        """The final model and every saved checkpoint that holds a model or a LoRA adapter (RLAIF-V keeps the
        round's best); a checkpoint of the final step is the final model and is not evaluated twice."""
        found = [trained]
        final_step = _global_step(trained)
        for checkpoint in sorted(trained.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1])):
            holds_model = (checkpoint / "config.json").is_file() or (checkpoint / "adapter_config.json").is_file()
            if holds_model and (final_step is None or _global_step(checkpoint) != final_step):
                found.append(checkpoint)
        return found

    def evaluate(self, model: Path, answers: Path) -> dict:
        """Held-out metrics of `model` by the evaluation kind (cached in a JSON beside the answers)."""
        from rlhfv.iterate_evaluation import EVALUATORS

        cache = answers.with_suffix(".metrics.json")
        if cache.is_file():
            return json.loads(cache.read_text())
        evaluator = EVALUATORS[self.config.evaluation["kind"]]
        if evaluator.evaluate is None:
            return {}
        answers.parent.mkdir(parents=True, exist_ok=True)
        metrics = evaluator.evaluate(self, model, answers)
        free_memory()  # the evaluated model goes before the next one loads
        write_text(cache, json.dumps(metrics, indent=2) + "\n")  # staged: a resume never reads half a file
        return metrics

    def select(self, k: int, policy: Path, trained: Path | None) -> tuple[Path, dict, str]:
        """(next policy, its metrics, why). Candidates: the round's checkpoints, scored by `select_metric`, the
        lowest or highest winning by `select_mode`."""
        from rlhfv.iterate_evaluation import EVALUATORS, pick_best

        if trained is None:
            return policy, self.evaluate(policy, self.out / f"round_{k - 1}" / "eval_answers.jsonl"), "no pairs"
        # a config built in code (not through from_yaml) may leave the kind's defaults out
        settings, evaluator = self.config.evaluation, EVALUATORS[self.config.evaluation["kind"]]
        metric = settings.get("select_metric") or evaluator.select_metric
        mode = settings.get("select_mode") or evaluator.select_mode
        scored = []
        for n, candidate in enumerate(self.candidates(trained)):
            metrics = self.evaluate(candidate, self.out / f"round_{k}" / f"eval_answers_{n}.jsonl")
            scored.append((metrics.get(metric), n, candidate, metrics))
        best = pick_best(scored, mode)
        if best is not None:
            word = "lowest" if mode == "min" else "highest"
            return best[2], best[3], f"{word} {metric} of {len(scored)} checkpoint(s): {best[2].name}"
        return trained, scored[0][3], "final model (no evaluation)"

    def caption(self) -> str:
        return plot_caption(self.out, self.config.evaluation, self.config.seed)

    def table_metrics(self) -> tuple[str, ...]:
        """The held-out metrics of the per-round table and plot: the evaluator's (a subclass that overrides
        `evaluate` names its own here)."""
        from rlhfv.iterate_evaluation import EVALUATORS

        return EVALUATORS[self.config.evaluation["kind"]].metrics or TABLE_METRICS

    def check_out(self) -> None:
        """The run folder holds no input the user gave (the synthetic mode writes its own prompts into it)."""
        from data_tools.outputs import check_training_output

        given = [self.config.initial_policy, self.config.feedback.get("prompts")]
        given += [value for key, value in self.config.evaluation.items() if key != "kind" and isinstance(value, str)]
        check_training_output(str(self.out), given, label="output_dir")

    def run(self) -> list[dict]:
        from rlhfv.feedback.pipeline import run_feedback
        from rlhfv.iterate_evaluation import check_files

        check_files(self.config.evaluation)  # the held-out files exist before anything trains
        metrics_shown = self.table_metrics()
        self.check_out()
        self.out.mkdir(parents=True, exist_ok=True)
        self.check_previous_settings()
        start = time.time()
        policy = self.setup()
        rows_path = self.out / "rounds.json"
        start_eval = time.time()
        base = (
            self.evaluate(policy, self.out / "round_0" / "eval_answers.jsonl")
            if self.config.evaluation["kind"] != "none"
            else {}
        )
        (self.out / "round_0").mkdir(exist_ok=True)
        rows = [
            {
                "round": 0,
                "policy": str(policy),
                "pairs": None,
                "feedback_false_claim_rate": None,
                **{m: base.get(m) for m in metrics_shown},
                "seconds": round(time.time() - start_eval, 1),
            }
        ]
        for k in range(1, self.config.rounds + 1):
            round_dir = self.out / f"round_{k}"
            selected_file = round_dir / "selected.json"
            if selected_file.is_file():
                row = json.loads(selected_file.read_text())
                rows.append(row)
                policy = Path(row["policy"])
                continue
            round_start = time.time()
            summary = run_feedback(self.feedback_config(k, policy))
            free_memory()  # the sampling / labeling models go before training starts
            trained = self.train_round(k, policy, round_dir / "feedback" / "dataset")
            policy, metrics, why = self.select(k, policy, trained)
            if (policy / "adapter_config.json").is_file():
                # the selected LoRA adapter (final or a checkpoint) merged: the next policy and reference
                policy = merge_adapter(policy, round_dir / "merged")
            row = {
                "round": k,
                "policy": str(policy),
                "pairs": summary.get("pairs"),
                "feedback_false_claim_rate": summary.get("false_claim_rate"),
                **{m: metrics.get(m) for m in metrics_shown},
                "selected": why,
                "seconds": round(time.time() - round_start, 1),
            }
            write_text(selected_file, json.dumps(row, indent=2) + "\n")
            rows.append(row)
            write_table(rows, self.out, metrics_shown, self.caption())
        rows_path.write_text(json.dumps(rows, indent=2) + "\n")
        write_table(rows, self.out, metrics_shown, self.caption())
        logger.info("iterate: %d rounds in %.0f s", self.config.rounds, time.time() - start)
        return rows


def dataset_rows(path: Path) -> int:
    """Rows of a saved dataset. A dataset of 0 rows is saved without data files, which `load_from_disk` cannot read
    back (it fails with an IndexError), so its `state.json` is read first."""
    state = json.loads((path / "state.json").read_text())
    if not state.get("_data_files"):
        return 0
    from datasets import load_from_disk

    return len(load_from_disk(str(path)))


def free_memory() -> None:
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def _global_step(folder: Path) -> int | None:
    """The step a trainer folder or checkpoint was saved at (its trainer_state.json), None when unknown."""
    state = folder / "trainer_state.json"
    try:
        return json.loads(state.read_text()).get("global_step") if state.is_file() else None
    except (json.JSONDecodeError, OSError):
        return None


def merge_adapter(adapter: Path, out: Path) -> Path:
    """A LoRA round's adapter merged into its base model, saved with the processor: the next round samples from it,
    trains a fresh adapter on it, and uses it as the reference."""
    if (out / "config.json").is_file():
        return out
    from rlhfv.generation.generate import load_model

    loaded = load_model(adapter, device="cpu")
    merged = loaded.model.merge_and_unload()
    merged.save_pretrained(out)
    loaded.processor.save_pretrained(out)
    free_memory()
    return out


def register(subparsers) -> None:
    from data_tools.settings import add_settings_arguments

    parser = subparsers.add_parser(
        "iterate",
        help="RLAIF-V's iterative rounds: sample -> label -> train -> evaluate, the best checkpoint becomes the next "
        "policy and reference",
        description="K rounds of `rlhfv feedback` + `rlhfv train` + held-out evaluation; resumable per round and "
        "stage; writes rounds.md / rounds.json / rounds.png in the output folder.",
    )
    add_settings_arguments(parser, IterateConfig)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from data_tools.settings import read_settings
    from rlhfv.endpoint import EndpointError
    from rlhfv.eval.io import EvalInputError
    from rlhfv.recipe import apply_recipe_env

    if not args.config:
        raise CommandError(
            "--config is required: the iterate recipe (YAML), e.g. recipes/synthetic/rlaif_v/iterate.yaml"
        )
    (config,) = read_settings(args, IterateConfig)
    try:
        config.check_recipe()
    except CommandError as error:
        raise type(error)(f"{args.config}: {error}") from None
    # one thread policy for every stage: the train section's env (e.g. OMP_NUM_THREADS: 1) from the first stage on
    apply_recipe_env(config.train.get("env"))
    if config.feedback.get("sampler") == "vllm":
        from rlhfv.feedback.vllm_sampling import require_vllm

        require_vllm()  # at start, not after round 1's set-up
    if config.initial_policy and not Path(config.initial_policy).is_dir():
        raise CommandError(f"initial_policy: {config.initial_policy}: no such model folder")
    if config.initial_policy and not config.feedback.get("prompts"):
        raise CommandError("feedback.prompts is required with initial_policy (the synthetic world has its own)")
    start = time.time()
    iteration = Iteration(config)
    try:
        rows = iteration.run()
    except (EvalInputError, EndpointError) as error:  # a file or a server a round depends on: one line
        raise CommandError(str(error)) from None
    print(markdown_table(rows, iteration.table_metrics()))
    print(f"{config.rounds} round(s) in {time.time() - start:.0f} s; table and plot in {config.out}")
    return 0
