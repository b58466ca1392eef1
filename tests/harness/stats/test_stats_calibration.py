"""Calibration of `harness.stats`: do 95% intervals cover the truth 95% of the time?

Each test runs at least 1,000 seeded replications on synthetic data with a known answer and
asserts the observed rate, which it reports in the assertion message. With R replications
the Monte Carlo standard error of a rate near 0.95 is about sqrt(0.95 * 0.05 / R), 0.5
points at R = 2,000, so the 93-97% window is about four standard errors wide on each side.
All tests are marked slow; the file runs in well under a minute.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats as scipy_stats

from harness import stats
from harness.stats.estimate import Estimate

pytestmark = pytest.mark.slow

ALPHAS = np.linspace(-1.0, 1.0, 21)
RESAMPLES = 999
LOW, HIGH = 0.93, 0.97


def slope_scores(rng: np.random.Generator, *, n: int, true_slope: float) -> np.ndarray:
    """[n, 21] scores: per-example intercepts, per-example slopes around `true_slope`
    (sd 0.3), and independent noise (sd 1) at every alpha."""
    intercepts = rng.normal(0.0, 1.0, size=(n, 1))
    slopes = rng.normal(true_slope, 0.3, size=(n, 1))
    return intercepts + slopes * ALPHAS + rng.normal(0.0, 1.0, size=(n, ALPHAS.size))


def rate(
    replications: int,
    *,
    stream: int,
    estimate: Callable[[np.random.Generator, int], Estimate],
    hit: Callable[[Estimate], bool],
) -> float:
    """Fraction of replications whose estimate satisfies `hit` (each seeded by its index)."""
    hits = 0
    for r in range(replications):
        est = estimate(np.random.default_rng([stream, r]), r)
        assert est.status == "ok", est.reason
        hits += bool(hit(est))
    return hits / replications


def covers(truth: float) -> Callable[[Estimate], bool]:
    return lambda est: est.ci_low <= truth <= est.ci_high


def test_slope_ci_covers_the_true_slope_95_percent_of_the_time():
    truth = 0.5

    def estimate(rng: np.random.Generator, seed: int) -> Estimate:
        scores = slope_scores(rng, n=100, true_slope=truth)
        return stats.slope_near_zero(ALPHAS, scores, n_resamples=RESAMPLES, seed=seed)

    coverage = rate(2000, stream=1, estimate=estimate, hit=covers(truth))
    assert LOW <= coverage <= HIGH, (
        f"95% BCa slope CI covered the true slope in {coverage:.2%} of 2000 replications "
        f"(n=100 examples x 21 alphas); expected {LOW:.0%}-{HIGH:.0%}"
    )


def test_slope_ci_excludes_zero_at_most_6_5_percent_of_the_time_under_the_null():
    def estimate(rng: np.random.Generator, seed: int) -> Estimate:
        scores = slope_scores(rng, n=100, true_slope=0.0)
        return stats.slope_near_zero(ALPHAS, scores, n_resamples=RESAMPLES, seed=seed)

    false_positive = rate(
        2000, stream=2, estimate=estimate, hit=lambda est: est.ci_low > 0 or est.ci_high < 0
    )
    assert false_positive <= 0.065, (
        f"'CI excludes zero' on null data (true slope 0) in {false_positive:.2%} of 2000 "
        "replications; expected at most 6.5%"
    )


def test_slope_near_zero_covers_the_local_slope_of_a_curved_response():
    # score = tanh(b * alpha): slope at 0 is b; within |alpha| <= 0.2 the curve is close to
    # linear (the least-squares slope there is about 1% below b), so the CI should cover b.
    truth = 0.8
    alphas = np.linspace(-2.0, 2.0, 41)

    def estimate(rng: np.random.Generator, seed: int) -> Estimate:
        b = rng.normal(truth, 0.3, size=(100, 1))
        scores = np.tanh(b * alphas) + rng.normal(0.0, 0.2, size=(100, alphas.size))
        return stats.slope_near_zero(
            alphas, scores, near=0.2, n_resamples=RESAMPLES, seed=seed
        )

    coverage = rate(1000, stream=3, estimate=estimate, hit=covers(truth))
    assert LOW <= coverage <= HIGH, (
        f"95% slope CI with near=0.2 covered the slope at 0 in {coverage:.2%} of 1000 "
        f"replications; expected {LOW:.0%}-{HIGH:.0%}"
    )


def test_bootstrap_mean_of_skewed_data_covers_the_true_mean():
    def estimate(rng: np.random.Generator, seed: int) -> Estimate:
        return stats.bootstrap_mean(rng.exponential(1.0, 100), n_resamples=RESAMPLES, seed=seed)

    coverage = rate(2000, stream=4, estimate=estimate, hit=covers(1.0))
    assert LOW <= coverage <= HIGH, (
        f"95% BCa CI of the mean of Exponential(1) samples (n=100) covered 1.0 in "
        f"{coverage:.2%} of 2000 replications; expected {LOW:.0%}-{HIGH:.0%}"
    )


def test_paired_ratio_covers_the_true_ratio_of_means():
    # x ~ N(1, 1), y = 0.5 x + N(2, 1): E[x] / E[y] = 1 / 2.5, with x and y correlated.
    truth = 1.0 / 2.5

    def estimate(rng: np.random.Generator, seed: int) -> Estimate:
        x = rng.normal(1.0, 1.0, 100)
        y = 0.5 * x + rng.normal(2.0, 1.0, 100)
        return stats.paired_ratio(x, y, n_resamples=RESAMPLES, seed=seed)

    coverage = rate(1000, stream=5, estimate=estimate, hit=covers(truth))
    assert LOW <= coverage <= HIGH, (
        f"95% BCa CI of mean(x)/mean(y) (n=100 correlated pairs) covered the true ratio in "
        f"{coverage:.2%} of 1000 replications; expected {LOW:.0%}-{HIGH:.0%}"
    )


def test_wilson_interval_covers_the_true_proportion_95_percent_of_the_time():
    p, n = 0.3, 200
    successes = np.random.default_rng([6, 0]).binomial(n, p, size=20_000)
    coverage = float(
        np.mean([covers(p)(stats.proportion(int(k), n, method="wilson")) for k in successes])
    )
    assert LOW <= coverage <= HIGH, (
        f"95% Wilson interval covered p={p} in {coverage:.2%} of 20000 replications "
        f"(n={n} trials); expected {LOW:.0%}-{HIGH:.0%}"
    )


def exact_coverage(n: int, p: float, method: str) -> float:
    """P(interval covers p) summed exactly over the binomial distribution of successes."""
    k = np.arange(n + 1)
    hit = [covers(p)(stats.proportion(int(j), n, method=method)) for j in k]
    return float(np.sum(scipy_stats.binom.pmf(k, n, p) * np.asarray(hit)))


@pytest.mark.parametrize("n", [20, 100, 400])
def test_wilson_coverage_averaged_over_p_is_close_to_95_percent(n):
    ps = np.linspace(0.02, 0.98, 49)
    average = float(np.mean([exact_coverage(n, p, "wilson") for p in ps]))
    assert 0.94 <= average <= 0.96, (
        f"Wilson 95% interval (n={n}) has exact coverage {average:.2%} averaged over "
        "p in [0.02, 0.98]; expected 94%-96%"
    )


@pytest.mark.parametrize("n", [10, 50, 200])
def test_clopper_pearson_coverage_is_never_below_95_percent(n):
    ps = np.linspace(0.01, 0.99, 49)
    worst = min(exact_coverage(n, p, "clopper-pearson") for p in ps)
    assert worst >= 0.95 - 1e-9, (
        f"Clopper-Pearson 95% interval (n={n}) has exact coverage {worst:.2%} at its worst p; "
        "it is exact, so it should never fall below 95%"
    )
