"""`rlhfv feedback` under `accelerate launch` with 2 processes (gloo, CPU): sampling and labeling are split between
the processes, nothing is done twice, and the labels equal those of one process labeling the same answers."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_two_processes_split_sampling_and_labeling(tmp_path):
    import torch

    from experiments.synthetic import write_prompts
    from rlhfv.cli import main as rlhfv_main
    from rlhfv.tiny_models import build_llava, build_tokenizer

    model, processor = build_llava(build_tokenizer(), seed=3)
    model.config.text_config.initializer_range = 0.3
    torch.manual_seed(3)
    model = type(model)(model.config)
    model.save_pretrained(tmp_path / "policy")
    processor.save_pretrained(tmp_path / "policy")
    prompts = write_prompts(tmp_path / "prompts", n=5, seed=0)
    out = tmp_path / "two"
    args = ["--prompts", str(prompts), "--policy", str(tmp_path / "policy"), "--num-samples", "3",
            "--max-new-tokens", "10", "--labeler", "self", "--device", "cpu", "--min-answer-probability", "0",
            "--on-error", "skip", "--no-progress", "--label-batch-size", "2"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
        str(free_port()), "-m", "rlhfv.cli", "feedback", *args, "--output_dir", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    ids = [row["id"] for row in read(prompts)]
    parts = [[r["id"] for r in read(out / f"answers.part{k}.jsonl")] for k in (0, 1)]
    assert sorted(parts[0] + parts[1]) == sorted(ids) and len(parts[0]) == 3 and len(parts[1]) == 2
    assert [r["id"] for r in read(out / "answers.jsonl")] == ids  # merged in input order
    label_parts = [{(r["id"], r["answer_index"]) for r in read(out / f"labels.part{k}.jsonl")} for k in (0, 1)]
    assert label_parts[0] and label_parts[1] and not label_parts[0] & label_parts[1]
    two = read(out / "labels.jsonl")
    assert len(two) == 5 * 3

    # one process labeling the same claims gives the same labels
    one = tmp_path / "one"
    (one / "stages").mkdir(parents=True)
    for name in ("answers.jsonl", "answers.part0.jsonl", "answers.part1.jsonl", "claims.jsonl"):
        shutil.copy(out / name, one / name)
    for stage in ("sample", "claims"):
        (one / "stages" / f"{stage}.done").write_text("done\n")
    assert rlhfv_main(["feedback", *args, "--output_dir", str(one)]) == 0
    single = read(one / "labels.jsonl")
    assert [(r["id"], r["answer_index"]) for r in single] == [(r["id"], r["answer_index"]) for r in two]
    for a, b in zip(single, two, strict=True):
        for la, lb in zip(a["labels"], b["labels"], strict=True):
            assert la["verdict"] == lb["verdict"]
            assert la["p_yes"] == pytest.approx(lb["p_yes"], rel=1e-4)
    assert (one / "pairs.jsonl").read_text() == (out / "pairs.jsonl").read_text()
    assert json.loads((out / "summary.json").read_text())["answers"] == 15
