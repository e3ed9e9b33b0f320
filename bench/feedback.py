"""Benchmark: the feedback loop (RLAIF-V) on a tiny LLaVA on CPU, every part measured in one run.

1. Labeling throughput (claims/s): rlhfv's one-forward yes/no labeler (`TransformersLabeler`: P(yes), P(no) of the
   first answer token) against a generate-based labeler (bench/generate_labeler.py: greedy reply of up to
   `gen_tokens` tokens, verdict from its first word), the same model, questions and batch sizes, run alternately.
2. Sampling throughput with transformers `generate` (`TransformersSampler`: answers/s and answer tokens/s per
   sampling batch size). vLLM's row is measured only where a GPU and vLLM are present; otherwise it says why not.
3. Where a round's time goes: sample (`rlhfv feedback` up to answers.jsonl), label (claims, questions, labels), pairs
   (scores, pairs, dataset), train (`rlhfv train`, Dense DPO, a few steps), evaluate (greedy answers to held-out
   prompts); the policy is loaded once and handed to the feedback stages, training and evaluation load from disk.

Rates are medians over repeats; error bars and the min/max columns are the smallest and largest repeat. All parts run
in this one process, back to back, so their ratios are comparable even on a busy machine; absolute times are not.
"""

from __future__ import annotations

import datetime
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace


TITLE = "Feedback loop: labeling and sampling throughput, and where a round's time goes (tiny LLaVA, CPU)"
FULL = {
    "claims": 48,
    "label_batches": (1, 8, 32),
    "repeats": 3,
    "gen_tokens": 8,
    "sample_prompts": 6,
    "num_samples": 4,
    "sample_tokens": 24,
    "sample_batches": (1, 3),
    "round_prompts": 6,
    "round_repeats": 2,
    "train_steps": 3,
    "eval_prompts": 6,
}
QUICK = {
    **FULL,
    "claims": 16,
    "label_batches": (1, 8),
    "repeats": 2,
    "sample_prompts": 3,
    "sample_batches": (1, 3),
    "round_prompts": 4,
    "round_repeats": 1,
    "train_steps": 2,
    "eval_prompts": 3,
}
PHASES = ("sample", "label", "pairs", "train", "evaluate")
COLUMNS = [
    ("part", "part"),
    ("contender", "contender"),
    ("batch", "batch"),
    ("median", "median"),
    ("low", "min"),
    ("high", "max"),
    ("unit", "unit"),
    ("ratio", "ratio"),
    ("note", "note"),
]


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "low": min(values), "high": max(values), "values": values}


def build_world(root: Path, settings: dict, single_token_yes_no: bool = True):
    """A tiny LLaVA saved to disk (answers depend on the question, as in the pipeline tests) and synthetic
    prompts: (policy folder, loaded policy, prompt rows, prompts file, held-out prompts file).

    `single_token_yes_no`: train the tiny tokenizer on extra yes/no text so that "yes", "Yes", "no", "No" are single
    tokens, as in real VLM tokenizers; the default tiny tokenizer spells each in two, which costs the one-forward
    labeler two more forward passes per batch."""
    import torch

    from experiments.synthetic import write_prompts
    from rlhfv.generation.generate import load_model
    from rlhfv.tiny_models import DEFAULT_CORPUS, build_llava, build_tokenizer

    corpus = [*DEFAULT_CORPUS, *["Yes. No. yes, no. Yes, no. yes no." for _ in range(50)]]
    model, processor = build_llava(build_tokenizer(corpus if single_token_yes_no else None), seed=3)
    model.config.text_config.initializer_range = 0.3
    torch.manual_seed(3)
    model = type(model)(model.config)
    model.save_pretrained(root / "policy")
    processor.save_pretrained(root / "policy")
    need = max(settings["claims"], settings["sample_prompts"], settings["round_prompts"])
    prompts = write_prompts(root / "prompts", n=need, seed=0)
    held_out = write_prompts(root / "held_out", n=settings["eval_prompts"], seed=1)
    import json

    rows = []
    for line in prompts.read_text().splitlines():
        row = json.loads(line)
        rows.append(
            {
                "id": row["id"],
                "question": row["question"],
                "_where": row["id"],
                "image": row["image"],
                "_image_path": str(prompts.parent / row["image"]),
            }
        )
    return root / "policy", load_model(root / "policy", "cpu"), rows, prompts, held_out


