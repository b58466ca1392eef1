"""Benchmarks for `harness.stats` (run with ``pytest benchmarks/``; not part of the default run).

* The slope CI of the requirement: 500 examples x 21 alphas, 10,000 resamples, BCa, in under
  0.2 s and under 100 MB of extra memory.
* Why per-example slopes: the same bootstrap done the general way, handing scipy a
  per-resample pooled regression, on a smaller problem; the two give the same bootstrap
  distribution and the fast way must be at least 20 times faster.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats as scipy_stats

from harness import stats

ALPHAS = np.linspace(-1.0, 1.0, 21)


def slope_problem(n: int, *, seed: int = 0) -> np.ndarray:
    """[n, 21] scores with per-example intercepts and slopes (mean 0.3) plus noise."""
    rng = np.random.default_rng(seed)
    slopes = rng.normal(0.3, 0.2, size=(n, 1))
    return rng.normal(size=(n, 1)) + slopes * ALPHAS + rng.normal(0.0, 0.5, size=(n, 21))


def best_time(fn: Callable[[], object], *, rounds: int) -> float:
    """Fastest of `rounds` wall-clock timings (seconds), after one warm-up call."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def test_slope_ci_over_500_examples_and_21_alphas_takes_under_0_2_seconds(benchmark):
    scores = slope_problem(500)
    est = benchmark(stats.slope_near_zero, ALPHAS, scores, n_resamples=10_000, seed=0)
    assert est.status == "ok"
    assert est.bootstrap_distribution.shape == (10_000,)
    seconds = best_time(
        lambda: stats.slope_near_zero(ALPHAS, scores, n_resamples=10_000, seed=0), rounds=5
    )
    assert seconds < 0.2, f"slope CI (500 x 21, 10,000 resamples, BCa) took {seconds:.3f} s"


def test_slope_ci_over_500_examples_and_21_alphas_allocates_under_100_mb():
    scores = slope_problem(500)
    stats.slope_near_zero(ALPHAS, scores, n_resamples=10_000, seed=0)  # warm imports
    tracemalloc.start()
    try:
        stats.slope_near_zero(ALPHAS, scores, n_resamples=10_000, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100e6, f"slope CI peaked at {peak / 1e6:.1f} MB of traced allocations"


def general_regression_bootstrap(scores: np.ndarray, *, n_resamples: int, seed: int):
    """The slow way: scipy resamples example indices and refits a pooled OLS line to all
    (alpha, score) points of each resample, one resample at a time."""
    n, k = scores.shape
    x = np.tile(ALPHAS, n)

    def pooled_slope(idx: np.ndarray) -> float:
        return np.polyfit(x, scores[idx].ravel(), deg=1)[0]

    return scipy_stats.bootstrap(
        (np.arange(n),),
        pooled_slope,
        n_resamples=n_resamples,
        vectorized=False,
        method="percentile",
        rng=np.random.default_rng(seed),
    )


def test_per_example_slopes_are_at_least_20_times_faster_than_a_general_regression(benchmark):
    scores = slope_problem(100)

    def fast():
        return stats.slope_near_zero(
            ALPHAS, scores, method="percentile", n_resamples=999, seed=0
        )

    def slow():
        return general_regression_bootstrap(scores, n_resamples=999, seed=0)

    slow_result = benchmark.pedantic(slow, rounds=3, iterations=1)
    fast_result = fast()
    # Same seed, same example indices: the shortcut is the same bootstrap, not an approximation.
    np.testing.assert_allclose(
        fast_result.bootstrap_distribution, slow_result.bootstrap_distribution, rtol=1e-9
    )
    assert fast_result.ci_low == pytest.approx(slow_result.confidence_interval.low, rel=1e-9)
    assert fast_result.ci_high == pytest.approx(slow_result.confidence_interval.high, rel=1e-9)
    fast_s = best_time(fast, rounds=5)
    slow_s = best_time(slow, rounds=2)
    ratio = slow_s / fast_s
    assert ratio >= 20, (
        f"per-example slopes took {fast_s * 1e3:.2f} ms and the general per-resample "
        f"regression {slow_s * 1e3:.1f} ms (100 x 21, 999 resamples): only {ratio:.1f}x faster"
    )
