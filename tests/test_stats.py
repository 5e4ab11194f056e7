import math

import numpy as np
import pytest

from frontier.errors import ConfigError
from frontier.stats import mean_ci, paired_difference, wilson_interval


def test_mean_ci_matches_student_t():
    mean, low, high = mean_ci([1.0, 2.0, 3.0, 4.0])
    # t(0.975, df=3) = 3.182446; sd = 1.290994; half-width = 3.182446 * 1.290994 / 2
    assert mean == pytest.approx(2.5)
    assert high - mean == pytest.approx(3.182446 * 1.290994 / 2, rel=1e-5)
    assert mean - low == pytest.approx(high - mean)


def test_mean_ci_of_one_sample_has_no_interval():
    mean, low, high = mean_ci([7.0])
    assert mean == 7.0 and math.isnan(low) and math.isnan(high)


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [(5, 10, 0.236593, 0.763407), (0, 10, 0.0, 0.277533), (10, 10, 0.722467, 1.0)],
)
def test_wilson_interval_known_values(successes, n, low, high):
    _, lo, hi = wilson_interval(successes, n)
    assert lo == pytest.approx(low, abs=1e-5)
    assert hi == pytest.approx(high, abs=1e-5)


@pytest.mark.parametrize(("successes", "n"), [(1, 0), (-1, 5), (6, 5)])
def test_wilson_interval_rejects_impossible_counts(successes, n):
    with pytest.raises(ConfigError):
        wilson_interval(successes, n)


def test_mean_ci_rejects_empty():
    with pytest.raises(ConfigError):
        mean_ci([])


def test_paired_difference_without_clusters_is_the_interval_of_the_differences():
    a, b = [1.0, 0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0, 1.0]
    assert paired_difference(a, b) == pytest.approx(mean_ci([1.0, 0.0, 0.0, 1.0, -1.0]))


def test_paired_difference_counts_a_cluster_of_copies_as_one_item():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, 40).astype(float), rng.integers(0, 2, 40).astype(float)
    singletons = paired_difference(a, b, clusters=list(range(40)))
    assert singletons == pytest.approx(mean_ci(a - b))
    # Every item asked three times about the same scene: the estimate stays, and so does the interval, where
    # treating the copies as independent items would narrow it by about √3.
    copies = paired_difference(np.repeat(a, 3), np.repeat(b, 3), clusters=np.repeat(np.arange(40), 3))
    assert copies == pytest.approx(singletons)
    naive = paired_difference(np.repeat(a, 3), np.repeat(b, 3))
    assert (naive[2] - naive[1]) < 0.7 * (copies[2] - copies[1])


def test_paired_difference_rejects_unpaired_items():
    with pytest.raises(ConfigError, match="equally long"):
        paired_difference([1.0, 0.0], [1.0])
    with pytest.raises(ConfigError, match="equally long"):
        paired_difference([1.0, 0.0], [1.0, 1.0], clusters=[0])


def test_paired_difference_over_unequal_clusters_is_the_cluster_robust_ratio():
    # Clusters of 1, 2 and 3 items: sums 1, 1, -1 over 6 items; mean 1/6. Residuals s_g - mean·n_g: 5/6, 2/3, -3/2.
    a = [1, 1, 0, 0, 0, 0]
    b = [0, 0, 0, 1, 0, 0]
    mean, low, high = paired_difference(a, b, clusters=[0, 1, 1, 2, 2, 2])
    se = math.sqrt(3 / 2 * ((5 / 6) ** 2 + (2 / 3) ** 2 + (3 / 2) ** 2)) / 6
    assert mean == pytest.approx(1 / 6)
    assert high - mean == pytest.approx(mean - low) == pytest.approx(4.302652729911275 * se)  # t(0.975, df=2)
    assert math.isnan(paired_difference([1, 0], [0, 0], clusters=[7, 7])[1])  # one cluster: no interval
