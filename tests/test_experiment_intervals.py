"""The experiments' intervals and tests against published tables and hand counts."""

import math

import pytest

from experiments.intervals import sign_test, student_t_quantile, t_interval


@pytest.mark.parametrize(
    "df,expected",  # two-sided 95% critical values of Student's t, as printed in standard tables
    [(1, 12.706), (2, 4.303), (4, 2.776), (5, 2.571), (10, 2.228), (30, 2.042)],
)
def test_t_quantiles_match_the_table(df, expected):
    assert student_t_quantile(0.975, df) == pytest.approx(expected, abs=1e-3)


def test_t_quantile_refuses_what_it_cannot_give():
    with pytest.raises(ValueError, match="0.5 < q < 1"):
        student_t_quantile(0.3, 4)


def test_t_interval_by_hand():
    values = [-0.10, -0.02, -0.06]  # mean -0.06, sd 0.04, n 3: half-width 4.303 * 0.04 / sqrt(3)
    mean, low, high = t_interval(values)
    half = 4.302653 * 0.04 / math.sqrt(3)
    assert mean == pytest.approx(-0.06)
    assert (low, high) == pytest.approx((-0.06 - half, -0.06 + half), abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        t_interval([0.1])


def test_sign_test_by_hand():
    assert sign_test(6, 6) == pytest.approx(2 / 64)  # all six one way: 2 x (1/2)^6
    assert sign_test(0, 6) == pytest.approx(2 / 64)
    assert sign_test(5, 6) == pytest.approx(2 * 7 / 64)  # 2 x P(<= 1 of 6)
    assert sign_test(3, 6) == 1.0
    assert sign_test(3, 3) == pytest.approx(0.25)
