"""Confidence intervals for the figures frontier reports."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from frontier.errors import ConfigError


def mean_ci(samples: list[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval of repeated measurements: `(mean, low, high)`.

    With one sample the interval is undefined and returned as `(x, nan, nan)`.
    """
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        raise ConfigError("mean_ci needs at least one sample")
    mean = float(x.mean())
    if x.size == 1:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, df=x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """Proportion and Wilson score interval `(p, low, high)`: well behaved at 0 %, 100 % and small n."""
    if n <= 0 or not 0 <= successes <= n:
        raise ConfigError(f"wilson_interval needs 0 <= successes <= n and n > 0, got {successes}/{n}")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)
