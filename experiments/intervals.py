"""Confidence intervals shared by the experiments."""

from __future__ import annotations

import math


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float | None, float | None, float | None]:
    """(proportion, low, high): the Wilson score interval, which unlike the normal approximation stays inside [0, 1]
    and keeps its coverage near 0 and 1 (small samples, rare errors); (None, None, None) when `n` is 0."""
    if n == 0:
        return None, None, None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, centre - half, centre + half


def _student_t_pdf(x: float, df: int) -> float:
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_norm - (df + 1) / 2 * math.log1p(x * x / df))


def student_t_quantile(q: float, df: int) -> float:
    """The q-quantile (q in (0.5, 1)) of Student's t with `df` degrees of freedom: the CDF by Simpson's rule from 0,
    inverted by bisection (no scipy needed; accurate to about 1e-8 for the quantiles used here)."""
    if not 0.5 < q < 1 or df < 1:
        raise ValueError(f"student_t_quantile needs 0.5 < q < 1 and df >= 1, got q={q}, df={df}")

    def cdf(t: float, steps: int = 4000) -> float:
        h = t / steps
        total = _student_t_pdf(0.0, df) + _student_t_pdf(t, df)
        total += sum((4 if i % 2 else 2) * _student_t_pdf(i * h, df) for i in range(1, steps))
        return 0.5 + total * h / 3

    low, high = 0.0, 1.0
    while cdf(high) < q:
        low, high = high, 2 * high
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf(mid) < q else (low, mid)
    return (low + high) / 2


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the t interval of a mean over independent runs (e.g. seeds), which, unlike a bootstrap
    over the images of one run, includes the spread between runs."""
    n = len(values)
    if n < 2:
        raise ValueError(f"a t interval needs at least 2 values, got {n}")
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = student_t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def sign_test(negative: int, n: int) -> float:
    """Two-sided exact sign test: the probability, with each sign equally likely, of a split at least as uneven as
    `negative` of `n` (ties left out of `n` beforehand)."""
    k = min(negative, n - negative)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
