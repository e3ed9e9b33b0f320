"""`rlhfv reward` and `rlhfv rl` from the CPU recipes, shortened: the recipes parse, run and save what they say."""

import json

import pytest

from experiments.fact_rlhf_data import write_fact_rlhf_data
from rlhfv.cli import main


REWARD_RECIPE = "recipes/tiny-llava/reward_model/config_synthetic.yaml"
RL_RECIPE = "recipes/tiny-llava/rl/config_synthetic.yaml"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fact_cli") / "data"
    write_fact_rlhf_data(root, n_train=8, n_heldout=4, n_probe=1, n_rl=4)
    return root


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_reward_recipe_then_rl_recipe(data, tmp_path):
    rm = tmp_path / "rm"
    common = ["--max_steps", "2", "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4"]
    argv = ["reward", "--config", REWARD_RECIPE, "--dataset_name", str(data / "reward_train.jsonl")]
    argv += ["--eval_dataset_name", str(data / "reward_heldout.jsonl"), "--output_dir", str(rm), *common]
    assert main(argv) == 0
    for name in ("model.safetensors", "config.json", "processor_config.json", "tokenizer.json", "data_report.json"):
        assert (rm / name).is_file(), name
    settings = json.loads((rm / "fact_rlhf_reward.json").read_text())
    assert settings["facts"] == "row" and "{facts}" in settings["facts_template"]
    report = json.loads((rm / "data_report.json").read_text())
    assert report["train"]["kept"] == 8 and report["eval"]["kept"] == 4
    assert "eval_accuracy" in json.loads((rm / "eval_results.json").read_text())

    rl = tmp_path / "rl"
    argv = ["rl", "--config", RL_RECIPE, "--dataset_name", str(data / "rl_prompts.jsonl")]
    argv += ["--reward_model_path", str(rm), "--output_dir", str(rl), "--max_steps", "1"]
    argv += ["--per_device_train_batch_size", "4", "--num_generations", "2", "--max_completion_length", "8"]
    assert main(argv) == 0
    assert (rl / "model.safetensors").is_file() and (rl / "initial_policy" / "model.safetensors").is_file()


def test_plain_reward_model_with_a_template_file(data, tmp_path):
    template = tmp_path / "template.txt"
    template.write_text("Known:\n{facts}\n")
    argv = ["reward", "--config", REWARD_RECIPE, "--dataset_name", str(data / "reward_train.jsonl")]
    argv += ["--eval_strategy", "no", "--eval_dataset_name", "", "--output_dir", str(tmp_path / "plain")]
    argv += ["--max_steps", "1", "--facts", "none", "--facts_template", str(template)]
    assert main(argv) == 0
    settings = json.loads((tmp_path / "plain" / "fact_rlhf_reward.json").read_text())
    assert settings == {"facts": "none", "facts_template": "Known:\n{facts}\n"}


def test_errors_are_one_line(data, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("no slot")
    argv = ["reward", "--config", REWARD_RECIPE, "--dataset_name", str(data / "reward_train.jsonl")]
    assert main([*argv, "--facts_template", str(bad), "--output_dir", str(tmp_path / "x")]) == 1
    assert "must contain the slot {facts} exactly once" in capsys.readouterr().err
    assert main(["rl", "--config", RL_RECIPE, "--dataset_name", str(tmp_path / "missing.jsonl")]) == 1
    assert "RL prompts not found" in capsys.readouterr().err


REPO_RECIPES = sorted(
    path
    for folder in ("reward_model", "rl")
    for path in __import__("pathlib").Path("recipes").glob(f"*/{folder}/config_*.yaml")
)


@pytest.mark.parametrize("path", REPO_RECIPES, ids=str)
def test_fact_rlhf_recipes_parse_and_have_launch_lines(path):
    """Every reward-model and RL recipe parses into its configuration (no download), and its folder's README gives
    its launch line."""
    import torch
    import yaml

    from rlhfv.recipe import parse_recipe
    from rlhfv.reward.cli import dataclass_types as reward_types
    from rlhfv.reward.config import FactRewardConfig
    from rlhfv.rl.cli import dataclass_types as rl_types
    from rlhfv.rl.config import FactRLOOConfig

    is_reward = path.parent.name == "reward_model"
    cpu = [] if torch.cuda.is_available() else ["--use_cpu", "true"]
    types = reward_types() if is_reward else rl_types()
    recipe = parse_recipe(["--config", str(path), *cpu], dataclass_types=types)
    script_args, training_args, model_args = recipe.script_args, recipe.training_args, recipe.model_args
    assert isinstance(training_args, FactRewardConfig if is_reward else FactRLOOConfig)
    assert script_args.dataset_name and model_args.model_name_or_path
    keys = set(yaml.safe_load(path.read_text())) - {"env"}
    known = {f for args in (script_args, training_args, model_args) for f in vars(args)}
    assert keys <= known, keys - known
    if not is_reward:
        assert training_args.reward_model_path and training_args.beta == 0.1
    readme = (path.parent / "README.md").read_text()
    command = "reward" if is_reward else "rl"
    assert f"COMMAND={command} RECIPE={path}" in readme or f"rlhfv.cli {command} --config {path}" in readme


def test_lora_reward_model_is_saved_merged(data, tmp_path):
    """With LoRA the scalar head trains in full and the adapters are merged: the folder loads as a plain reward
    model whose language-model weights and head both moved."""
    import torch

    from rlhfv.reward.loading import build_tiny_vlm
    from rlhfv.reward.model import VisionRewardModel, load_reward_model

    out = tmp_path / "lora"
    argv = ["reward", "--config", REWARD_RECIPE, "--dataset_name", str(data / "reward_train.jsonl")]
    argv += ["--eval_dataset_name", "", "--eval_strategy", "no", "--output_dir", str(out), "--max_steps", "2"]
    argv += ["--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "q_proj", "v_proj"]
    assert main(argv) == 0
    trained = load_reward_model(str(out)).state_dict()
    assert not any("lora" in name for name in trained)
    # The same seed builds the same starting point (the recipe's seed is 42)
    initial = VisionRewardModel.from_vlm(build_tiny_vlm("llava", seed=42)[0]).state_dict()
    assert set(trained) == set(initial)
    assert not torch.equal(trained["score.weight"], initial["score.weight"])
    q_proj = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(trained[q_proj], initial[q_proj])
    k_proj = "model.language_model.layers.0.self_attn.k_proj.weight"
    assert torch.equal(trained[k_proj], initial[k_proj])  # not a LoRA target: untouched


def test_reward_and_rl_recipes_get_the_checks_of_rlhfv_train(tmp_path):
    """An unknown field or flag fails naming it and the closest field, as for `rlhfv train`."""
    from data_tools.errors import CommandError
    from rlhfv.reward.cli import main as reward_main
    from rlhfv.rl.cli import main as rl_main

    recipe = tmp_path / "typo.yaml"
    recipe.write_text("model_name_or_path: tiny:llava\nuse_cpu: true\nfacts_templte: x\n")
    with pytest.raises(CommandError, match="unknown field `facts_templte` \\(did you mean `facts_template`\\?\\)"):
        reward_main(["--config", str(recipe)], prog="rlhfv reward")
    with pytest.raises(CommandError, match="command line: unknown option `--num_generation`"):
        rl_main(["--num_generation", "4"], prog="rlhfv rl")