def label_part(loaded, rows: list[dict], settings: dict, part: str = "label") -> list[dict]:
    from bench.generate_labeler import GenerateLabeler
    from rlhfv.feedback.labeling import LabelRequest, TransformersLabeler

    objects = ("circle", "square", "triangle", "red shape", "blue shape", "green shape")
    requests = [
        LabelRequest(
            f"Is there a {objects[k % len(objects)]} in the image? Please answer yes or no.",
            rows[k % len(rows)]["_image_path"],
        )
        for k in range(settings["claims"])
    ]
    out = []
    for batch in settings["label_batches"]:
        labelers = {
            "one_forward": TransformersLabeler(loaded, batch),
            "generate": GenerateLabeler(loaded, batch, settings["gen_tokens"]),
        }
        for labeler in labelers.values():
            labeler.label_many(requests[: min(batch, 4)], progress=False)  # warm-up
        times = {name: [] for name in labelers}
        for repeat in range(settings["repeats"]):
            order = list(labelers) if repeat % 2 == 0 else list(reversed(labelers))
            for name in order:
                start = time.perf_counter()
                labelers[name].label_many(requests, progress=False)
                times[name].append(time.perf_counter() - start)
        rates = {name: spread([len(requests) / t for t in ts]) for name, ts in times.items()}
        for name in labelers:
            ratio = rates[name]["median"] / rates["generate"]["median"]
            if name == "generate":
                generate = labelers["generate"]
                note = f"greedy reply, mean {generate.reply_tokens / generate.replies:.1f} of up to {settings['gen_tokens']} tokens"
            else:
                spelled = len(labelers[name].yes_sequences) + len(labelers[name].no_sequences)
                note = f"{1 + spelled} forward(s) per batch" + (" (yes/no are several tokens here)" if spelled else "")
            out.append(
                {
                    "part": part,
                    "contender": name,
                    "batch": batch,
                    **rates[name],
                    "unit": "claims/s",
                    "ratio": ratio,
                    "note": note,
                }
            )
    return out


def sample_part(loaded, rows: list[dict], settings: dict) -> list[dict]:
    from rlhfv.feedback.sampling import TransformersSampler

    todo = rows[: settings["sample_prompts"]]
    out = []
    for batch in settings["sample_batches"]:
        config = SimpleNamespace(
            max_new_tokens=settings["sample_tokens"],
            temperature=0.7,
            top_p=1.0,
            seed=0,
            num_samples=settings["num_samples"],
        )
        sampler = TransformersSampler(lambda: loaded, config)
        sampler.sample(todo[:1])  # warm-up
        answer_rates, token_rates = [], []
        for _ in range(settings["repeats"]):
            start = time.perf_counter()
            answers = [
                a for s in range(0, len(todo), batch) for group in sampler.sample(todo[s : s + batch]) for a in group
            ]
            seconds = time.perf_counter() - start
            tokens = sum(len(loaded.tokenizer.encode(a, add_special_tokens=False)) for a in answers)
            answer_rates.append(len(answers) / seconds)
            token_rates.append(tokens / seconds)
        tokens = spread(token_rates)["median"]
        out.append(
            {
                "part": "sample",
                "contender": "transformers",
                "batch": batch,
                **spread(answer_rates),
                "unit": "answers/s",
                "ratio": None,
                "note": f"{tokens:.0f} answer tokens/s, {settings['num_samples']} answers per prompt, temperature 0.7",
            }
        )
    out.append(
        {
            "part": "sample",
            "contender": "vllm",
            "batch": None,
            "median": None,
            "low": None,
            "high": None,
            "unit": "answers/s",
            "ratio": None,
            "note": vllm_skip_reason() or "not measured",
        }
    )
    return out


def vllm_skip_reason() -> str | None:
    import torch

    if not torch.cuda.is_available():
        return "skipped: no GPU on this machine (vLLM's offline engine needs one)"
    if importlib.util.find_spec("vllm") is None:
        return "skipped: vLLM is not installed (pip install 'rlhfv[vllm]')"
    return "skipped: the vLLM row runs only in the GPU benchmark (bench/gpu.py); this one is the CPU loop"


