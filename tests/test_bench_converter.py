"""The converter memory benchmark: a fresh process converts and saves, and reports what it measured."""

import pytest

from bench.bench_converter import measure_memory, write_corrections


@pytest.mark.slow  # over 5 s on 2 cores (make test-slow)
def test_memory_measurement_converts_every_pair_and_reports_a_peak(tmp_path):
    result = measure_memory((300,), folder=str(tmp_path))
    (run,) = result["runs"]
    assert run["pairs"] == 300
    # the peak is at least what the process held after its imports, and the RSS counts more than anonymous memory
    assert 0 < run["baseline_anon_mib"] <= run["peak_anon_mib"] <= run["peak_rss_mib"]
    assert run["input_mib"] == pytest.approx(0.34, rel=0.3)  # 300 rows of two ~100-word answers (~1.2 kB a row)
    assert list(tmp_path.iterdir()) == []  # inputs and outputs removed


def test_synthetic_corrections_have_about_100_words_per_answer(tmp_path):
    import json

    path = tmp_path / "c.jsonl"
    assert write_corrections(str(path), 50) == 50
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    words = [len(row["response"].split()) for row in rows]
    assert 90 <= sum(words) / len(words) <= 115
    assert all(row["response"] != row["corrected"] for row in rows)
