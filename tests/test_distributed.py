"""A real 2-process data-parallel run (gloo, CPU) matches a single process on the same global batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "recipes" / "demo" / "config_demo.yaml"
DEMO_DATA = REPO / "recipes" / "demo" / "data" / "corrections.jsonl"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    import torch
    from safetensors.torch import load_file

    from rlhfv.train import parse_recipe, run

    common = [
        "--config", str(DEMO), "--dataset_name", str(DEMO_DATA),
        "--converted_dataset_dir", str(tmp_path / "converted"),
        "--max_steps", "3", "--logging_steps", "1", "--eval_strategy", "no", "--warmup_steps", "0",
    ]  # fmt: skip
    # One process, 4 pairs per step (this run also fills the conversion cache for the other)
    single = run(parse_recipe([*common, "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path / "one")]))

    # Two processes, 2 pairs each: the same 4 pairs per step. accelerate's sampler shards the same seeded permutation
    # (process p takes batches p, p+2, ...), so step k sees the same rows in both runs. `--multi_gpu` is what makes
    # accelerate start torch.distributed workers; with `use_cpu` they join a gloo group on the CPU.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        "-m", "rlhfv.train", *common, "--per_device_train_batch_size", "2", "--output_dir", str(tmp_path / "two"),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training on 2 processes, backend gloo" in result.stdout

    state = json.loads((tmp_path / "two" / "trainer_state.json").read_text())
    two = [entry for entry in state["log_history"] if "loss" in entry]
    one = [entry for entry in single.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in two] == [entry["step"] for entry in one] == [1, 2, 3]
    for expected, actual in zip(one, two, strict=True):
        # The logged loss and gradient norm are means over all 4 pairs in both runs
        assert actual["loss"] == pytest.approx(expected["loss"], rel=1e-5)
        assert actual["grad_norm"] == pytest.approx(expected["grad_norm"], rel=1e-4)
    assert one[-1]["loss"] != pytest.approx(one[0]["loss"], abs=1e-6), (
        "the model did not move: the test proves nothing"
    )

    weights_one = load_file(tmp_path / "one" / "model.safetensors")
    weights_two = load_file(tmp_path / "two" / "model.safetensors")
    # Adam divides by the gradient's running RMS, so float noise in a near-zero gradient can move a weight by a few
    # 1e-6; a wrong batch or a wrong gradient scale moves them by the learning rate (1e-3)
    for name, tensor in weights_one.items():
        torch.testing.assert_close(weights_two[name], tensor, rtol=1e-3, atol=2e-5)
    assert "accelerate launch --num_processes 2" in (tmp_path / "two" / "README.md").read_text()
