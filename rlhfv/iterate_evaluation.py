"""Held-out evaluation of `rlhfv iterate`'s candidate checkpoints: one evaluator per `evaluation.kind`.

RLAIF-V keeps, every round, the checkpoint that does best on a held-out evaluation. `EVALUATORS` maps each kind to
an `Evaluator`: the function that scores one model, the metrics it returns, and the default metric to select on
and its direction. Adding a kind is one entry in the dict.

    none             no evaluation: each round keeps its final model
    synthetic        the synthetic world's test images: CHAIR_s, CHAIR_i, recall, the annotator's false-claim rate
    pope             a POPE question file (yes/no object probing): F1, accuracy, precision, recall, yes-ratio
    object_halbench  Object HalBench questions, CHAIR with rlhfv's offline synonym list: CHAIR_s, CHAIR_i, recall

The benchmark kinds answer through `rlhfv eval`'s own generation (`generate_for_benchmark`: greedy, batched,
resumable, settings recorded beside the answers) and score with `rlhfv eval`'s own scoring, so a round's number is
the one `rlhfv eval pope score` would print for the same answers; object_halbench counts as the official Object
HalBench script does but finds objects with rlhfv's offline matcher (no NLTK data, no extractor model), so its
numbers rank a run's checkpoints and are not the official ones (`rlhfv eval object-halbench score` gives those).

Recipe keys (`evaluation:`): kind, select_metric, select_mode (min | max), max_new_tokens, batch_size, device, and
per kind: pope: questions (a POPE question file), images (its image folder), prompt_suffix, unclear_as;
object_halbench: questions, images, instances, captions (COCO annotation files).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from data_tools.errors import CommandError
from data_tools.settings import suggestion


SELECT_MODES = ("min", "max")
# the synthetic world's settings, SFT and evaluation: research code in the checkout's experiments/ package, reached
# by import path (rlhfv.extensions) so that the installed product does not depend on it
SYNTHETIC_WORLD = "experiments.proof"


@dataclass(frozen=True)
class Evaluator:
    """How one kind scores a model: `evaluate(iteration, model, answers) -> {metric: value}`."""

    evaluate: Callable | None
    metrics: tuple[str, ...]
    select_metric: str | None  # the default metric to select on
    select_mode: str = "min"  # its default direction
    required: tuple[str, ...] = ()  # evaluation keys the kind needs
    files: tuple[str, ...] = ()  # keys naming files or folders that must exist (checked at start)
    optional: tuple[str, ...] = field(default=())  # further keys the kind reads


COMMON_KEYS = ("kind", "select_metric", "select_mode", "max_new_tokens", "batch_size", "device")


# ---- synthetic world ---------------------------------------------------------------------------------------------
def evaluate_synthetic(iteration, model: Path, answers: Path) -> dict:
    from rlhfv.extensions import import_object

    evaluate = import_object(SYNTHETIC_WORLD + ":evaluate", what="evaluation.kind synthetic")
    settings = iteration.config.evaluation
    if not iteration.config.synthetic:
        raise CommandError("evaluation.kind synthetic needs the synthetic block")
    proof = iteration.proof_config()
    proof.max_new_tokens = settings.get("max_new_tokens", proof.max_new_tokens)
    proof.generation_batch_size = settings.get("batch_size", proof.generation_batch_size)
    eval_dir = Path(settings.get("prompts_dir", iteration.out / "data" / "eval"))
    return evaluate(proof, model, eval_dir, answers)


# ---- benchmarks through `rlhfv eval`'s generation -----------------------------------------------------------------
def _generate(benchmark: str, settings: dict, model: Path, rows: list[dict], answers: Path, suffix: str):
    from rlhfv.eval.bench_generate import generate_for_benchmark, read_answers
    from rlhfv.eval.io import EvalInputError
    from rlhfv.generation.generate import GenerationOptions

    options = GenerationOptions(
        max_new_tokens=settings.get("max_new_tokens", 512), batch_size=settings.get("batch_size", 8)
    )
    try:
        generate_for_benchmark(
            benchmark,
            model,
            rows,
            answers,
            options,
            suffix,
            settings.get("device"),
            progress=settings.get("progress", True),
        )
        return read_answers(answers)
    except EvalInputError as error:
        raise CommandError(f"evaluation ({benchmark}): {error}") from None


def evaluate_pope(iteration, model: Path, answers: Path) -> dict:
    from rlhfv.eval import pope
    from rlhfv.eval.bench_cli import POPE_SUFFIX

    settings = iteration.config.evaluation
    rows = pope.read_questions(settings["questions"], settings.get("images"))
    got = _generate("pope", settings, model, rows, answers, settings.get("prompt_suffix", POPE_SUFFIX))
    metrics, _ = pope.score_split(rows, got, settings.get("unclear_as", "pope"))
    return {**{m: metrics[m] for m in POPE_METRICS}, "n": metrics["n"], "unclear": len(metrics["unclear_answers"])}


def evaluate_object_halbench(iteration, model: Path, answers: Path) -> dict:
    """rlhfv's offline rule-based CHAIR (rlhfv.eval.chair's matcher and synonym list; no NLTK data or extractor
    needed), counted as the official Object HalBench script counts: not the official numbers, a round-to-round
    measure."""
    from rlhfv.eval import object_halbench as ohb
    from rlhfv.eval.chair import ObjectExtractor
    from rlhfv.eval.objhal_chair import compute_chair, rlhfv_table

    settings = iteration.config.evaluation
    rows = ohb.read_questions(settings["questions"], settings.get("images"))
    got = _generate("object-halbench", settings, model, rows, answers, settings.get("prompt_suffix", ""))
    extractor = ObjectExtractor()
    truth = ohb.coco_truth(
        _as_list(settings["instances"]),
        _as_list(settings["captions"]),
        rlhfv_table(),
        None,
        {row["image_id"] for row in rows},
        lambda caption: {m.cls for m in extractor.mentions(caption)},
    )
    responses = []
    for row in rows:
        text = got[row["id"]]["answer"]
        names = [(m.text, m.cls) for m in extractor.mentions(text)]
        responses.append({"names": names, "truth": truth[row["image_id"]], "answer": text})
    metrics = compute_chair(responses)["overall_metrics"]
    return {
        "chair_s": None if metrics["CHAIRs_refine"] is None else 100 * metrics["CHAIRs_refine"],
        "chair_i": None if metrics["CHAIRi"] is None else 100 * metrics["CHAIRi"],
        "recall": None if metrics["obj_rec"] is None else 100 * metrics["obj_rec"],
        "mean_length_words": sum(len(r["answer"].split()) for r in responses) / len(responses) if responses else None,
    }


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


SYNTHETIC_METRICS = ("chair_s", "chair_i", "false_claim_rate", "recall", "mean_length_words")
POPE_METRICS = ("f1", "accuracy", "precision", "recall", "yes_ratio")
OBJECT_HALBENCH_METRICS = ("chair_s", "chair_i", "recall", "mean_length_words")

EVALUATORS: dict[str, Evaluator] = {
    "none": Evaluator(None, (), None),
    "synthetic": Evaluator(
        evaluate_synthetic,
        SYNTHETIC_METRICS,
        "false_claim_rate",
        "min",
        optional=("prompts_dir",),
    ),
    "pope": Evaluator(
        evaluate_pope,
        POPE_METRICS,
        "f1",
        "max",
        required=("questions",),
        files=("questions", "images"),
        optional=("images", "prompt_suffix", "unclear_as", "progress"),
    ),
    "object_halbench": Evaluator(
        evaluate_object_halbench,
        OBJECT_HALBENCH_METRICS,
        "chair_s",
        "min",
        required=("questions", "instances", "captions"),
        files=("questions", "images", "instances", "captions"),
        optional=("images", "prompt_suffix", "progress"),
    ),
}


def check_settings(settings: dict, where: str) -> dict:
    """The evaluation block with its defaults filled in; a clear error for an unknown kind, key, metric or mode."""
    kind = settings.get("kind", "none")
    if kind not in EVALUATORS:
        raise CommandError(f"{where}: evaluation.kind must be one of {', '.join(EVALUATORS)}; got {kind!r}")
    evaluator = EVALUATORS[kind]
    known = {*COMMON_KEYS, *evaluator.required, *evaluator.optional}
    unknown = sorted(set(settings) - known)
    if unknown:
        # each unknown key named with the closest known one, as every settings file's keys are (data_tools.settings)
        names = ", ".join(f"{key!r}{suggestion(str(key), known)}" for key in unknown)
        verb = "key {} is" if len(unknown) == 1 else "keys {} are"
        raise CommandError(
            f"{where}: evaluation {verb.format(names)} not read by kind {kind!r}; known: {', '.join(sorted(known))}"
        )
    missing = [key for key in evaluator.required if not settings.get(key)]
    if missing:
        raise CommandError(f"{where}: evaluation.kind {kind} needs {', '.join(missing)}")
    metric = settings.get("select_metric", evaluator.select_metric)
    if evaluator.metrics and metric not in evaluator.metrics:
        raise CommandError(
            f"{where}: evaluation.select_metric {metric!r} is not a metric of kind {kind!r}; known: "
            f"{', '.join(evaluator.metrics)}"
        )
    mode = settings.get("select_mode", evaluator.select_mode)
    if mode not in SELECT_MODES:
        raise CommandError(f"{where}: evaluation.select_mode must be min or max; got {mode!r}")
    return {**settings, "kind": kind, "select_metric": metric, "select_mode": mode}


def check_files(settings: dict) -> None:
    """The files the evaluation reads exist (at start, before any training)."""
    for key in EVALUATORS[settings["kind"]].files:
        for value in _as_list(settings[key]) if settings.get(key) else []:
            if not Path(value).exists():
                raise CommandError(f"evaluation.{key}: {value}: no such file or folder")


def pick_best(scored: list[tuple], mode: str) -> tuple | None:
    """The best of `(value, index, ...)` tuples by `mode` (min or max); ties go to the lowest index; None values
    (a candidate the metric could not be computed for) are never picked. None when no candidate has a value."""
    valid = [s for s in scored if s[0] is not None]
    if not valid:
        return None
    sign = 1 if mode == "min" else -1
    return min(valid, key=lambda s: (sign * s[0], s[1]))
