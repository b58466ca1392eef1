"""`stats.bootstrap_statistic`: the bootstrap of any whole-sample statistic, pinned against
`bootstrap_ci` (same resample indices), calibrated on planted and null data, and its errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import spearmanr

from harness import stats
from harness.errors import StatsError


def test_the_mean_agrees_with_bootstrap_ci_resample_for_resample():
    x = np.random.default_rng(0).normal(1.0, 2.0, 80)
    for method in ("percentile", "BCa"):
        ours = stats.bootstrap_statistic(x, np.mean, name="mean", seed=3, n_resamples=999, method=method)
        ref = stats.bootstrap_ci(x, seed=3, n_resamples=999, method=method)
        assert ours.value == pytest.approx(ref.value, abs=1e-12)
        assert (ours.ci_low, ours.ci_high) == pytest.approx((ref.ci_low, ref.ci_high), abs=1e-9)
        assert ours.n == 80 and ours.statistic == "mean" and ours.unit == "examples"


def test_rows_are_resampled_whole():
    """A statistic of two per-example quantities sees each example's pair together: the
    correlation of x with itself is 1 in every resample."""
    x = np.random.default_rng(1).normal(size=40)
    both = np.stack([x, x], 1)
    est = stats.bootstrap_statistic(both, lambda m: np.corrcoef(m[:, 0], m[:, 1])[0, 1], name="r", seed=0,
                                    n_resamples=200)
    assert est.ci_low == pytest.approx(1.0) and est.ci_high == pytest.approx(1.0)


def test_same_seed_same_interval_and_other_levels_reuse_the_resamples():
    x = np.random.default_rng(2).normal(size=(50, 3))
    f = lambda m: float(m.mean(0)[0] - m.mean(0)[1])  # noqa: E731
    a = stats.bootstrap_statistic(x, f, name="d", seed=7, n_resamples=500)
    b = stats.bootstrap_statistic(x, f, name="d", seed=7, n_resamples=500)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    wide = a.at_level(0.99)
    assert wide.ci_low <= a.ci_low and wide.ci_high >= a.ci_high and wide.level == 0.99


def test_coverage_of_a_ratio_of_means():
    """mean(x) / mean(y) over paired examples, true value 0.5: the 95% percentile CI covers it
    in about 95% of replications (60 examples; a percentile interval runs a little narrow)."""
    rng = np.random.default_rng(5)
    ratio = lambda m: m[:, 0].mean() / m[:, 1].mean()  # noqa: E731
    reps = 200
    covered = sum(
        (lambda e: e.ci_low <= 0.5 <= e.ci_high)(stats.bootstrap_statistic(
            np.stack([rng.normal(2, 1, 60), rng.normal(4, 1, 60)], 1), ratio, name="ratio", seed=r, n_resamples=400))
        for r in range(reps))
    assert 0.89 <= covered / reps <= 0.99


def test_power_and_false_positives_of_a_rank_correlation():
    """Spearman's rho of two noisy mean maps over pairs: the CI lies above 0 in most
    replications when the maps share a pattern (planted) and rarely when they share none
    (null: about the 2.5% of a one-sided reading of a 95% interval)."""
    rng = np.random.default_rng(11)
    pattern = np.linspace(-1, 1, 12)
    rho = lambda m: spearmanr(m[:, 0].mean(0), m[:, 1].mean(0)).statistic  # noqa: E731
    found, false_pos, reps = 0, 0, 60
    for r in range(reps):
        planted = np.stack([pattern + rng.normal(0, 2, (60, 12)), pattern + rng.normal(0, 2, (60, 12))], 1)
        found += stats.bootstrap_statistic(planted, rho, name="rho", seed=r, n_resamples=200).ci_low > 0
        null = np.stack([rng.normal(0, 1, (60, 12)), rng.normal(0, 1, (60, 12))], 1)
        false_pos += stats.bootstrap_statistic(null, rho, name="rho", seed=r, n_resamples=200).ci_low > 0
    assert found / reps >= 0.8
    assert false_pos / reps <= 0.08


def test_degenerate_and_bad_input():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        one = stats.bootstrap_statistic(np.ones((1, 3)), lambda m: float(m.sum()), name="s", seed=0)
        assert one.degenerate and "at least 2" in one.reason
        nan = stats.bootstrap_statistic(np.ones((5, 3)), lambda m: float("nan"), name="s", seed=0)
        assert nan.degenerate and "finite" in nan.reason
    with pytest.warns(RuntimeWarning, match="degenerate s estimate"):
        stats.bootstrap_statistic(np.ones((1, 3)), lambda m: 0.0, name="s", seed=0)
    with pytest.raises(StatsError, match="`statistic` must be a callable"):
        stats.bootstrap_statistic(np.ones(5), "mean", name="s", seed=0)
    with pytest.raises(StatsError, match="one number, got an array of shape"):
        stats.bootstrap_statistic(np.ones((5, 2)), lambda m: m.mean(0), name="s", seed=0)
    with pytest.raises(StatsError, match="level"):
        stats.bootstrap_statistic(np.ones(5), np.mean, name="s", seed=0, level=1.5)


@pytest.mark.parametrize("method", ["percentile", "BCa"])
def test_a_statistic_not_finite_on_some_resamples_says_how_many_and_no_wrong_advice(method):
    """NaN on the resamples that miss example 0 (finite on the data): the reason counts them
    (counted here by the statistic itself), and never advises the method already used."""
    x = np.arange(12, dtype=np.float64)
    missing = []

    def stat(m):
        ok = bool((m == 0).any())
        missing.append(not ok)
        return float(m.mean()) if ok else float("nan")

    with pytest.warns(RuntimeWarning, match="degenerate s estimate"):
        est = stats.bootstrap_statistic(x, stat, name="s", seed=4, n_resamples=300, method=method)
    resampled = missing[1:301]  # the value on the data first, then one call per resample
    assert not missing[0] and 0 < sum(resampled) < 300
    assert est.degenerate and est.value == pytest.approx(5.5)
    assert f"s is not finite on {sum(resampled)} of 300 resamples" in est.reason
    assert f"the {method} interval needs it finite on every resample" in est.reason
    assert "method='percentile'" not in est.reason and "more resamples" not in est.reason
