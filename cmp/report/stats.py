"""Summaries over seeds: mean and a 95% Student-t confidence interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats


@dataclass(frozen=True)
class Estimate:
    """Mean of n values and the half-width of its 95% interval (None for n < 2)."""

    mean: float
    half_width: float | None
    n: int

    def format(self, scale: float = 100.0, digits: int = 2) -> str:
        """`84.12 ± 0.35` (scaled, e.g. to percent), or the mean alone for one value."""
        if self.half_width is None:
            return f"{self.mean * scale:.{digits}f}"
        return f"{self.mean * scale:.{digits}f} ± {self.half_width * scale:.{digits}f}"


def estimate(values: Sequence[float], confidence: float = 0.95) -> Estimate:
    """Mean and t-interval half-width t_{(1+c)/2, n-1} * s / sqrt(n), s the sample std."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n < 2:
        return Estimate(mean, None, n)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    t = float(scipy_stats.t.ppf((1 + confidence) / 2, n - 1))
    return Estimate(mean, t * math.sqrt(variance / n), n)
