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