def one_round(root: Path, policy: Path, loaded, prompts: Path, held_out: Path, settings: dict) -> dict:
    import yaml

    from rlhfv.feedback.config import FeedbackConfig
    from rlhfv.feedback.pipeline import run_feedback
    from rlhfv.generation.generate import GenerationOptions, generate_answers
    from rlhfv.train import cli_main as train_main

    base = {
        "prompts": str(prompts),
        "policy": str(policy),
        "out": str(root / "feedback"),
        "device": "cpu",
        "num_samples": settings["num_samples"],
        "max_new_tokens": settings["sample_tokens"],
        "labeler": "self",
        "sample_batch_size": settings["round_prompts"],
        "on_error": "skip",
        "progress": False,
    }
    seconds = {}
    for phase, stop in (("sample", "sample"), ("label", "label"), ("pairs", None)):
        start = time.perf_counter()
        summary = run_feedback(FeedbackConfig(**base, stop_after=stop), loaded_policy=loaded)
        seconds[phase] = time.perf_counter() - start
    recipe = {
        "model_name_or_path": str(policy),
        "dataset_name": str(root / "feedback" / "dataset"),
        "output_dir": str(root / "train"),
        "gamma": 5.0,
        "beta": 0.1,
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 2,
        "max_steps": settings["train_steps"],
        "max_length": 256,
        "use_cpu": True,
        "bf16": False,
        "eval_strategy": "no",
        "save_strategy": "no",
        "report_to": "none",
        "logging_steps": 1,
        "activation_checkpointing": False,
        "disable_tqdm": True,
    }
    (root / "train.yaml").write_text(yaml.safe_dump(recipe))
    start = time.perf_counter()
    if train_main(["--config", str(root / "train.yaml")], prog="bench feedback (train)"):
        raise RuntimeError("training failed")
    seconds["train"] = time.perf_counter() - start
    trained = root / "train" if (root / "train" / "config.json").is_file() else policy
    start = time.perf_counter()
    generate_answers(
        trained,
        held_out,
        root / "eval.jsonl",
        GenerationOptions(max_new_tokens=settings["sample_tokens"], batch_size=settings["eval_prompts"]),
        device="cpu",
        progress=False,
    )
    seconds["evaluate"] = time.perf_counter() - start
    return {"seconds": seconds, "pairs": summary.get("pairs"), "claims": summary.get("claims")}


def round_part(root: Path, policy: Path, loaded, prompts: Path, held_out: Path, settings: dict):
    import json

    lines = prompts.read_text().splitlines()[: settings["round_prompts"]]
    small = root / "round_prompts.jsonl"
    small.write_text("\n".join(lines) + "\n")
    rounds = []
    for repeat in range(settings["round_repeats"]):
        folder = root / f"round{repeat}"
        folder.mkdir()
        # image paths in the prompts are relative to the prompts file's folder
        (folder / "prompts.jsonl").write_text(
            "".join(
                json.dumps({**json.loads(x), "image": str(prompts.parent / json.loads(x)["image"])}) + "\n"
                for x in lines
            )
        )
        rounds.append(one_round(folder, policy, loaded, folder / "prompts.jsonl", held_out, settings))
    out = []
    totals = [sum(r["seconds"].values()) for r in rounds]
    for phase in PHASES:
        shares = spread([r["seconds"][phase] / total for r, total in zip(rounds, totals, strict=True)])
        secs = statistics.median(r["seconds"][phase] for r in rounds)
        out.append(
            {
                "part": "round",
                "contender": phase,
                "batch": None,
                **shares,
                "unit": "share of the round",
                "ratio": secs / statistics.median(r["seconds"]["label"] for r in rounds),
                "note": f"{secs:.2f} s (ratio: time / label time)",
            }
        )
    return out, rounds


def run(quick: bool = False) -> dict:
    import torch

    settings = QUICK if quick else FULL
    # one thread: on a 2-core machine shared with other jobs, two spinning threads per op made a 166k-parameter
    # model 40x slower; a single thread keeps the tiny model's timings about its work, not the contention
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(settings)
    finally:
        torch.set_num_threads(threads)


def _run(settings: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="rlhfv-bench-feedback-") as tmp:
        root = Path(tmp)
        policy, loaded, rows, prompts, held_out = build_world(root / "single", settings)
        rows_out = label_part(loaded, rows, settings)
        _, split_loaded, split_rows, _, _ = build_world(root / "split", settings, single_token_yes_no=False)
        rows_out += label_part(split_loaded, split_rows, settings, part="label_split")
        rows_out += sample_part(loaded, rows, settings)
        round_rows, rounds = round_part(root, policy, loaded, prompts, held_out, settings)
    return {
        "title": TITLE,
        "date": datetime.date.today().isoformat(),
        "settings": settings,
        "rows": rows_out + round_rows,
        "rounds": rounds,
    }


