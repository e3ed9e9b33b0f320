"""Two real CPU processes (torchrun, gloo): per-token reference precompute and dense metrics gathered
across ranks. One step over a global batch that holds every pair, so the logged shares can be checked against an
independent count over the whole dataset."""

import json
import socket
import subprocess
import sys
import textwrap

import pytest
from datasets import Dataset
from test_trainer import reference_rows, rows_with_spans

from rlhfv.tiny_models import build_tokenizer


SCRIPT = textwrap.dedent(
    """
    import copy, json, sys
    import torch
    from datasets import load_from_disk
    from rlhfv import DenseDPOConfig, DenseDPOTrainer
    from rlhfv.tiny_models import build_text_model, build_tokenizer

    torch.set_num_threads(1)
    data_dir, cache_dir, out_file = sys.argv[1:4]
    tokenizer = build_tokenizer()
    model = build_text_model(tokenizer)
    dataset = load_from_disk(data_dir)
    results = {}
    for precompute in (True, False):
        args = DenseDPOConfig(
            output_dir=cache_dir + "/out", report_to=[], use_cpu=True, bf16=False, gradient_checkpointing=False,
            per_device_train_batch_size=len(dataset) // 2, max_steps=1, logging_steps=1, save_strategy="no",
            max_length=None, precompute_ref_log_probs=precompute, ref_cache_dir=cache_dir, learning_rate=1e-3,
        )
        trainer = DenseDPOTrainer(
            copy.deepcopy(model), ref_model=None if precompute else copy.deepcopy(model), args=args,
            train_dataset=dataset, processing_class=tokenizer,
        )
        trainer.train()
        results[str(precompute)] = trainer.state.log_history[0]
    if trainer.accelerator.is_main_process:
        json.dump({"world": trainer.accelerator.num_processes, **results}, open(out_file, "w"))
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_two_processes_precompute_and_gather(tmp_path):
    rows = rows_with_spans() * 2
    rows = [{**row, "id": f"{row['id']}-{k}"} for k, row in enumerate(rows)]
    rows[4]["chosen_spans"], rows[4]["rejected_spans"] = [], []
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "data"))
    (tmp_path / "run.py").write_text(SCRIPT)
    # torchrun starts two CPU workers; TrainingArguments(use_cpu=True) joins them with the gloo backend
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
        str(tmp_path / "run.py"), str(tmp_path / "data"), str(tmp_path / "cache"), str(tmp_path / "out.json"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["world"] == 2
    cached, live = result["True"], result["False"]

    tokenizer = build_tokenizer()
    references = [reference_rows(tokenizer, row) for row in rows]
    changed = sum(sum(r[s][2]) for r in references for s in ("chosen", "rejected"))
    completion = sum(sum(r[s][1][1:]) for r in references for s in ("chosen", "rejected"))
    for logged in (cached, live):
        assert logged["dense/changed_share"] == changed / completion
        assert logged["dense/pairs_without_changes"] == 1
    for key in ("loss", "rewards/margins", "dense/rewards/changed_margin", "dense/logps/changed_chosen"):
        assert abs(cached[key] - live[key]) < 1e-6, key
