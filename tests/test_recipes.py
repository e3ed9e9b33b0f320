"""Every recipe parses into its configuration without downloading anything; bad recipes fail naming the field."""

import re
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
# recipes/proof/ holds the settings of the synthetic proof run, whose script fills in the data itself;
# reward_model/ and rl/ recipes are Fact-RLHF's (`rlhfv reward`, `rlhfv rl`), checked in tests/test_reward_cli.py
RECIPES = sorted(
    path for path in REPO.glob("recipes/**/config_*.yaml") if not {"proof", "reward_model", "rl"} & set(path.parts)
)
ACCELERATE_CONFIGS = sorted(REPO.glob("recipes/accelerate_configs/*.yaml"))


def parse(path, *overrides):
    import torch

    from rlhfv.train import parse_recipe

    # bf16 recipes are for GPUs; transformers refuses bf16 on a CPU-only machine unless the run is put on the CPU
    cpu = [] if torch.cuda.is_available() else ["--use_cpu", "true"]
    return parse_recipe(["--config", str(path), *cpu, *overrides])


def global_batch(args, processes):
    return args.per_device_train_batch_size * args.gradient_accumulation_steps * processes


def test_the_expected_recipes_exist():
    names = {str(path.relative_to(REPO / "recipes")) for path in RECIPES}
    expected = {
        "demo/config_demo.yaml",
        "llava-1.5-7b/dense_dpo/config_full.yaml",
        "llava-1.5-7b/dense_dpo/config_lora.yaml",
        "llava-1.5-7b/dense_dpo/config_public_2024.yaml",
        "qwen2.5-vl-7b/dense_dpo/config_full.yaml",
        "qwen2.5-vl-7b/dense_dpo/config_lora.yaml",
        "qwen2.5-7b-instruct/dense_dpo/config_lora.yaml",
    }
    assert expected <= names
    assert {path.stem for path in ACCELERATE_CONFIGS} >= {"single_gpu", "ddp", "zero2", "zero3", "fsdp"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: str(path.relative_to(REPO / "recipes")))
def test_recipe_parses_and_builds_its_configuration(path):
    from trl import ModelConfig, get_peft_config, get_quantization_config

    from rlhfv.config import DenseDPOConfig
    from rlhfv.script_args import DenseDPOScriptArguments

    recipe = parse(path)
    assert isinstance(recipe.training_args, DenseDPOConfig)
    assert isinstance(recipe.script_args, DenseDPOScriptArguments)
    assert isinstance(recipe.model_args, ModelConfig)
    assert recipe.script_args.dataset_name, "no dataset"
    assert recipe.model_args.model_name_or_path, "no model"
    peft_config = get_peft_config(recipe.model_args)
    assert (peft_config is not None) == recipe.model_args.use_peft
    get_quantization_config(recipe.model_args)
    # Every key of the file is a field and ends up with the file's value (or its parsed form)
    assert set(recipe.resolved) >= {"model_name_or_path", "dataset_name", "gamma", "beta", "output_dir"}

    # The folder's README gives the launch line of every recipe in it
    readme = path.parent / "README.md" if (path.parent / "README.md").is_file() else path.parent.parent / "README.md"
    assert readme.is_file(), f"no README next to {path}"
    assert path.name in readme.read_text()


PAPER = {"gamma": 5.0, "beta": 0.5, "score_average": True, "weight_decay": 0.0, "warmup_steps": 0.03, "bf16": True}


@pytest.mark.parametrize(
    "name, processes",
    [("llava-1.5-7b/dense_dpo/config_full.yaml", 8), ("llava-1.5-7b/dense_dpo/config_lora.yaml", 1),
     ("qwen2.5-vl-7b/dense_dpo/config_full.yaml", 8), ("qwen2.5-vl-7b/dense_dpo/config_lora.yaml", 1)],
)  # fmt: skip
def test_paper_recipes_use_the_paper_settings(name, processes):
    args = parse(REPO / "recipes" / name).training_args
    for key, value in PAPER.items():
        assert getattr(args, key) == value, key
    assert args.lr_scheduler_type.value == "cosine"
    assert args.max_length == 2048 and args.num_train_epochs == 7
    assert global_batch(args, processes) == 32
    assert args.learning_rate == (5e-7 if "full" in name else 5e-6)


def test_public_2024_recipe_uses_the_public_code_settings():
    recipe = parse(REPO / "recipes/llava-1.5-7b/dense_dpo/config_public_2024.yaml")
    args = recipe.training_args
    assert (args.gamma, args.beta, args.score_average, args.max_steps) == (1.1, 0.1, False, 2160)
    assert global_batch(args, 8) == 8 and args.learning_rate == 5e-7
    assert args.segment_source == "rlhfv_token_diff"
    # RLHF-V-Dataset at its pinned revision, converted by `rlhfv data get rlhf-v`
    assert recipe.script_args.dataset_name == "data/rlhf_v/dense" and not recipe.script_args.dataset_format


