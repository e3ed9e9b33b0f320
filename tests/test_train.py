"""The training entry point: the demo recipe end to end, the command line, data loading and conversion caching,
W&B offline logging."""

import glob
import json
import math
import os
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "recipes" / "demo" / "config_demo.yaml"
DEMO_DATA = REPO / "recipes" / "demo" / "data" / "corrections.jsonl"


@pytest.fixture(scope="module")
def converted_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("converted")


def demo_argv(output_dir, converted_cache, *overrides):
    """The demo recipe, test-sized: absolute data path, a private conversion cache, no evaluation unless asked."""
    return [
        "--config", str(DEMO),
        "--dataset_name", str(DEMO_DATA),
        "--converted_dataset_dir", str(converted_cache),
        "--output_dir", str(output_dir),
        "--logging_steps", "1",
        "--eval_strategy", "no",
        *overrides,
    ]  # fmt: skip


def run_demo(argv, callbacks=None):
    from rlhfv.train import parse_recipe, run

    return run(parse_recipe(argv), command="pytest", callbacks=callbacks)


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_demo_recipe_trains_and_leaves_a_loadable_model(tmp_path, converted_cache):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from rlhfv import tiny_models

    out = tmp_path / "demo"
    trainer = run_demo(demo_argv(out, converted_cache, "--max_steps", "4", "--warmup_steps", "0"))

    assert trainer.state.global_step == 4
    train_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in train_logs] == [1, 2, 3, 4]
    # At step 1 the policy is the reference, so every reward is 0 and the DPO loss is -log sigmoid(0) = log 2
    assert train_logs[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert train_logs[-1]["loss"] < math.log(2)
    for entry in train_logs:
        dense = {key: value for key, value in entry.items() if key.startswith("dense/")}
        assert dense, f"no dense metric logged at step {entry['step']}"
        assert all(math.isfinite(value) for value in dense.values())

    # The saved folder reloads as a model + processor with exactly the trained weights
    model = AutoModelForImageTextToText.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert processor.tokenizer.chat_template
    trained = {name: tensor.detach() for name, tensor in trainer.model.state_dict().items()}
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, trained[name], msg=f"{name} differs from the trained weights")
    # ... which moved away from the initial weights (same seed as the recipe)
    initial, _ = tiny_models.build_llava(tiny_models.build_tokenizer(), seed=trainer.args.seed)
    moved = [name for name, tensor in initial.state_dict().items() if not torch.equal(tensor, trained[name])]
    assert any("language_model" in name for name in moved)

    for name in ("README.md", "trainer_state.json", "train_results.json", "recipe.yaml"):
        assert (out / name).is_file(), name


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_demo_evaluates_on_the_held_out_rows(tmp_path, converted_cache, capsys):
    argv = demo_argv(tmp_path / "eval", converted_cache, "--max_steps", "2", "--eval_strategy", "steps",
                     "--eval_steps", "2", "--dataset_test_size", "8")  # fmt: skip
    trainer = run_demo(argv)
    # The screen ends with where the model is; the configuration went to files, not the screen
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith(f"model saved to {tmp_path / 'eval'}")
    assert "Training arguments" not in out and "***** eval metrics *****" not in out
    config = json.loads((tmp_path / "eval" / "run_config.json").read_text())
    assert config["training_args"]["max_steps"] == 2 and config["training_args"]["hub_token"] in (None, "<redacted>")
    assert "max_steps" in (tmp_path / "eval" / "train.log").read_text()
    # The demo holds out `dataset_test_size: 8` of its 64 rows
    assert len(trainer.eval_dataset) == 8 and len(trainer.train_dataset) == 56
    assert not set(trainer.eval_dataset["id"]) & set(trainer.train_dataset["id"])
    evals = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert evals and any(key.startswith("eval_dense/") for key in evals[-1])
    assert (tmp_path / "eval" / "eval_results.json").is_file()


def test_conversion_is_cached_by_fingerprint(tmp_path):
    from rlhfv.data import COMPLETE_MARKER, converted_dataset
    from rlhfv.train import parse_recipe

    raw = tmp_path / "corrections.jsonl"
    lines = DEMO_DATA.read_text().splitlines()
    raw.write_text("\n".join(lines[:10]) + "\n")
    cache = tmp_path / "cache"
    argv = ["--config", str(DEMO), "--dataset_name", str(raw), "--image_root", str(DEMO_DATA.parent)]
    argv += ["--converted_dataset_dir", str(cache), "--output_dir", str(tmp_path / "out")]
    recipe = parse_recipe(argv)

    first = converted_dataset(recipe.script_args, recipe.training_args)
    folders = [path for path in cache.iterdir() if (path / COMPLETE_MARKER).is_file()]
    assert len(folders) == 1 and len(first) == 10
    marker = folders[0] / COMPLETE_MARKER
    stamp = marker.stat().st_mtime_ns

    second = converted_dataset(recipe.script_args, recipe.training_args)
    assert marker.stat().st_mtime_ns == stamp, "the second run converted again instead of reusing the cache"
    assert second["id"] == first["id"] and second["chosen_spans"] == first["chosen_spans"]

    # Changed input: a new fingerprint, a new conversion
    raw.write_text("\n".join(lines[:12]) + "\n")
    third = converted_dataset(recipe.script_args, recipe.training_args)
    assert len(third) == 12
    assert len([path for path in cache.iterdir() if (path / COMPLETE_MARKER).is_file()]) == 2


