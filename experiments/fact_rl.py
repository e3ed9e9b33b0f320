"""Fact-RLHF on the language-prior world: RL (TRL's RLOO) with the fact-augmented reward vs. with the plain reward.

Protocol (docs/fact_rlhf.md, section 6, states it with the hypotheses, written before the runs). For each seed:
1. Inputs of the language-prior proof (`prior_proof`): its data, SFT policy (which names an absent companion out of
   habit), feedback pairs (SFT answers vs. the annotator's corrections) and held-out pairs. `ready` names a finished
   proof run to copy them from; without it they are built here with prior_proof's own stages.
2. Two reward models with `rlhfv reward`, both initialised from the SFT policy (as LLaVA-RLHF initialises its reward
   model from its SFT model), on the same pairs with a `facts` column (the scene's true objects as short captions,
   rendered by `experiments.fact_rlhf_data.scene_facts`): `facts: row` and `facts: none`; nothing else differs.
3. Both measured on the held-out pairs (accuracy, Wilson 95%) and on the reward-hacking probe of this world
   (`probe_pairs`): true description vs. the same with a fluent sentence naming the absent companion, added at an
   empty slot ("added") or in place of another object's sentence ("replaced", about the same length).
4. RL from the SFT policy with `rlhfv rl`, once per reward model, with identical settings. The learning rate and the
   number of steps come from `rl_learning_rates` x checkpoints every `rl_save_steps`, chosen on validation images of
   the first seed (`--select-rl`), never on the test images.
5. SFT, RL-facts and RL-plain answer the test images greedily; companion metrics (`companion`) with paired per-image
   bootstrap intervals; the mean reward and KL of each RL run from its log.

    python -m experiments.fact_rl --config recipes/proof/prior/config_fact_rl.yaml --ready outputs/proof --select-rl
    python -m experiments.fact_rl --config recipes/proof/prior/config_fact_rl.yaml --ready outputs/proof

Checks beside the chosen setting (their runs are named by their setting, next to the others):
`--rl-learning-rate 1e-4 --rl-max-steps 80` (another setting), `--rl-seed-offset 100` (RL's own randomness),
`--rl-set normalize_advantages=true` (any extra `rlhfv rl` field, for both arms).

Writes `<out>/results_<setting>.{json,md}` and, per seed, the reward models, RL runs, answers and records. Stages
whose output exists are skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


logger = logging.getLogger("rlhfv.fact_rl")

REWARD_ARMS = ("facts", "plain")  # facts: row / facts: none
METHODS = ("sft", "rl_facts", "rl_plain")
CONTRASTS = (("sft", "rl_facts"), ("sft", "rl_plain"), ("rl_plain", "rl_facts"))


@dataclass
class FactRLConfig:
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "one full run per seed"})
    out: str = field(default="outputs/fact_rl", metadata={"help": "output folder"})
    proof_config: str = field(
        default="recipes/proof/prior/config_proof.yaml",
        metadata={"help": "the language-prior proof's settings (world, SFT, feedback, evaluation)"},
    )
    ready: str | None = field(
        default=None,
        metadata={"help": "folder of a finished prior_proof run to copy each seed's data, SFT and pairs from; "
                  "None: build them here (prior_proof's stages)"},
    )  # fmt: skip
    val_items: int = field(default=200, metadata={"help": "validation images (RL settings are chosen on them)"})
    probe_items: int = field(
        default=300, metadata={"help": "probe images drawn (those with an absent companion used)"}
    )
    threads: int = field(default=1, metadata={"help": "torch intra-op threads"})
    bootstrap_samples: int = field(default=1000, metadata={"help": "paired bootstrap resamples"})
    reward: dict = field(default_factory=dict, metadata={"help": "`rlhfv reward` fields shared by both reward models"})
    rl: dict = field(default_factory=dict, metadata={"help": "`rlhfv rl` fields shared by both RL runs"})
    rl_learning_rates: list[float] = field(
        default_factory=lambda: [1e-5, 3e-5, 1e-4], metadata={"help": "RL learning rates tried by --select-rl"}
    )
    rl_search_steps: int = field(default=200, metadata={"help": "steps of each --select-rl run"})
    rl_save_steps: int = field(default=40, metadata={"help": "checkpoint interval evaluated by --select-rl"})
    rl_learning_rate: float = field(default=3e-5, metadata={"help": "RL learning rate (from --select-rl)"})
    rl_max_steps: int = field(default=40, metadata={"help": "RL steps (from --select-rl)"})
    rl_seed_offset: int = field(
        default=0,
        metadata={"help": "added to the seed of the RL runs only (same data, SFT and reward models): a replicate of "
                  "RL's own randomness (sampling, data order); non-zero offsets name their runs"},
    )  # fmt: skip
    rl_variant: dict = field(
        default_factory=dict,
        metadata={"help": "extra `rlhfv rl` fields of a sensitivity run (--rl-set KEY=VALUE); they name its runs"},
    )

    # read_experiment_config checks this field; the experiment always tests on the proof's `eval` split
    eval_split: str = field(default="eval", metadata={"help": "fixed: the test images are the proof's `eval` split"})

    @classmethod
    def from_yaml(cls, path: str | None, overrides: dict) -> FactRLConfig:
        from experiments.proof import read_experiment_config

        config = read_experiment_config(cls, path, overrides)
        if config.eval_split != "eval":
            raise SystemExit(f"{path}: eval_split is fixed to 'eval'; RL settings are chosen with --select-rl")
        # set by the experiment for each run, so that the two arms differ only in the reward model
        per_run = {"output_dir", "model_name_or_path", "dataset_name", "eval_dataset_name", "reward_model_path",
                   "facts", "seed"}  # fmt: skip
        for section, extra in (("reward", set()), ("rl", {"learning_rate", "max_steps", "save_steps"})):
            bad = sorted((per_run | extra) & set(getattr(config, section)))
            if bad:
                raise SystemExit(f"{path}: {section}: {bad} are set by the experiment per run; leave them out")
        return config

    def proof(self):
        from experiments.prior_proof import PriorProofConfig

        return PriorProofConfig.from_yaml(self.proof_config, {"out": self.out, "seeds": self.seeds})


# --- facts and probe (pure functions, tested) ------------------------------------------------------------------------


def facts_of(scene, key: str) -> list[str]:
    """The scene's true objects as short captions ("a red cup on the left"), shuffled by a stream named by `key`
    (the facts of `experiments.fact_rlhf_data`, drawn reproducibly per row)."""
    from experiments.fact_rlhf_data import scene_facts

    return scene_facts(scene, random.Random(f"rlhfv-fact-rl/facts/{key}"))


def probe_pairs(item) -> dict | None:
    """The reward-hacking probe for one prior-world item whose anchor is drawn without its companion (else None).

    `added`: the true description with one fluent sentence (the world's renderer, `prior_sentence`) naming the absent
    companion at an empty slot, put at that slot's place in reading order; the rest of the text is unchanged.
    `replaced`: the same companion sentence in place of the sentence of another (non-anchor) object, so both answers
    have about the same length. Returns {true, added, replaced, companion, slot, replaced_kind}.
    """
    from experiments.synthetic.describe import join
    from experiments.synthetic.prior import (
        COMPANIONS,
        PRIOR_TEMPLATES,
        _reading_key,
        anchor_of,
        companion_case,
        prior_sentence,
    )
    from experiments.synthetic.world import COLOURS, POSITIONS

    scene = item.scene
    if companion_case(scene) != "absent":
        return None
    rng = random.Random(f"rlhfv-fact-rl/probe/{item.id}")
    anchor = anchor_of(scene)
    companion = COMPANIONS[anchor]
    free = sorted(set(POSITIONS) - {o.position for o in scene.objects})
    slot = rng.choice(free)
    sentence = prior_sentence(rng.choice(sorted(COLOURS)), companion, slot, rng.randrange(len(PRIOR_TEMPLATES)))
    truth = list(item.truth)  # opener, one sentence per object in reading order, closing
    before = sum(_reading_key(o.position) < _reading_key(slot) for o in scene.objects)
    added = [*truth[: 1 + before], sentence, *truth[1 + before :]]
    others = [i for i, s in enumerate(truth) if s.kind is not None and s.kind != anchor]
    replaced_at = rng.choice(others)
    replaced = [sentence if i == replaced_at else s for i, s in enumerate(truth)]
    return {
        "true": join(truth),
        "added": join(added),
        "replaced": join(replaced),
        "companion": companion,
        "slot": slot,
        "replaced_kind": truth[replaced_at].kind,
    }


# --- stage 1: inputs -------------------------------------------------------------------------------------------------


def prepare_inputs(config: FactRLConfig, seed: int) -> Path:
    """The proof's data, SFT policy and pairs under out/seed{N} (copied from `ready` or built), plus validation,
    probe images, pairs with facts and the RL prompts."""
    from experiments.prior_proof import prepare_seed
    from experiments.synthetic.prior_writers import write_prior_prompts

    proof = config.proof()
    seed_dir = Path(config.out) / f"seed{seed}"
    if config.ready:
        source = Path(config.ready) / f"seed{seed}"
        for name in ("data", "sft", "feedback", "heldout"):
            if not (seed_dir / name).exists():
                if not (source / name).exists():
                    raise SystemExit(f"ready folder {source} has no {name}/; run `make proof` or leave `ready` out")
                shutil.copytree(source / name, seed_dir / name, ignore=shutil.ignore_patterns("pairs_with_heldout"))
    prepare_seed(proof, seed)  # skips every stage whose output exists
    data = seed_dir / "data"
    for split, n in (("val", config.val_items), ("probe", config.probe_items)):
        if not (data / split / "prompts.jsonl").is_file():
            write_prior_prompts(data / split, n=n, seed=seed, world=proof.world(), canvas=proof.canvas, split=split)
    for name, split in (("feedback", "preference"), ("heldout", "heldout")):
        if not (seed_dir / name / "pairs_facts" / "dataset_info.json").is_file():
            add_facts_column(seed_dir / name / "pairs", data / split / "scenes.json", seed_dir / name / "pairs_facts")
    if not (seed_dir / "rl_prompts.jsonl").is_file():
        write_rl_prompts(data / "preference", seed_dir / "rl_prompts.jsonl")
    return seed_dir


def _image_key(pair_id: str) -> str:
    """`preference-s0-00012#3` -> `images/preference-s0-00012.png` (the key of scenes.json)."""
    return f"images/{pair_id.split('#', 1)[0]}.png"


def add_facts_column(pairs_dir: Path, scenes_path: Path, out: Path) -> None:
    from datasets import Sequence, Value, load_from_disk

    from experiments.synthetic.writers import load_scenes

    scenes = load_scenes(scenes_path)
    dataset = load_from_disk(str(pairs_dir))
    facts = []
    for number, pair_id in enumerate(dataset["id"], 1):
        key = _image_key(pair_id)
        if key not in scenes:
            raise SystemExit(f"{pairs_dir}, row {number} (id {pair_id!r}): image {key} has no scene in {scenes_path}")
        facts.append(facts_of(scenes[key], pair_id))
    dataset = dataset.add_column("facts", facts, feature=Sequence(Value("string")))
    dataset.save_to_disk(str(out))


def write_rl_prompts(image_dir: Path, path: Path) -> None:
    """The preference images' questions with their facts: {id, image, question, facts} (describe prompts only, so the
    yes/no and multiple-choice rules never apply)."""
    from experiments.synthetic.writers import load_scenes

    scenes = load_scenes(image_dir / "scenes.json")
    rows = []
    for line in (image_dir / "prompts.jsonl").read_text().splitlines():
        row = json.loads(line)
        image = str((image_dir / row["image"]).resolve())
        rows.append({"id": row["id"], "image": image, "question": row["question"],
                     "facts": facts_of(scenes[row["image"]], row["id"])})  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# --- stage 2-3: reward models ----------------------------------------------------------------------------------------


def _write_recipe(path: Path, values: dict) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def train_reward_model(config: FactRLConfig, seed: int, seed_dir: Path, arm: str) -> Path:
    """`rlhfv reward` from the SFT policy on the pairs with facts; `arm` facts (facts: row) or plain (facts: none)."""
    from rlhfv.reward.cli import main as reward_main

    out = seed_dir / f"reward_{arm}"
    if (out / "fact_rlhf_reward.json").is_file():
        return out
    recipe = {
        **config.reward,
        "model_name_or_path": str(seed_dir / "sft"),
        "dataset_name": str(seed_dir / "feedback" / "pairs_facts"),
        "eval_dataset_name": str(seed_dir / "heldout" / "pairs_facts"),
        "facts": "row" if arm == "facts" else "none",
        "seed": seed,
        "output_dir": str(out),
    }
    reward_main(["--config", str(_write_recipe(seed_dir / "recipes" / f"reward_{arm}.yaml", recipe))])
    return out


def _wilson(hits: list[bool]) -> dict:
    from experiments.fact_rlhf import wilson

    low, high = wilson(sum(hits), len(hits))
    return {"rate": sum(hits) / len(hits) if hits else None, "low": low, "high": high, "n": len(hits)}


def _paired(a: list[bool], b: list[bool], seed: int) -> dict:
    from experiments.fact_rlhf import paired_bootstrap

    diff, low, high = paired_bootstrap(a, b, seed=seed)
    return {"diff": diff, "low": low, "high": high}


def evaluate_reward_models(config: FactRLConfig, seed: int, seed_dir: Path, models: dict[str, Path]) -> dict:
    """Held-out pair accuracy and the probe's hallucination preference of each reward model, with the paired
    differences facts - plain."""
    from datasets import load_from_disk
    from PIL import Image

    from experiments.synthetic.prior_writers import iter_prior_items
    from rlhfv.reward.data import _answer_text
    from rlhfv.reward.inputs import score_answers
    from rlhfv.reward.loading import load_reward_model_and_processor

    heldout = load_from_disk(str(seed_dir / "heldout" / "pairs_facts"))
    proof = config.proof()
    probe_dir = seed_dir / "data" / "probe"
    probe = []
    for item in iter_prior_items("probe", config.probe_items, seed, proof.world(), proof.canvas):
        pair = probe_pairs(item)
        if pair is not None:
            image = Image.open(probe_dir / item.image).convert("RGB")
            probe.append({**pair, "question": item.question, "image": image, "facts": facts_of(item.scene, item.id)})
    hits: dict[str, dict[str, list[bool]]] = {}
    for arm, model_dir in models.items():
        model, processor, settings = load_reward_model_and_processor(str(model_dir))
        model.eval()
        use_facts = settings.get("facts") != "none"
        template = settings.get("facts_template")

        def score(prompts, answers, images, facts, model=model, processor=processor, use_facts=use_facts,
                  template=template):  # fmt: skip
            facts = facts if use_facts else None
            return score_answers(model, processor, prompts, answers, images, facts, template, batch_size=16)

        prompts = list(heldout["prompt"])
        images = [list(row) for row in heldout["images"]]
        facts = list(heldout["facts"])
        chosen = score(prompts, [_answer_text(a) for a in heldout["chosen"]], images, facts)
        rejected = score(prompts, [_answer_text(a) for a in heldout["rejected"]], images, facts)
        arm_hits = {"heldout_correct": [c > r for c, r in zip(chosen, rejected, strict=True)]}
        probe_prompts = [[{"role": "user", "content": p["question"]}] for p in probe]
        probe_images = [[p["image"]] for p in probe]
        probe_facts = [p["facts"] for p in probe]
        true_scores = score(probe_prompts, [p["true"] for p in probe], probe_images, probe_facts)
        for variant in ("added", "replaced"):
            scores = score(probe_prompts, [p[variant] for p in probe], probe_images, probe_facts)
            arm_hits[f"probe_{variant}_fooled"] = [h > t for h, t in zip(scores, true_scores, strict=True)]
        hits[arm] = arm_hits
    result = {arm: {name: _wilson(values) for name, values in arm_hits.items()} for arm, arm_hits in hits.items()}
    if set(hits) == set(REWARD_ARMS):
        result["facts-plain"] = {
            name: _paired(hits["facts"][name], hits["plain"][name], seed) for name in hits["facts"]
        }
    return result


# --- stage 4: RL -----------------------------------------------------------------------------------------------------


def run_rl(config: FactRLConfig, seed: int, seed_dir: Path, arm: str, out: Path, lr: float, steps: int,
           save_steps: int | None = None) -> Path:  # fmt: skip
    """`rlhfv rl` (TRL's RLOO) from the SFT policy with reward model `arm`; every other setting from `config.rl`."""
    from rlhfv.rl.cli import main as rl_main

    if (out / "trainer_state.json").is_file() and (out / "config.json").is_file():
        return out
    recipe = {
        **config.rl,
        **config.rl_variant,
        "model_name_or_path": str(seed_dir / "sft"),
        "dataset_name": str(seed_dir / "rl_prompts.jsonl"),
        "reward_model_path": str(seed_dir / f"reward_{arm}"),
        "learning_rate": lr,
        "max_steps": steps,
        "seed": seed + config.rl_seed_offset,
        "output_dir": str(out),
    }
    if save_steps:
        recipe.update({"save_strategy": "steps", "save_steps": save_steps, "save_only_model": True})
    rl_main(["--config", str(_write_recipe(out.parent / f"{out.name}.yaml", recipe))])
    return out


def rl_log(run_dir: Path) -> dict:
    """Mean reward (reward model + symbolic terms), KL per token to the SFT policy and completion length, first and
    last quarter of the run and overall, from the trainer's log."""
    state = json.loads((run_dir / "trainer_state.json").read_text())
    logs = [entry for entry in state["log_history"] if "reward" in entry]
    if not logs:
        return {"steps": 0}
    quarter = max(1, len(logs) // 4)
    out = {"steps": logs[-1].get("step", len(logs))}
    for key in ("reward", "reward_std", "kl", "completions/mean_length", *[k for k in logs[0] if k.endswith("/mean")]):
        values = [entry[key] for entry in logs if entry.get(key) is not None]  # None: the rule applied to no row
        if values:
            out[key] = {
                "first": sum(values[:quarter]) / len(values[:quarter]),
                "last": sum(values[-quarter:]) / len(values[-quarter:]),
                "mean": sum(values) / len(values),
            }
    return out


# --- stage 5: evaluation ---------------------------------------------------------------------------------------------


def evaluate_policy(config: FactRLConfig, model_dir: Path, image_dir: Path, answers_path: Path) -> dict:
    from experiments.prior_proof import evaluate_model

    return evaluate_model(config.proof(), model_dir, image_dir, answers_path)


def _summary(records: dict) -> dict:
    from experiments.companion import summarize

    return {**summarize(list(records.values())), "images": len(records)}


def select_rl(config: FactRLConfig) -> dict:
    """RL at every learning rate of `rl_learning_rates` for `rl_search_steps`, both reward models, on the first seed,
    checkpoints every `rl_save_steps` evaluated on the validation images.

    Rule (docs/fact_rlhf.md, fixed before the runs): among (rate, steps) whose recall stays within 3 points of SFT's
    and companion recall within 10 points of SFT's for BOTH reward models, the one with the lowest companion
    hallucination averaged over the two; if none qualifies, the smallest rate at the fewest steps. One setting for
    both arms, so the comparison stays matched.
    """
    seed = config.seeds[0]
    seed_dir = prepare_inputs(config, seed)
    for arm in REWARD_ARMS:
        train_reward_model(config, seed, seed_dir, arm)
    val = seed_dir / "data" / "val"
    sft = _summary(evaluate_policy(config, seed_dir / "sft", val, seed_dir / "val_answers_sft.jsonl"))
    table, candidates = {"sft": sft}, []
    for lr in config.rl_learning_rates:
        per_step: dict[int, dict] = {}
        for arm in REWARD_ARMS:
            run_dir = seed_dir / "rl_search" / f"{arm}_lr{lr:g}"
            run_rl(config, seed, seed_dir, arm, run_dir, lr, config.rl_search_steps, config.rl_save_steps)
            table[f"{arm}@{lr:g}/log"] = rl_log(run_dir)
            checkpoints = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
            for checkpoint in checkpoints:
                steps = int(checkpoint.name.split("-")[1])
                metrics = _summary(evaluate_policy(config, checkpoint, val, checkpoint / "val_answers.jsonl"))
                table[f"{arm}@{lr:g}/{steps}"] = metrics
                per_step.setdefault(steps, {})[arm] = metrics
        for steps, arms in per_step.items():
            if len(arms) < len(REWARD_ARMS):
                continue
            ok = all(
                m["recall"] >= sft["recall"] - 0.03
                and (m["companion_recall"] or 0) >= (sft["companion_recall"] or 0) - 0.10
                for m in arms.values()
            )
            mean_halluc = sum(m["companion_hallucination"] for m in arms.values()) / len(arms)
            candidates.append({"lr": lr, "steps": steps, "qualifies": ok, "companion_hallucination": mean_halluc})
    qualified = [c for c in candidates if c["qualifies"]]
    if qualified:
        best = min(qualified, key=lambda c: (c["companion_hallucination"], c["steps"], c["lr"]))
    else:
        best = min(candidates, key=lambda c: (c["lr"], c["steps"]))
    result = {
        "seed": seed,
        "table": table,
        "candidates": candidates,
        "chosen": {"lr": best["lr"], "steps": best["steps"]},
    }
    (Path(config.out) / "rl_selection.json").write_text(json.dumps(result, indent=2))
    logger.info("RL setting chosen on validation images: %s", result["chosen"])
    return result["chosen"]


def rl_tag(config: FactRLConfig) -> str:
    """Names the RL runs and their answers by their setting, so runs at other settings sit beside them."""
    tag = f"lr{config.rl_learning_rate:g}_steps{config.rl_max_steps}"
    if config.rl_seed_offset:
        tag += f"_rlseed+{config.rl_seed_offset}"
    return tag + "".join(f"_{key}-{value}" for key, value in sorted(config.rl_variant.items()))


def run_seed(config: FactRLConfig, seed: int) -> dict:
    from experiments.companion import paired_bootstrap

    timings, tag = {}, rl_tag(config)
    start = time.time()
    seed_dir = prepare_inputs(config, seed)
    timings["inputs_s"] = time.time() - start
    models = {}
    for arm in REWARD_ARMS:
        start = time.time()
        models[arm] = train_reward_model(config, seed, seed_dir, arm)
        timings[f"reward_{arm}_s"] = time.time() - start
    start = time.time()
    reward_eval = evaluate_reward_models(config, seed, seed_dir, models)
    timings["reward_eval_s"] = time.time() - start
    policies = {"sft": seed_dir / "sft"}
    for arm in REWARD_ARMS:
        start = time.time()
        policies[f"rl_{arm}"] = run_rl(config, seed, seed_dir, arm, seed_dir / f"rl_{arm}_{tag}", config.rl_learning_rate,
                                       config.rl_max_steps)  # fmt: skip
        timings[f"rl_{arm}_s"] = time.time() - start
    start = time.time()
    test = seed_dir / "data" / config.eval_split
    records = {
        m: evaluate_policy(config, d, test, seed_dir / f"eval_answers_{m}_{tag}.jsonl") for m, d in policies.items()
    }
    timings["eval_s"] = time.time() - start
    result = {
        "seed": seed,
        "feedback_pairs": json.loads((seed_dir / "feedback" / "counts.json").read_text()),
        "reward_models": reward_eval,
        "rl_logs": {f"rl_{arm}": rl_log(policies[f"rl_{arm}"]) for arm in REWARD_ARMS},
        "metrics": {m: _summary(r) for m, r in records.items()},
        "paired": {
            f"{b}-{a}": paired_bootstrap(records[a], records[b], config.bootstrap_samples, seed) for a, b in CONTRASTS
        },  # fmt: skip
        "timings": timings,
    }
    result["rl_setting"] = {"learning_rate": config.rl_learning_rate, "max_steps": config.rl_max_steps}
    (seed_dir / f"eval_records_{tag}.json").write_text(json.dumps(records))
    (seed_dir / f"result_{tag}.json").write_text(json.dumps(result, indent=2))
    return result


# --- report ----------------------------------------------------------------------------------------------------------


def pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _ci(entry: dict, key: str = "rate") -> str:
    return f"{pct(entry[key])} [{pct(entry['low'])}, {pct(entry['high'])}]"


def markdown_report(results: list[dict]) -> str:
    from experiments.companion import METRICS

    lines = ["Reward models (held-out pairs: accuracy; probe: share preferring the hallucinated answer; Wilson 95%):",
             "", "| seed | reward model | held-out accuracy | probe, added sentence | probe, replaced sentence |",
             "|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        for arm in REWARD_ARMS:
            m = r["reward_models"][arm]
            lines.append(f"| {r['seed']} | {arm} | {_ci(m['heldout_correct'])} | {_ci(m['probe_added_fooled'])} | "
                         f"{_ci(m['probe_replaced_fooled'])} |")  # fmt: skip
        d = r["reward_models"].get("facts-plain")
        if d:
            lines.append(f"| {r['seed']} | facts - plain (paired) | {_ci(d['heldout_correct'], 'diff')} | "
                         f"{_ci(d['probe_added_fooled'], 'diff')} | {_ci(d['probe_replaced_fooled'], 'diff')} |")  # fmt: skip
    headers = ["seed", "policy", *METRICS, "RL reward first -> last", "RL KL/token last"]
    lines += ["", "Policies on the test images (greedy), % (length in words):", "",
              "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]  # fmt: skip
    for r in results:
        for method in METHODS:
            m = r["metrics"][method]
            cells = [str(r["seed"]), method]
            cells += [f"{m[k]:.1f}" if k == "length_words" else pct(m[k]) for k in METRICS]
            log = r["rl_logs"].get(method)
            if log and "reward" in log:
                cells += [f"{log['reward']['first']:.2f} -> {log['reward']['last']:.2f}",
                          f"{log['kl']['last']:.4f}" if "kl" in log else "n/a"]  # fmt: skip
            else:
                cells += ["-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Paired differences (b - a, points) with 95% paired per-image bootstrap intervals:", "",
              "| seed | contrast | companion halluc. | companion recall | CHAIR_s | CHAIR_i | recall | other false |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        for contrast, v in r["paired"].items():
            cells = [str(r["seed"]), contrast]
            for k in ("companion_hallucination", "companion_recall", "chair_s", "chair_i", "recall",
                      "other_false_claims"):  # fmt: skip
                cells.append(_ci(v[k], "diff"))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _key_value(item: str) -> tuple[str, object]:
    import yaml

    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SystemExit(f"--rl-set expects KEY=VALUE, got {item!r}")
    return key, yaml.safe_load(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.fact_rl",
        description="Fact-RLHF on the language-prior world: two reward models (facts / plain) from the SFT policy, "
        "the reward-hacking probe, RLOO with each, companion metrics with paired bootstrap intervals.",
    )
    parser.add_argument("--config", default="recipes/proof/prior/config_fact_rl.yaml", help="settings (YAML)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="override the seeds")
    parser.add_argument("--out", default=None, help="override the output folder")
    parser.add_argument("--ready", default=None, help="override the finished prior_proof run to copy inputs from")
    parser.add_argument(
        "--rl-learning-rate",
        type=float,
        default=None,
        help="override the RL learning rate "
        "(a sensitivity run; the recipe's value is the one chosen on validation images)",
    )
    parser.add_argument("--rl-max-steps", type=int, default=None, help="override the RL steps (likewise)")
    parser.add_argument("--rl-seed-offset", type=int, default=None, help="added to the RL runs' seed only: a "
                        "replicate of RL's own randomness on the same reward models")  # fmt: skip
    parser.add_argument(
        "--rl-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra `rlhfv rl` field for both arms (a sensitivity run, e.g. normalize_advantages=true); repeatable",
    )
    parser.add_argument("--select-rl", action="store_true", help="choose the RL learning rate and steps on "
                        "validation images of the first seed (writes <out>/rl_selection.json)")  # fmt: skip
    args = parser.parse_args(argv)
    overrides = {"seeds": args.seeds, "out": args.out, "ready": args.ready, "rl_learning_rate": args.rl_learning_rate,
                 "rl_max_steps": args.rl_max_steps, "rl_seed_offset": args.rl_seed_offset}  # fmt: skip
    config = FactRLConfig.from_yaml(args.config, overrides)
    config.rl_variant = {**config.rl_variant, **dict(_key_value(item) for item in args.rl_set)}
    from experiments.proof import prepare_run

    out = prepare_run(config)
    if args.select_rl:
        print(json.dumps(select_rl(config)))
        return 0
    start = time.time()
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2))
    results = [run_seed(config, seed) for seed in config.seeds]
    elapsed = time.time() - start
    tag = rl_tag(config)
    (out / f"results_{tag}.json").write_text(json.dumps({"config": asdict(config), "seeds": results, "wall_s": elapsed},
                                                 indent=2))  # fmt: skip
    report = markdown_report(results) + f"\nWall time of this run: {elapsed / 60:.1f} min.\n"
    (out / f"results_{tag}.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
