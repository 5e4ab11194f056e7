"""Confidence intervals for the figures frontier reports."""

from __future__ import annotations

import math
from collections.abc import Sequence

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


def paired_difference(
    a: Sequence[float], b: Sequence[float], clusters: Sequence | None = None, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Mean of a − b over paired items (two models scored on the same items) and its interval: `(mean, low, high)`.

    Pairing cancels what the items share (their difficulty), so a small difference between two models can be told
    from noise where two separate intervals overlap. Items in one of `clusters` (the questions about one image) are
    not independent: then the interval is the cluster-robust one of the ratio Σ(a − b) / n, with t on clusters − 1
    degrees of freedom. Without clusters it is `mean_ci` of the differences.
    """
    if len(a) != len(b) or (clusters is not None and len(clusters) != len(a)):
        raise ConfigError(
            f"paired_difference needs equally long a, b (and clusters), got {len(a)}, {len(b)}"
            + ("" if clusters is None else f", {len(clusters)}")
        )
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if clusters is None:
        return mean_ci(diff, confidence)
    if diff.size == 0:
        raise ConfigError("paired_difference needs at least one item")
    _, cluster_of = np.unique(np.asarray(clusters), return_inverse=True)
    sums, sizes = np.bincount(cluster_of, weights=diff), np.bincount(cluster_of)
    mean = float(sums.sum() / sizes.sum())
    groups = sums.size
    if groups == 1:
        return mean, math.nan, math.nan
    residuals = sums - mean * sizes
    se = math.sqrt(groups / (groups - 1) * float((residuals**2).sum())) / float(sizes.sum())
    half = float(stats.t.ppf(0.5 + confidence / 2, df=groups - 1)) * se
    return mean, mean - half, mean + half