def summary(payload: dict) -> list[str]:
    rows = payload["rows"]
    lines = []
    for row in rows:
        if row["part"] in ("label", "label_split") and row["contender"] == "one_forward":
            spelled = "yes/no single tokens" if row["part"] == "label" else "yes/no two tokens each"
            lines.append(
                f"labeling ({spelled}), batch {row['batch']}: one forward {row['median']:.0f} claims/s, "
                f"x{row['ratio']:.2f} the generate-based labeler"
            )
    shares = ", ".join(f"{r['contender']} {100 * r['median']:.0f}%" for r in rows if r["part"] == "round")
    lines.append(f"round time: {shares}")
    return lines


def notes(payload: dict) -> list[str]:
    s = payload["settings"]
    load = payload.get("load_before")
    busy = (
        f"The machine was shared: load average {load} before the run on {payload['machine']['cores']} cores."
        if load and payload.get("machine") and load[0] > payload["machine"]["cores"] / 2
        else "The machine was otherwise idle."
    )
    return [
        f"Date {payload['date']}. Tiny LLaVA (rlhfv.tiny_models, random weights) on CPU; {s['claims']} yes/no "
        f"questions about synthetic images; medians of {s['repeats']} repeats, min and max beside them.",
        "label: claims/s; ratio = the contender's rate / the generate-based labeler's rate at the same batch size. "
        "label: a tokenizer with yes/no as single tokens (as real VLM tokenizers); label_split: the default tiny "
        "tokenizer, which spells each in two tokens, so the one-forward labeler runs 3 forward passes per batch.",
        "Torch runs on 1 thread (a shared 2-core machine made 2 threads 40x slower on this tiny model).",
        f"sample: answers/s of transformers `generate`, {s['num_samples']} answers per prompt, up to "
        f"{s['sample_tokens']} tokens each.",
        f"round: {s['round_prompts']} prompts x {s['num_samples']} answers, {s['train_steps']} Dense DPO steps, "
        f"{s['eval_prompts']} held-out prompts; share of the round's time per phase over {s['round_repeats']} "
        "round(s) (min/max across rounds). train is `rlhfv train` from start to saved model: at 3 steps the "
        "trainer's set-up and saving dominate it.",
        busy,
    ]


def plot(payload: dict, name: str):
    from bench import common

    fig, axes = common.new_figure(ncols=3, width=15, height=4.2)
    rows = payload["rows"]
    ax = axes[0][0]
    for part_name, style in (("label", "-"), ("label_split", ":")):
        suffix = "" if part_name == "label" else " (yes/no 2 tokens)"
        for contender, label, color in (
            ("one_forward", "one forward (rlhfv)", "tab:blue"),
            ("generate", "generate + parse", "tab:orange"),
        ):
            part = [r for r in rows if r["part"] == part_name and r["contender"] == contender]
            err = [[r["median"] - r["low"] for r in part], [r["high"] - r["median"] for r in part]]
            ax.errorbar(
                [r["batch"] for r in part],
                [r["median"] for r in part],
                yerr=err,
                marker="o",
                capsize=3,
                linestyle=style,
                color=color,
                label=label + suffix,
            )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="batch size (claims per forward)",
        ylabel="claims / s",
        title="Labeling throughput",
    )
    ax.legend()
    ax = axes[0][1]
    part = [r for r in rows if r["part"] == "sample" and r["median"] is not None]
    ax.bar(
        [str(r["batch"]) for r in part],
        [r["median"] for r in part],
        yerr=[[r["median"] - r["low"] for r in part], [r["high"] - r["median"] for r in part]],
        capsize=3,
    )
    ax.set(xlabel="prompts per generate batch", ylabel="answers / s", title="Sampling throughput (transformers)")
    ax = axes[0][2]
    part = [r for r in rows if r["part"] == "round"]
    ax.bar(
        [r["contender"] for r in part],
        [100 * r["median"] for r in part],
        yerr=[[100 * (r["median"] - r["low"]) for r in part], [100 * (r["high"] - r["median"]) for r in part]],
        capsize=3,
    )
    ax.set(xlabel="phase of one round", ylabel="share of the round's time (%)", title="Where a round's time goes")
    return common.save_figure(
        fig, name, payload, bars="Points and bars: medians; error bars: min and max over repeats."
    )