@pytest.mark.parametrize(
    "name, builder",
    [("llava-1.5-7b/dense_dpo/config_lora.yaml", "llava"), ("qwen2.5-vl-7b/dense_dpo/config_lora.yaml", "qwen2-vl")],
)
def test_vlm_lora_targets_every_language_linear_and_nothing_else(name, builder):
    """The LoRA pattern, applied by PEFT to a tiny model of the same family, hits exactly the language layers."""
    from peft import get_peft_model
    from trl import get_peft_config

    from rlhfv.model_loading import build_tiny_model

    model, _ = build_tiny_model(builder, seed=0)
    projections = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    expected = {
        module_name
        for module_name, _ in model.named_modules()
        if ".language_model." in module_name and module_name.rsplit(".", 1)[-1] in projections
    }
    assert len(expected) == 7 * model.config.text_config.num_hidden_layers
    peft_model = get_peft_model(model, get_peft_config(parse(REPO / "recipes" / name).model_args))
    adapted = {
        re.sub(r"^base_model\.model\.", "", module_name)
        for module_name, module in peft_model.named_modules()
        if hasattr(module, "lora_A") and module.lora_A
    }
    assert adapted == expected


def write_recipe(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text("model_name_or_path: tiny:llava\ndataset_name: data/pairs\nuse_cpu: true\nbf16: false\n" + text)
    return path


@pytest.mark.parametrize(
    "line, expected",
    [
        ("gama: 5.0", "unknown field `gama` (did you mean `gamma`?)"),
        ("per_device_train_batch_size: 2.5", "field `per_device_train_batch_size` expects int, got float 2.5"),
        ("learning_rate: fast", "field `learning_rate`: invalid value 'fast'"),
        ("learning_rate: [1, 2]", "field `learning_rate` expects float, got list"),
        ("use_peft: maybe", "field `use_peft`: invalid value 'maybe'"),
        ("score_average: 3", "field `score_average` expects bool, got int 3"),
        ("lora_target_modules: 5", "field `lora_target_modules` expects list or null, got int 5"),
        ("segment_source: words", "field `segment_source`: 'words' is not one of: spans, rlhfv_token_diff"),
        ("conversion_on_error: ignore", "field `conversion_on_error`: 'ignore' is not one of: fail, skip"),
        ("gamma: -1.0", "recipe.yaml: `gamma` must be a finite number > 0"),
        ("beta: -0.5", "recipe.yaml: `beta` must be a finite number > 0"),
    ],
)
def test_bad_recipe_fails_naming_the_field(tmp_path, line, expected):
    from data_tools.errors import CommandError
    from rlhfv.train import parse_recipe

    path = write_recipe(tmp_path, line + "\n")
    with pytest.raises(CommandError) as error:
        parse_recipe(["--config", str(path)])
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--gama", "5"], "command line: unknown option `--gama` (did you mean `--gamma`?)"),
        (["--gama=5"], "command line: unknown option `--gama` (did you mean `--gamma`?)"),
        (["--beta", "-0.5"], "recipe.yaml + command line: `beta` must be a finite number > 0"),
    ],
)
def test_bad_command_line_flag_is_blamed_on_the_command_line(tmp_path, flags, expected):
    from data_tools.errors import CommandError
    from rlhfv.train import parse_recipe

    path = write_recipe(tmp_path, "")
    with pytest.raises(CommandError) as error:
        parse_recipe(["--config", str(path), *flags])
    assert expected in str(error.value)


def test_command_line_override_is_checked_by_argparse(tmp_path, capsys):
    from rlhfv.train import parse_recipe

    path = write_recipe(tmp_path, "")
    with pytest.raises(SystemExit) as exit_info:
        parse_recipe(["--config", str(path), "--max_steps", "many"])
    assert exit_info.value.code == 2
    assert "argument --max_steps/--max-steps: invalid int value: 'many'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "no training data: set `dataset_name`"),
        # a path, not an `owner/name` Hub id: reported as a missing path
        ("dataset_name: /no/such/folder\n", "`dataset_name`: /no/such/folder: no such file or folder"),
        ("dataset_name: /no/such/file.jsonl\ndataset_format: corrections\n", "`dataset_name`: /no/such/file.jsonl"),
    ],
)
def test_missing_dataset_fails_before_training(tmp_path, text, expected):
    from data_tools.errors import CommandError
    from rlhfv.train import parse_recipe, run

    path = tmp_path / "recipe.yaml"
    path.write_text("model_name_or_path: tiny:llava\nuse_cpu: true\nbf16: false\nreport_to: none\n" + text)
    recipe = parse_recipe(["--config", str(path), "--output_dir", str(tmp_path / "out")])
    with pytest.raises(CommandError) as error:
        run(recipe)
    assert expected in str(error.value)


def test_missing_model_names_the_field(tmp_path):
    from data_tools.errors import CommandError
    from rlhfv.model_loading import load_model
    from rlhfv.recipe import parse_recipe

    recipe = parse_recipe(["--dataset_name", "x", "--use_cpu", "true", "--bf16", "false"])
    with pytest.raises(CommandError, match="`model_name_or_path` is not set"):
        load_model(recipe.model_args, recipe.training_args, use_peft=False)
    recipe.model_args.model_name_or_path = "tiny:gpt9"
    with pytest.raises(CommandError, match="unknown tiny model 'tiny:gpt9'"):
        load_model(recipe.model_args, recipe.training_args, use_peft=False)


def test_accelerate_configs_are_valid_for_accelerate():
    import yaml
    from accelerate.commands.config.config_args import ClusterConfig

    for path in ACCELERATE_CONFIGS:
        values = yaml.safe_load(path.read_text())
        config = ClusterConfig(**values)  # fails on an unknown key
        assert config.num_processes == (1 if path.stem == "single_gpu" else 8), path.name
        if path.stem.startswith("zero"):
            assert config.distributed_type.value == "DEEPSPEED"
            assert config.deepspeed_config["zero_stage"] == int(path.stem[-1])
