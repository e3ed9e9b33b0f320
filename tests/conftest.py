"""Shared test set-up: no Hub, no telemetry, one CPU thread, GPU tests skipped where no GPU is present."""

import os


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tests' models are tiny: a second thread only adds synchronisation, and on a busy 2-core machine it made
# steps many times slower. Subprocesses (the 2-process runs) inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def one_cpu_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def head_calls(monkeypatch):
    """Counts of the LM-head calls each path serves while the test runs: {"tiled": n, "trl": n}."""
    from bench.head_calls import count_head_calls

    return count_head_calls(monkeypatch.setattr)


@pytest.fixture
def ref_computations(monkeypatch):
    """How many times per-token reference log-probs were computed (not read from the cache) while the test runs."""
    from rlhfv import ref_precompute

    count = {"computed": 0}
    compute = ref_precompute.compute_reference_token_logps

    def counting(*args, **kwargs):
        count["computed"] += 1
        return compute(*args, **kwargs)

    monkeypatch.setattr(ref_precompute, "compute_reference_token_logps", counting)
    return count


@pytest.fixture(scope="session")
def saved_llava(tmp_path_factory):
    """A tiny LLaVA (seed 3) saved with its processor: `(folder, model, processor)` for the generation tests."""
    from rlhfv.tiny_models import build_llava, build_tokenizer

    folder = tmp_path_factory.mktemp("tiny-llava")
    model, processor = build_llava(build_tokenizer(), seed=3)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, model, processor
