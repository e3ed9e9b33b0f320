"""Liger kernels: refused at start where they cannot run; on a GPU they replace the layers and keep the loss."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "recipes" / "demo" / "config_demo.yaml"
DEMO_DATA = REPO / "recipes" / "demo" / "data" / "corrections.jsonl"


def test_liger_on_a_cpu_fails_at_start_with_the_fix(tmp_path):
    from data_tools.errors import CommandError
    from rlhfv.train import parse_recipe, run

    # The dataset does not exist: the Liger check must come first, before any data or model is loaded
    recipe = parse_recipe(
        ["--config", str(DEMO), "--dataset_name", str(tmp_path / "missing.jsonl"), "--use_liger_kernel", "true",
         "--output_dir", str(tmp_path / "out")]
    )  # fmt: skip
    with pytest.raises(CommandError) as error:
        run(recipe)
    message = str(error.value)
    assert "`use_liger_kernel: true` needs a CUDA GPU" in message
    assert "`use_cpu: true` is set" in message  # the demo recipe runs on the CPU
    assert "use_liger_kernel: false" in message
    assert not (tmp_path / "out").exists()


def test_liger_without_a_gpu_names_the_missing_gpu(monkeypatch):
    import torch

    from data_tools.errors import CommandError
    from rlhfv.liger import check_liger_can_run
    from rlhfv.train import parse_recipe

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = parse_recipe(["--dataset_name", "x", "--use_liger_kernel", "true", "--use_cpu", "false", "--bf16", "false"])
    with pytest.raises(CommandError, match="no CUDA GPU is visible"):
        check_liger_can_run(args.training_args)


def test_liger_fused_cross_entropy_is_refused():
    from data_tools.errors import CommandError
    from rlhfv.liger import check_liger_can_run, liger_kernel_kwargs
    from rlhfv.train import parse_recipe

    args = parse_recipe(["--dataset_name", "x", "--use_liger_kernel", "true", "--use_cpu", "true"]).training_args
    args.liger_kernel_config = {"fused_linear_cross_entropy": True}  # as a recipe's mapping would set it
    with pytest.raises(CommandError, match="fused log-prob LM head"):
        check_liger_can_run(args)
    args.liger_kernel_config = {"rms_norm": True}
    assert liger_kernel_kwargs(args) == {"rms_norm": True, "fused_linear_cross_entropy": False}


# Runs in its own interpreter: Liger's patch replaces functions of transformers' modeling modules process-wide
GPU_SCRIPT = r"""
import json, sys
from rlhfv.train import parse_recipe, run

argv = sys.argv[1:]
out = {}
for liger in ("false", "true"):
    trainer = run(parse_recipe(argv + ["--use_liger_kernel", liger, "--output_dir", f"{argv[-1]}-{liger}"]))
    language = trainer.model.model.language_model
    reference = trainer.accelerator.unwrap_model(trainer.ref_model).model.language_model
    out[liger] = {
        "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
        "norm": language.norm._get_name(),
        "mlp": language.layers[0].mlp._get_name(),
        "ref_norm": reference.norm._get_name(),
        "head": trainer.model.forward.__qualname__,
    }
print("RESULT " + json.dumps(out))
"""


@pytest.mark.gpu
def test_liger_kernels_replace_the_layers_and_keep_the_loss(tmp_path):
    argv = [
        "--config", str(DEMO), "--dataset_name", str(DEMO_DATA), "--converted_dataset_dir", str(tmp_path / "conv"),
        "--use_cpu", "false", "--bf16", "true", "--max_steps", "4", "--logging_steps", "1", "--eval_strategy", "no",
        "--warmup_steps", "0", "--output_dir", str(tmp_path / "run"),
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", GPU_SCRIPT, *argv], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    out = json.loads(line[len("RESULT ") :])
    plain, liger = out["false"], out["true"]
    assert (plain["norm"], plain["mlp"]) == ("LlamaRMSNorm", "LlamaMLP")
    assert (liger["norm"], liger["mlp"]) == ("LigerRMSNorm", "LigerSwiGLUMLP")
    assert liger["ref_norm"] == "LigerRMSNorm", "the reference model kept the stock layers"
    # TRL's fused LM head stays: Liger's fused linear cross-entropy did not replace the model's forward
    assert "lce_forward" not in liger["head"]
    assert len(liger["losses"]) == len(plain["losses"]) == 4
    for expected, actual in zip(plain["losses"], liger["losses"], strict=True):
        assert actual == pytest.approx(expected, rel=2e-2, abs=2e-3)  # bf16 tolerance
