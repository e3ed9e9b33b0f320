"""Dense DPO sharded over 2 CPU processes (gloo) matches one process on the same global batch.

`accelerate launch` with recipes/accelerate_configs/fsdp.yaml (PyTorch FSDP2) and, where DeepSpeed is installed,
zero3.yaml (DeepSpeed ZeRO-3) starts tests/sharded_worker.py in two processes. rlhfv switches accelerate's CPU
fallback to the sharded setup (rlhfv._compat, entries 14 and 18), so the policy and the reference are sharded by
accelerate's, TRL's and DeepSpeed's own code, as on GPUs. Under FSDP2 the tiny Llama's run checkpoints sharded (its
own `fsdp_config`), the tiny LLaVA's takes the recipe config (full state dict); LoRA runs under FSDP2 with the
adapters switched off as the reference. One process runs the same runs unsharded, at 4 pairs per step instead of 2
per process.

What would go wrong under sharding and is caught here: the token scales reaching the forward of one process only
(its loss and gradients would be those of plain DPO), TRL's LM head scoring with a shard of the head's weight instead
of the gathered head, or its gradient not reduced across processes, a checkpoint that does not resume (or resumes
elsewhere), a saved model that is not the trained one, reference log-probs precomputed through the sharded reference
that differ from the live reference.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sharded_worker import RUNS, STEPS, models, train
from test_distributed import free_port


pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "recipes" / "accelerate_configs"
FULL_RUNS = [(backend, kind) for backend in RUNS for kind, variant in RUNS[backend] if variant == "full"]
# Logged values that are not functions of the model and the batch
UNCOMPARED = {"epoch", "learning_rate", "step", "num_tokens"}
# Tolerances against the one-process run. The first step starts from the same weights, so only the order of float32
# sums differs (per-process sums gathered vs one batch, and padding to the longest row of 2 pairs vs of 4): about
# 1e-7 relative. Later steps add the reduce-scatter of the gradients in another order, which Adam divides by the
# gradient's RMS, so the weights differ by a few 1e-7. Measured: losses and rewards within 3e-7 relative; the
# margins of mean log-probs (`dense/logps/*_margin`, a difference of two means near -6.2) within 1.1e-6 absolute,
# hence the absolute 1e-5. A token scale missing on one process, or a head scored with one shard, moves the losses
# by 1e-3 or more (the failing variants are described in docs/training.md).
RTOL, ATOL = 1e-5, 1e-5


def deepspeed_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepspeed") is not None


def launch(backend: str, out: Path, log) -> subprocess.Popen:
    """The 2-process run of `backend` with its accelerate config from recipes/, in fp32 (the configs say bf16)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(CONFIGS / f"{backend}.yaml"),
        "--num_processes",
        "2",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        str(REPO / "tests" / "sharded_worker.py"),
        str(out),
        backend,
    ]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Folders of the runs: "one" (one process), "fsdp" and "zero3" (None without DeepSpeed). The 2-process launches
    run while this process trains the one-process runs."""
    root = tmp_path_factory.mktemp("sharded")
    backends = ["fsdp", "zero3"] if deepspeed_installed() else ["fsdp"]
    launches, logs = {}, []
    try:
        for backend in backends:
            logs.append(open(root / f"{backend}.log", "w"))
            launches[backend] = launch(backend, root / backend, logs[-1])
        for kind, variant in sorted({run for backend in backends for run in RUNS[backend]}):
            if variant != "precompute":  # a sharded precompute run is compared with the sharded live run
                train(kind, variant, root / "one", processes=1)
        for backend, process in launches.items():
            returncode = process.wait(timeout=600)
            assert returncode == 0, f"{backend}: " + (root / f"{backend}.log").read_text()[-4000:]
    finally:
        for process in launches.values():
            if process.poll() is None:
                process.kill()
        for log in logs:
            log.close()
    return {"one": root / "one", "fsdp": root / "fsdp", "zero3": root / "zero3" if "zero3" in launches else None}


def sharded(runs, backend: str) -> Path:
    if runs[backend] is None:
        pytest.skip("DeepSpeed is not installed (pip install -e '.[deepspeed]')")
    return runs[backend]


def result(folder: Path, run: str, rank: int = 0) -> dict:
    return json.loads((folder / run / f"result-{rank}.json").read_text())


def step_entries(result: dict) -> list[dict]:
    return [entry for entry in result["log_history"] if "loss" in entry]


def assert_same_logs(expected: list[dict], actual: list[dict], rtol: float = RTOL, atol: float = ATOL) -> None:
    assert [entry["step"] for entry in actual] == [entry["step"] for entry in expected] == list(range(1, STEPS + 1))
    for want, got in zip(expected, actual, strict=True):
        assert set(got) == set(want), f"step {want['step']}: logged keys differ"
        dense = [key for key in want if key.startswith("dense/")]
        assert len(dense) >= 15, "the dense metrics were not logged"
        for key in sorted(set(want) - UNCOMPARED):
            assert got[key] == pytest.approx(want[key], rel=rtol, abs=atol), f"step {want['step']}: {key}"


@pytest.mark.parametrize(
    ("backend", "run"),
    [(backend, f"{kind}-{variant}") for backend in RUNS for kind, variant in RUNS[backend]]
    + [(backend, f"{kind}-resumed") for backend, kind in FULL_RUNS],
)
def test_every_parameter_is_sharded_and_each_process_holds_half(runs, backend, run):
    ranks = [result(sharded(runs, backend), run, rank) for rank in (0, 1)]
    assert all(rank["world"] == 2 and rank["backend"] == backend for rank in ranks)
    for which in ("shards", "reference_shards"):
        if ranks[0][which] is None:  # LoRA: the reference is the policy with its adapters off
            assert run.endswith("lora") and which == "reference_shards"
            continue
        reports = [rank[which] for rank in ranks]
        assert all(report["sharded"] == report["params"] > 0 for report in reports), f"{which}: not all sharded"
        total = reports[0]["total"]
        # ZeRO-3 pads each partition to a multiple of the processes: at most one value per parameter and process
        assert 0 <= sum(report["local"] for report in reports) - total <= 2 * reports[0]["params"]
        assert all(abs(report["local"] / total - 0.5) < 0.05 for report in reports), reports


@pytest.mark.parametrize(
    ("backend", "run"),
    [(backend, f"{kind}-{variant}") for backend in RUNS for kind, variant in RUNS[backend] if variant != "precompute"],
)
def test_losses_and_dense_metrics_equal_one_process(runs, backend, run):
    two = sharded(runs, backend)
    one = step_entries(result(runs["one"], run))
    for rank in (0, 1):  # both processes log the same, gathered values
        assert_same_logs(one, step_entries(result(two, run, rank)))
    losses = [entry["loss"] for entry in one]
    assert max(losses) - min(losses) > 1e-3, f"the model did not move: the test proves nothing ({losses})"


@pytest.mark.parametrize(("backend", "kind"), FULL_RUNS)
def test_precomputed_reference_gives_the_same_losses_as_the_live_reference(runs, backend, kind):
    two = sharded(runs, backend)
    live = step_entries(result(two, f"{kind}-full"))
    cached = step_entries(result(two, f"{kind}-precompute"))
    # Same processes, same batches: only the reference's per-token values are read from the cache instead
    assert_same_logs(live, cached, rtol=1e-6, atol=1e-7)
    entries = list((two / f"ref-cache-{kind}").iterdir())
    assert [entry.name.startswith("train-") for entry in entries] == [True], entries


def load_saved(kind: str, folder: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    loader = AutoModelForCausalLM if kind == "llama" else AutoModelForImageTextToText
    return loader.from_pretrained(folder)


@pytest.mark.parametrize(("backend", "kind"), FULL_RUNS)
def test_saved_model_loads_and_equals_the_gathered_weights(runs, backend, kind):
    folder = sharded(runs, backend) / f"{kind}-full"
    gathered = load_file(folder / "gathered.safetensors")
    saved = dict(load_saved(kind, folder).named_parameters())
    assert set(saved) == set(gathered)
    for name, tensor in gathered.items():
        assert torch.equal(saved[name].detach(), tensor), name
    # ... and the training equals one process': Adam divides by the gradient's running RMS, so float noise in a
    # near-zero gradient can move a weight by a few 1e-6; a wrong batch or gradient moves them by the learning rate
    one = load_file(runs["one"] / f"{kind}-full" / "gathered.safetensors")
    for name, tensor in one.items():
        torch.testing.assert_close(gathered[name], tensor, rtol=1e-3, atol=2e-5)


@pytest.mark.parametrize("kind", [kind for kind, variant in RUNS["fsdp"] if variant == "lora"])
def test_saved_lora_adapter_loads_and_equals_the_gathered_adapter(runs, kind):
    from peft import PeftModel

    folder = runs["fsdp"] / f"{kind}-lora"
    gathered = load_file(folder / "gathered.safetensors")
    loaded = PeftModel.from_pretrained(models(kind)[0], folder)
    adapters = {name: p for name, p in loaded.named_parameters() if "lora_" in name}
    assert adapters and set(adapters) == {name for name in gathered if "lora_" in name}
    for name, tensor in adapters.items():
        assert torch.equal(tensor.detach(), gathered[name]), name
    one = load_file(runs["one"] / f"{kind}-lora" / "gathered.safetensors")
    assert set(one) == set(gathered)
    for name, tensor in one.items():
        torch.testing.assert_close(gathered[name], tensor, rtol=1e-3, atol=2e-5)


@pytest.mark.parametrize(("backend", "kind"), FULL_RUNS)
def test_resuming_from_the_sharded_checkpoint_continues_with_the_same_next_loss(runs, backend, kind):
    two = sharded(runs, backend)
    checkpoint = two / f"{kind}-full" / "checkpoint-2"
    if backend == "zero3":  # one partition of the weights and of Adam's state per process
        assert {
            f"zero_pp_rank_{rank}_mp_rank_00_{part}_states.pt" for rank in (0, 1) for part in ("model", "optim")
        } == set(os.listdir(checkpoint / "global_step2"))
    elif kind == "llama":  # sharded: one file per process
        for folder in ("pytorch_model_fsdp_0", "optimizer_0"):
            assert {"__0_0.distcp", "__1_0.distcp"} <= set(os.listdir(checkpoint / folder))
        assert not (checkpoint / "model.safetensors").exists()
    else:  # the recipe's FSDP config gathers the shards into one file
        assert (checkpoint / "pytorch_model_fsdp.bin").is_file() and (checkpoint / "optimizer.bin").is_file()
    uninterrupted = step_entries(result(two, f"{kind}-full"))
    resumed = step_entries(result(two, f"{kind}-resumed"))
    # Steps 1-2 come from the checkpoint's trainer state; step 3 is computed after loading weights and Adam's state
    assert_same_logs(uninterrupted, resumed, rtol=1e-6, atol=1e-7)
    final = load_file(two / f"{kind}-full" / "gathered.safetensors")
    after_resume = load_file(two / f"{kind}-resumed" / "gathered.safetensors")
    for name, tensor in final.items():
        torch.testing.assert_close(after_resume[name], tensor, rtol=1e-6, atol=1e-8)
