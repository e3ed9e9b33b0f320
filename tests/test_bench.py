"""The benchmark runner: real (tiny) runs that check the numbers it measures and the files it writes."""

import itertools
import json

import pytest
import torch

from bench import common, loss_head, run, train_step


TINY_GRID = {"hidden": 32, "vocabs": [300], "seqs": [24], "batch": 2, "repeats": 1}


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    return tmp_path


def _dense_score_in_float64(spec):
    """The Dense DPO score of the benchmark's inputs, computed here from full logits in float64."""
    hidden_states, weight, labels, weights = loss_head.build_inputs(
        spec["batch"], spec["seq"], spec["hidden"], spec["vocab"], torch.device("cpu"), torch.float32
    )
    log_probs = (hidden_states.double() @ weight.double().t()).log_softmax(-1)
    picked = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    # weights are 0 on the prompt, gamma/N on changed tokens, 1/N elsewhere: each row's weights sum to 1
    assert torch.allclose(weights.sum(-1), torch.ones(spec["batch"]))
    assert weights[labels == -100].eq(0).all()
    nonzero = weights[0][weights[0] > 0].unique()
    assert len(nonzero) == 2 and nonzero.max() / nonzero.min() == pytest.approx(loss_head.GAMMA)
    return (picked * weights.double()).sum().item()


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_loss_head_contenders_compute_the_dense_score_and_files_are_written(results_dir):
    payload = loss_head.run(grid=TINY_GRID, contenders=loss_head.CONTENDERS)
    spec = {"batch": 2, "seq": 24, "hidden": 32, "vocab": 300}
    expected = _dense_score_in_float64(spec)
    rows = {row["contender"]: row for row in payload["rows"]}
    assert set(rows) == set(loss_head.CONTENDERS)
    for contender in ("full_logits", "trl_head_weighted", "rlhfv_tiled"):
        assert rows[contender]["score"] == pytest.approx(expected, rel=1e-5), contender
    # The stock sum is not normalised: it is far larger in magnitude than the dense (weighted average) score
    assert abs(rows["trl_head"]["score"]) > 5 * abs(expected)
    for row in rows.values():
        assert row["peak_gib"] >= 0 and row["time_s"] > 0
        assert row["time_vs_full"] == pytest.approx(row["time_s"] / rows["full_logits"]["time_s"])

    common.write_results("loss_head", payload, payload["rows"], loss_head.COLUMNS, loss_head.notes(payload))
    loss_head.plot(payload, "loss_head")
    saved = json.loads((results_dir / "loss_head.json").read_text())
    assert len(saved["table"]) == len(loss_head.CONTENDERS)
    markdown = (results_dir / "loss_head.md").read_text()
    assert "| vocab | T | B | contender |" in markdown and "rlhfv tiled head" in markdown
    assert (results_dir / "loss_head.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_peak_rss_probe_sees_an_allocation_after_a_reset():
    before = common.current_rss()
    assert common.reset_peak_rss()
    block = torch.ones(50_000_000)  # 200 MB, touched
    extra = common.peak_rss() - before
    del block
    assert 190e6 < extra < 400e6


def test_failed_worker_reports_its_traceback():
    spec = {"contender": "no_such_head", "batch": 1, "seq": 8, "hidden": 8, "vocab": 16}
    with pytest.raises(RuntimeError, match="unknown contender 'no_such_head'"):
        common.run_worker("bench.loss_head", spec)


def test_synthetic_pairs_mark_exactly_the_replaced_words():
    dataset = train_step.build_dataset(5, prompt_words=4, answer_words=30, images=False)
    for row in dataset:
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        assert chosen != rejected
        chosen_words, rejected_words = chosen.split(" "), rejected.split(" ")
        differing = [i for i, (a, b) in enumerate(zip(chosen_words, rejected_words, strict=True)) if a != b]
        assert [chosen[s:e] for s, e in row["chosen_spans"]] == [chosen_words[i] for i in differing]
        assert [rejected[s:e] for s, e in row["rejected_spans"]] == [rejected_words[i] for i in differing]


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_train_step_memory_worker_measures_each_trainer_on_a_tiny_model():
    spec = {"model": train_step.QUICK_MODELS["llama"], "device": "cpu", **train_step.QUICK_DATA}
    for contender in train_step.CONTENDERS:
        result = train_step.worker({**spec, "contender": contender})
        assert len(result["step_times_s"]) == spec["steps"]
        assert all(t > 0 for t in result["step_times_s"])
        assert result["process_peak_bytes"] > result["step_peak_extra_bytes"] >= 0
        assert result["tokens_per_step"] > 0
        # The contender's steps were scored by the head its label names (the driver refuses runs that were not)
        assert train_step._checked(result["head_calls"], contender, "cpu") is result["head_calls"]
        assert (result["head_calls"]["tiled"] > 0) == (contender == "dense_dpo")


def test_round_schedule_mirrors_measured_rounds():
    assert train_step.round_schedule(["a", "b", "c"], warmup=1, steps=3) == [*"abc", *"abc", *"cba", *"abc"]


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_interleaved_timing_worker_runs_every_trainer_in_turns():
    contenders = list(train_step.CONTENDERS)
    spec = {"model": train_step.QUICK_MODELS["llama"], "device": "cpu", **train_step.QUICK_DATA}
    result = train_step.worker({**spec, "mode": "interleaved", "contenders": contenders})
    assert result["schedule"] == train_step.round_schedule(contenders, spec["warmup"], spec["steps"])
    # Steps ran in the schedule's order, one at a time
    assert [name for name, _, _ in result["step_log"]] == result["schedule"]
    for (_, _, end), (_, next_start, _) in itertools.pairwise(result["step_log"]):
        assert end <= next_start
    for contender in contenders:
        assert len(result["warmup_times_s"][contender]) == spec["warmup"]
        assert len(result["step_times_s"][contender]) == spec["steps"]
        assert all(t > 0 for t in result["step_times_s"][contender])
        # Head calls are counted per trainer although all of them share the process
        calls = result["head_calls"][contender]
        assert (calls["tiled"] > 0) == (contender == "dense_dpo")
        assert calls["tiled"] + calls["trl"] > 0
    with pytest.raises(RuntimeError, match="wrong heads"):
        train_step._checked(result["head_calls"]["trl_dpo"], "dense_dpo", "cpu")


def test_turns_release_waiting_trainers_when_one_fails():
    turns = train_step._Turns(["a", "b"])
    turns.fail("a failed: boom")
    with pytest.raises(RuntimeError, match="boom"):
        turns.wait_for("b")


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU skip path")
def test_cli_skips_gpu_cleanly_and_writes_converter_files(results_dir, capsys):
    assert run.cli(["--only", "gpu,converter", "--converter-pairs", "40", "--results-dir", str(results_dir)]) == 0
    out = capsys.readouterr().out
    assert "skipped: no CUDA GPU" in out
    gpu = json.loads((results_dir / "gpu.json").read_text())
    assert gpu["skipped"] and gpu["table"] == [] and gpu["machine"]["cores"] >= 1
    assert not (results_dir / "gpu.png").exists()
    converter = json.loads((results_dir / "converter.json").read_text())
    if converter.get("missing"):
        pytest.skip(converter["missing"])
    procs = [row["num_proc"] for row in converter["table"]]
    assert procs == [1, 2]
    first = converter["table"][0]
    assert first["pairs_per_s"] == pytest.approx(first["pairs"] / first["seconds"], rel=0.05)
    assert (results_dir / "converter.png").exists() and "pairs/s" in (results_dir / "converter.md").read_text()


def test_unknown_benchmark_name_is_a_usage_error():
    with pytest.raises(SystemExit, match="unknown benchmark"):
        run.selected("loss_head,nope")
