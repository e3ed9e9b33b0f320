"""The statistics of the Fact-RLHF evidence script, against textbook values."""

import pytest

from experiments.fact_rlhf import paired_bootstrap, wilson


def test_wilson_interval():
    # Wilson 95% intervals (z = 1.96), as tabulated: 5/10 -> [0.2366, 0.7634]; 0/10 -> [0, 0.2775]
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(0, 0) == (None, None)  # no data, no interval (null in the JSON reports)


def test_paired_bootstrap():
    same = [True, False, True, True]
    assert paired_bootstrap(same, same) == (0.0, 0.0, 0.0)
    # a is right on every pair, b on every other one: the mean difference is 0.5, with an interval around it
    mean, low, high = paired_bootstrap([True] * 10, [True, False] * 5, draws=500)
    assert mean == 0.5 and 0.0 < low <= 0.5 <= high <= 1.0