def test_train_help_shows_every_option(capsys):
    from rlhfv.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    # Dense DPO, script, TRL DPO, transformers and model options all appear
    for option in (
        "--gamma",
        "--score_average",
        "--dataset_format",
        "--beta",
        "--loss_type",
        "--learning_rate",
        "--use_liger_kernel",
        "--push_to_hub",
        "--lora_r",
        "--load_in_4bit",
        "--model_name_or_path",
    ):
        assert option in text, option


def test_user_mistakes_fail_in_one_line(tmp_path, capsys):
    from rlhfv.cli import main

    missing = tmp_path / "nope.yaml"
    assert main(["train", "--config", str(missing)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"rlhfv train: error: recipe not found: {missing}"

    # A converted dataset lacking the span columns: the error names the columns and the fix
    from datasets import Dataset

    folder = tmp_path / "plain"
    message = [{"role": "user", "content": "Hi"}]
    Dataset.from_list(
        [{"prompt": message, "chosen": [{"role": "assistant", "content": "a"}],
          "rejected": [{"role": "assistant", "content": "b"}]}]
    ).save_to_disk(str(folder))  # fmt: skip
    capsys.readouterr()
    code = main(["train", "--config", str(DEMO), "--dataset_name", str(folder), "--dataset_format", "",
                 "--output_dir", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1 and err.startswith("rlhfv train: error: `dataset_name`: ")
    assert "['chosen_spans', 'rejected_spans']" in err and "segment_source" in err


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_wandb_offline_gets_dense_metrics_and_the_recipe(tmp_path, converted_cache, monkeypatch):
    import wandb
    from transformers import TrainerCallback

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_PROJECT", "rlhfv-test")
    seen = {}

    class ReadRun(TrainerCallback):
        # Runs before the trainer finishes the W&B run, while `wandb.run` is live
        def on_train_end(self, args, state, control, **kwargs):
            seen["config"] = wandb.run.config.as_dict()
            seen["summary"] = dict(wandb.run.summary)

    argv = demo_argv(tmp_path / "out", converted_cache, "--max_steps", "2", "--report_to", "wandb", "--gamma", "3.5")
    trainer = run_demo(argv, callbacks=[ReadRun()])

    config = seen["config"]
    assert config["recipe"]["gamma"] == 3.5 and config["recipe"]["model_name_or_path"] == "recipes/demo/prior/sft"
    assert config["recipe_file"] == str(DEMO)
    assert config["script_args"]["dataset_format"] == "corrections"
    assert config["gamma"] == 3.5  # the training arguments, from transformers' own callback
    last_train_log = [entry for entry in trainer.state.log_history if "loss" in entry][-1]
    dense = {key: value for key, value in last_train_log.items() if key.startswith("dense/")}
    assert dense
    for key, value in dense.items():
        assert seen["summary"][f"train/{key}"] == pytest.approx(value)
    assert glob.glob(os.path.join(tmp_path, "wandb", "offline-run-*", "run-*.wandb"))
    assert wandb.run is None, "the run was not finished"


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
@pytest.mark.parametrize("learning_rate", ["1e8", "1e3"])
def test_a_diverging_run_stops_at_the_first_non_finite_step_and_saves_no_final_model(
    tmp_path, converted_cache, learning_rate
):
    from safetensors.torch import load_file

    from data_tools.errors import CommandError

    out = tmp_path / "diverged"
    argv = demo_argv(
        out, converted_cache, "--max_steps", "12", "--warmup_steps", "0", "--learning_rate", learning_rate,
        "--max_grad_norm", "0", "--save_strategy", "steps", "--save_steps", "1",
    )  # fmt: skip
    with pytest.raises(CommandError, match=r"training diverged at step (\d+): the (loss|gradient norm) is") as error:
        run_demo(argv)
    step = int(error.value.__cause__.args[0].split("step ")[1].split(":")[0])
    assert 1 < step <= 12
    assert "learning_rate" in str(error.value)
    # No final model; every checkpoint written before the bad step holds finite weights only
    assert not (out / "model.safetensors").exists()
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    assert [int(path.name.split("-")[1]) for path in checkpoints] == list(range(1, step))
    for checkpoint in checkpoints:
        for name, tensor in load_file(checkpoint / "model.safetensors").items():
            assert tensor.isfinite().all(), (checkpoint.name, name)
