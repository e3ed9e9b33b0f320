"""`rlhfv iterate`: two rounds end to end on a tiny self-labeling LLaVA; each round starts from the previous round's
pick as policy AND reference (first DPO loss = ln 2); a stopped run resumes without redoing finished rounds."""

import json
import math

import pytest
import yaml

from rlhfv.cli import main as rlhfv_main


@pytest.fixture(scope="module")
def policy_and_prompts(tmp_path_factory):
    import torch

    from experiments.synthetic import write_prompts
    from rlhfv.tiny_models import build_llava, build_tokenizer

    root = tmp_path_factory.mktemp("iterate")
    model, processor = build_llava(build_tokenizer(), seed=3)
    model.config.text_config.initializer_range = 0.3  # yes/no answers that depend on the question (see pipeline test)
    torch.manual_seed(3)
    model = type(model)(model.config)
    model.save_pretrained(root / "policy")
    processor.save_pretrained(root / "policy")
    return root / "policy", write_prompts(root / "prompts", n=4, seed=0)


def write_recipe(path, policy, prompts, out, rounds):
    recipe = {
        "rounds": rounds, "out": str(out), "seed": 0, "initial_policy": str(policy),
        "feedback": {"prompts": str(prompts), "num_samples": 4, "max_new_tokens": 12, "labeler": "self",
                     "min_answer_probability": 0.0, "on_error": "skip", "progress": False, "device": "cpu"},
        "train": {"gamma": 5.0, "beta": 0.1, "learning_rate": 1.0e-3, "per_device_train_batch_size": 2,
                  "max_steps": 2, "max_length": 256, "use_cpu": True, "bf16": False, "eval_strategy": "no",
                  "save_strategy": "no", "report_to": "none", "logging_steps": 1, "activation_checkpointing": False},
        "evaluation": {"kind": "none"},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_two_rounds_move_the_policy_and_the_reference_and_resume(policy_and_prompts, tmp_path, monkeypatch):
    from rlhfv.feedback import pipeline

    policy, prompts = policy_and_prompts
    out = tmp_path / "iter"
    recipe = write_recipe(tmp_path / "recipe.yaml", policy, prompts, out, rounds=1)
    assert rlhfv_main(["iterate", "--config", str(recipe)]) == 0
    assert (out / "round_1" / "selected.json").is_file() and not (out / "round_2").exists()

    calls = []
    real = pipeline.run_feedback
    monkeypatch.setattr(pipeline, "run_feedback", lambda config, *a: calls.append(config.out) or real(config, *a))
    assert rlhfv_main(["iterate", "--config", str(recipe), "--rounds", "2"]) == 0
    assert calls == [str(out / "round_2" / "feedback")]  # round 1 was not redone

    rows = json.loads((out / "rounds.json").read_text())
    assert [row["round"] for row in rows] == [0, 1, 2]
    assert rows[1]["policy"] == str(out / "round_1" / "train") and rows[1]["pairs"] > 0
    # round 2 samples from and trains on top of round 1's model, which is also its reference
    round2 = yaml.safe_load((out / "round_2" / "train_recipe.yaml").read_text())
    assert round2["model_name_or_path"] == str(out / "round_1" / "train")
    feedback_policy = json.loads((out / "round_2" / "feedback" / "summary.json").read_text())
    assert feedback_policy["answers"] == 4 * 4
    for k in (1, 2):
        state = json.loads((out / f"round_{k}" / "train" / "trainer_state.json").read_text())
        losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
        # at the first step the policy IS the reference: every reward is 0 and the loss is ln 2
        assert losses[0] == pytest.approx(math.log(2), abs=1e-4)
    # the two rounds' models differ (round 2 trained on)
    import torch
    from safetensors.torch import load_file

    w1 = load_file(str(out / "round_1" / "train" / "model.safetensors"))
    w2 = load_file(str(out / "round_2" / "train" / "model.safetensors"))
    assert any(not torch.equal(w1[name], w2[name]) for name in w1)
    table = (out / "rounds.md").read_text()
    assert table.startswith("| round | pairs |") and len(table.strip().splitlines()) == 2 + 3


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
ITERATE_RECIPES = sorted(REPO.glob("recipes/**/rlaif_v/iterate*.yaml"))


def test_the_rlaif_v_recipes_exist():
    names = {str(p.relative_to(REPO / "recipes")) for p in ITERATE_RECIPES}
    assert names >= {"synthetic/rlaif_v/iterate.yaml", "llava-1.5-7b/rlaif_v/iterate_lora.yaml",
                     "qwen2.5-vl-7b/rlaif_v/iterate_lora.yaml"}  # fmt: skip


@pytest.mark.parametrize("path", ITERATE_RECIPES, ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_iterate_recipe_parses_its_feedback_and_train_blocks(path, tmp_path):
    import torch

    from rlhfv.feedback.config import FeedbackConfig
    from rlhfv.iterate import IterateConfig
    from rlhfv.train import parse_recipe

    config = IterateConfig.from_yaml(str(path), {})
    assert config.rounds >= 2
    # what `rlhfv iterate` fills in for the synthetic world: its prompts and scenes
    feedback = {"prompts": "p.jsonl", "truth_scenes": "scenes.json", **config.feedback, "policy": "m", "out": "o"}
    FeedbackConfig(**feedback)  # every key known, every value valid
    train = tmp_path / "train.yaml"
    train.write_text(yaml.safe_dump({**config.train, "model_name_or_path": "m", "dataset_name": "d",
                                     "output_dir": str(tmp_path / "out")}))  # fmt: skip
    cpu = [] if torch.cuda.is_available() else ["--use_cpu", "true"]
    recipe = parse_recipe(["--config", str(train), *cpu])
    assert recipe.training_args.gamma == config.train["gamma"]
    assert path.name in (path.parent / "README.md").read_text()


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_lora_rounds_merge_the_adapter_into_the_next_policy(policy_and_prompts, tmp_path):
    import torch
    from safetensors.torch import load_file

    policy, prompts = policy_and_prompts
    out = tmp_path / "lora"
    recipe = write_recipe(tmp_path / "recipe.yaml", policy, prompts, out, rounds=2)
    values = yaml.safe_load(recipe.read_text())
    values["train"].update(use_peft=True, lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"])
    recipe.write_text(yaml.safe_dump(values))
    assert rlhfv_main(["iterate", "--config", str(recipe)]) == 0
    merged = out / "round_1" / "merged"
    assert (out / "round_1" / "train" / "adapter_config.json").is_file()
    assert yaml.safe_load((out / "round_2" / "train_recipe.yaml").read_text())["model_name_or_path"] == str(merged)
    # the merged weights are the base plus the trained LoRA update: they differ from the base where LoRA sits
    base, after = load_file(str(policy / "model.safetensors")), load_file(str(merged / "model.safetensors"))
    changed = {name for name in base if not torch.equal(base[name], after[name])}
    assert changed and all("q_proj" in name or "v_proj" in name for name in changed)
