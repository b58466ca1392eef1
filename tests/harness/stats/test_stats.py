"""Fast unit and property tests for `harness.stats` (calibration: test_stats_calibration.py)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats as scipy_stats

from harness import stats
from harness.errors import StatsError
from harness.stats.estimate import Estimate

ALPHAS = np.linspace(-1.0, 1.0, 21)
FAST = dict(n_resamples=199)
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def noisy_scores(*, n: int = 60, slope: float = 0.3, seed: int = 0) -> np.ndarray:
    """[n, 21] scores: per-example intercepts and slopes around `slope`, plus noise."""
    rng = np.random.default_rng(seed)
    intercepts = rng.normal(size=(n, 1))
    slopes = rng.normal(slope, 0.2, size=(n, 1))
    return intercepts + slopes * ALPHAS + rng.normal(0.0, 0.5, size=(n, ALPHAS.size))


def quietly(fn, *args, **kwargs):
    """Call fn with degenerate-data warnings silenced (for property tests)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


finite_floats = st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False)


# ----------------------------------------------------------------------------------------
# bootstrap_ci / bootstrap_mean


def test_bootstrap_mean_matches_scipy_bootstrap_with_the_same_rng():
    data = np.random.default_rng(1).normal(size=80)
    est = stats.bootstrap_mean(data, n_resamples=999, seed=7)
    ref = scipy_stats.bootstrap(
        (data,), np.mean, n_resamples=999, method="BCa", rng=np.random.default_rng(7)
    )
    assert est.value == pytest.approx(data.mean())
    assert est.ci_low == pytest.approx(ref.confidence_interval.low, rel=1e-12)
    assert est.ci_high == pytest.approx(ref.confidence_interval.high, rel=1e-12)
    np.testing.assert_allclose(est.bootstrap_distribution, ref.bootstrap_distribution)


def test_bootstrap_mean_records_its_metadata():
    est = stats.bootstrap_mean(np.arange(10.0), level=0.9, method="percentile", seed=3, **FAST)
    assert est.status == "ok"
    assert est.statistic == "mean"
    assert est.method == "bootstrap percentile"
    assert est.unit == "examples"
    assert (est.seed, est.n, est.level) == (3, 10, 0.9)
    assert est.bootstrap_distribution.shape == (199,)


def test_bootstrap_distribution_is_read_only():
    est = stats.bootstrap_mean(np.arange(10.0), seed=0, **FAST)
    with pytest.raises(ValueError):
        est.bootstrap_distribution[0] = 1.0


def test_bootstrap_ci_computes_the_median():
    data = np.array([0.0, 1.0, 2.0, 3.0, 100.0, 4.0, 5.0])
    est = stats.bootstrap_ci(data, statistic="median", method="percentile", seed=0, **FAST)
    assert est.value == 3.0
    assert est.statistic == "median"
    assert est.ci_low <= 3.0 <= est.ci_high


def test_method_names_are_case_insensitive():
    data = np.arange(12.0)
    a = stats.bootstrap_mean(data, method="bca", seed=0, **FAST)
    b = stats.bootstrap_mean(data, method="BCa", seed=0, **FAST)
    assert a == b and a.method == "bootstrap BCa"


def test_same_seed_gives_an_identical_estimate():
    data = np.random.default_rng(2).normal(size=40)
    a = stats.bootstrap_mean(data, seed=11, **FAST)
    b = stats.bootstrap_mean(data, seed=11, **FAST)
    assert a == b
    np.testing.assert_array_equal(a.bootstrap_distribution, b.bootstrap_distribution)


def test_different_seeds_give_different_distributions():
    data = np.random.default_rng(2).normal(size=40)
    a = stats.bootstrap_mean(data, seed=1, **FAST)
    b = stats.bootstrap_mean(data, seed=2, **FAST)
    assert not np.array_equal(a.bootstrap_distribution, b.bootstrap_distribution)


def test_bootstrap_accepts_a_torch_tensor():
    torch = pytest.importorskip("torch")
    data = torch.linspace(0, 1, 20, requires_grad=True)
    est = stats.bootstrap_mean(data, seed=0, **FAST)
    assert est.value == pytest.approx(0.5)


@PROPERTY
@given(
    data=hnp.arrays(np.float64, st.integers(2, 40), elements=finite_floats),
    seed=st.integers(0, 2**31),
)
def test_percentile_ci_contains_the_point_estimate(data, seed):
    est = quietly(stats.bootstrap_mean, data, method="percentile", seed=seed, **FAST)
    if est.status == "ok":
        assert est.ci_low <= est.value <= est.ci_high


@PROPERTY
@given(
    data=hnp.arrays(np.float64, st.integers(0, 30), elements=finite_floats),
    method=st.sampled_from(["BCa", "percentile"]),
)
def test_bounds_are_never_nan_when_status_is_ok(data, method):
    est = quietly(stats.bootstrap_mean, data, method=method, seed=0, **FAST)
    if est.status == "ok":
        assert math.isfinite(est.ci_low) and math.isfinite(est.ci_high)
        assert est.ci_low <= est.ci_high
    else:
        assert est.reason
        assert est.ci_low == est.value or math.isnan(est.value)


# ----------------------------------------------------------------------------------------
# Degenerate input


def test_constant_data_is_degenerate_with_a_readable_reason():
    with pytest.warns(RuntimeWarning, match="constant data"):
        est = stats.bootstrap_mean(np.full(12, 0.5), seed=0)
    assert est.status == "degenerate" and est.degenerate
    assert est.reason == (
        "constant data: all 12 values equal 0.5; a bootstrap CI is not informative"
    )
    assert est.value == est.ci_low == est.ci_high == 0.5


def test_a_single_example_is_degenerate_with_its_value():
    with pytest.warns(RuntimeWarning, match="1 example; a bootstrap CI needs at least 2"):
        est = stats.bootstrap_mean([3.0], seed=0)
    assert est.status == "degenerate"
    assert est.value == est.ci_low == est.ci_high == 3.0


def test_no_examples_is_degenerate_with_nan_value():
    with pytest.warns(RuntimeWarning, match="0 examples"):
        est = stats.bootstrap_mean([], seed=0)
    assert est.status == "degenerate"
    assert math.isnan(est.value) and math.isnan(est.ci_low) and math.isnan(est.ci_high)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data_is_degenerate(bad):
    data = np.arange(10.0)
    data[4] = bad
    with pytest.warns(RuntimeWarning, match="1 of 10 values are NaN or inf"):
        est = stats.bootstrap_mean(data, seed=0)
    assert est.status == "degenerate"
    assert math.isnan(est.value)


def test_bca_that_scipy_cannot_compute_is_degenerate_and_suggests_percentile():
    data = np.array([0.0] * 19 + [1.0])  # every jackknife median is 0: BCa's acceleration is 0/0
    with pytest.warns(RuntimeWarning, match="the BCa interval is undefined for this data"):
        est = stats.bootstrap_ci(data, statistic="median", seed=0, **FAST)
    assert est.status == "degenerate"
    assert "try method='percentile'" in est.reason
    assert est.value == est.ci_low == est.ci_high == 0.0
    assert est.bootstrap_distribution is not None
    ok = stats.bootstrap_ci(data, statistic="median", method="percentile", seed=0, **FAST)
    assert ok.status == "ok"


def test_degenerate_estimate_reports_its_reason_in_to_dict():
    with pytest.warns(RuntimeWarning):
        est = stats.bootstrap_mean(np.ones(5), seed=0)
    assert est.to_dict()["status"] == "degenerate"
    assert "constant data" in est.to_dict()["reason"]


# ----------------------------------------------------------------------------------------
# slope_near_zero


def test_mean_of_per_example_slopes_equals_the_pooled_ols_slope():
    scores = noisy_scores(n=50)
    est = stats.slope_near_zero(ALPHAS, scores, seed=0, **FAST)
    pooled = np.polyfit(np.tile(ALPHAS, 50), scores.ravel(), deg=1)[0]
    assert est.value == pytest.approx(pooled, rel=1e-10)


def test_identical_per_example_slopes_are_degenerate_constant_data():
    scores = np.arange(5.0)[:, None] + 0.25 * ALPHAS
    with pytest.warns(RuntimeWarning, match="constant data: all 5 per-example slopes equal 0.25"):
        est = stats.slope_near_zero(ALPHAS, scores, seed=0)
    assert est.status == "degenerate"
    assert est.value == pytest.approx(0.25)


def test_slope_metadata_names_examples_as_the_unit():
    est = stats.slope_near_zero(ALPHAS, noisy_scores(n=30), seed=4, **FAST)
    assert (est.statistic, est.unit, est.n, est.seed) == ("slope", "examples", 30, 4)
    assert est.method == "bootstrap BCa"
    assert est.ci_low < 0.3 < est.ci_high


def test_near_keeps_only_alphas_within_the_radius():
    scores = noisy_scores(n=40)
    keep = np.abs(ALPHAS) <= 0.3
    a = stats.slope_near_zero(ALPHAS, scores, near=0.3, seed=0, **FAST)
    b = stats.slope_near_zero(ALPHAS[keep], scores[:, keep], seed=0, **FAST)
    assert a == b


def test_nan_scores_outside_the_near_range_are_ignored():
    scores = noisy_scores(n=40)
    scores[:, 0] = np.nan  # alpha = -1
    est = stats.slope_near_zero(ALPHAS, scores, near=0.5, seed=0, **FAST)
    assert est.status == "ok"


def test_nan_scores_inside_the_range_make_the_slope_degenerate():
    scores = noisy_scores(n=40)
    scores[3, 10] = np.nan
    with pytest.warns(RuntimeWarning, match="1 of 840 scores in range are NaN or inf"):
        est = stats.slope_near_zero(ALPHAS, scores, seed=0)
    assert est.status == "degenerate"


def test_fewer_than_two_distinct_alphas_in_range_is_degenerate():
    with pytest.warns(RuntimeWarning, match=r"only 1 distinct alpha with \|alpha\| <= 0.05"):
        est = stats.slope_near_zero(ALPHAS, noisy_scores(), near=0.05, seed=0)
    assert est.status == "degenerate"
    assert "widen `near`" in est.reason
    assert math.isnan(est.value) and math.isnan(est.ci_low)


def test_repeated_alphas_do_not_count_as_distinct():
    with pytest.warns(RuntimeWarning, match="only 1 distinct alpha in `alphas`"):
        est = stats.slope_near_zero([0.5, 0.5], np.ones((4, 2)), seed=0)
    assert est.status == "degenerate"


def test_a_single_example_slope_is_degenerate_with_its_value():
    scores = 2.0 * ALPHAS[None, :] + 1.0
    with pytest.warns(RuntimeWarning, match="1 example"):
        est = stats.slope_near_zero(ALPHAS, scores, seed=0)
    assert est.value == pytest.approx(2.0)


@PROPERTY
@given(c=st.floats(-10, 10, allow_nan=False), seed=st.integers(0, 1000))
def test_adding_c_times_alpha_shifts_the_slope_by_exactly_c(c, seed):
    scores = noisy_scores(n=25, seed=seed)
    base = stats.slope_near_zero(ALPHAS, scores, method="percentile", seed=seed, **FAST)
    shifted = stats.slope_near_zero(
        ALPHAS, scores + c * ALPHAS, method="percentile", seed=seed, **FAST
    )
    assert shifted.value == pytest.approx(base.value + c, abs=1e-9)
    assert shifted.ci_low == pytest.approx(base.ci_low + c, abs=1e-9)
    assert shifted.ci_high == pytest.approx(base.ci_high + c, abs=1e-9)
    np.testing.assert_allclose(
        shifted.bootstrap_distribution, base.bootstrap_distribution + c, atol=1e-9
    )


@PROPERTY
@given(seed=st.integers(0, 1000), scale=st.floats(0.1, 10))
def test_slope_ignores_per_example_offsets_and_scales_with_the_scores(seed, scale):
    scores = noisy_scores(n=25, seed=seed)
    offsets = np.random.default_rng(seed).normal(size=(25, 1)) * 100
    base = stats.slope_near_zero(ALPHAS, scores, seed=seed, **FAST)
    moved = stats.slope_near_zero(ALPHAS, scale * (scores + offsets), seed=seed, **FAST)
    assert moved.value == pytest.approx(scale * base.value, rel=1e-9, abs=1e-9)
    assert moved.ci_low == pytest.approx(scale * base.ci_low, rel=1e-6, abs=1e-9)
    assert moved.ci_high == pytest.approx(scale * base.ci_high, rel=1e-6, abs=1e-9)


# ----------------------------------------------------------------------------------------
# Paired statistics and ratios


def test_paired_difference_is_the_bootstrap_mean_of_differences():
    rng = np.random.default_rng(5)
    x, y = rng.normal(1, 1, 40), rng.normal(0, 1, 40)
    est = stats.paired_difference(x, y, seed=2, **FAST)
    ref = stats.bootstrap_mean(x - y, seed=2, **FAST)
    assert (est.value, est.ci_low, est.ci_high) == (ref.value, ref.ci_low, ref.ci_high)
    assert est.statistic == "mean difference" and est.unit == "examples"


def test_paired_difference_of_identical_shifts_is_degenerate():
    x = np.arange(10.0)
    with pytest.warns(RuntimeWarning, match="all 10 differences x - y equal 1"):
        est = stats.paired_difference(x + 1, x, seed=0)
    assert est.value == est.ci_low == est.ci_high == 1.0


def test_paired_ratio_covers_the_ratio_of_means():
    rng = np.random.default_rng(6)
    x, y = rng.normal(1, 0.5, 60), rng.normal(2, 0.5, 60)
    est = stats.paired_ratio(x, y, seed=0, **FAST)
    assert est.status == "ok"
    assert est.value == pytest.approx(x.mean() / y.mean())
    assert est.ci_low < est.value < est.ci_high
    assert est.statistic == "ratio of means"


def test_same_seed_bootstraps_are_paired_so_ratio_of_equals_paired_ratio():
    rng = np.random.default_rng(7)
    x, y = rng.normal(1, 1, 50), rng.normal(3, 1, 50)
    direct = stats.paired_ratio(x, y, method="percentile", seed=3, **FAST)
    composed = stats.ratio_of(
        stats.bootstrap_mean(x, seed=3, **FAST), stats.bootstrap_mean(y, seed=3, **FAST)
    )
    np.testing.assert_allclose(composed.bootstrap_distribution, direct.bootstrap_distribution)
    assert composed.ci_low == pytest.approx(direct.ci_low)
    assert composed.ci_high == pytest.approx(direct.ci_high)
    assert composed.method == "bootstrap percentile (ratio of distributions)"
    assert composed.seed == 3


def test_paired_ratio_with_a_denominator_near_zero_is_degenerate():
    rng = np.random.default_rng(8)
    x, y = rng.normal(1, 1, 50), rng.normal(0.0, 1, 50) + 0.05
    with pytest.warns(RuntimeWarning, match="denominator's 95% interval .* includes 0"):
        est = stats.paired_ratio(x, y, seed=0, **FAST)
    assert est.status == "degenerate"
    assert "the ratio is unbounded" in est.reason
    assert est.value == est.ci_low == pytest.approx(x.mean() / y.mean())


def test_paired_ratio_with_zero_mean_denominator_is_undefined():
    with pytest.warns(RuntimeWarning, match="denominator's mean is 0"):
        est = stats.paired_ratio([1.0, 2.0, 3.0], [1.0, -1.0, 0.0], seed=0)
    assert math.isnan(est.value)


def test_paired_ratio_with_nan_is_degenerate():
    with pytest.warns(RuntimeWarning, match="1 of 6 values in x and y are NaN or inf"):
        est = stats.paired_ratio([1.0, np.nan, 3.0], [1.0, 2.0, 3.0], seed=0)
    assert est.status == "degenerate"


def test_ratio_of_with_a_denominator_straddling_zero_is_degenerate():
    rng = np.random.default_rng(9)
    num = stats.bootstrap_mean(rng.normal(1, 1, 40), seed=0, **FAST)
    den = stats.bootstrap_mean(rng.normal(0, 1, 40), seed=0, **FAST)
    with pytest.warns(RuntimeWarning, match="includes 0, so the ratio is unbounded"):
        est = stats.ratio_of(num, den)
    assert est.status == "degenerate"
    assert est.ci_low == est.ci_high == est.value


def test_ratio_of_a_degenerate_input_is_degenerate():
    num = stats.bootstrap_mean(np.arange(10.0), seed=0, **FAST)
    with pytest.warns(RuntimeWarning):
        den = stats.bootstrap_mean(np.ones(10), seed=0, **FAST)
    with pytest.warns(RuntimeWarning, match="the denominator is degenerate: constant data"):
        est = stats.ratio_of(num, den)
    assert est.status == "degenerate"


def test_ratio_of_uses_the_level_asked_for():
    rng = np.random.default_rng(10)
    num = stats.bootstrap_mean(rng.normal(1, 1, 40), seed=0, **FAST)
    den = stats.bootstrap_mean(rng.normal(4, 1, 40), seed=0, **FAST)
    wide = stats.ratio_of(num, den, level=0.99)
    narrow = stats.ratio_of(num, den, level=0.5)
    assert wide.level == 0.99
    assert wide.ci_low < narrow.ci_low < narrow.ci_high < wide.ci_high


# ----------------------------------------------------------------------------------------
# Proportions


@pytest.mark.parametrize(
    ("method", "scipy_method"), [("wilson", "wilson"), ("clopper-pearson", "exact")]
)
@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (1, 1), (37, 200)])
def test_proportion_matches_scipy_binomtest(method, scipy_method, k, n):
    est = stats.proportion(k, n, level=0.9, method=method)
    ref = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.9, method=scipy_method)
    assert est.ci_low == pytest.approx(ref.low, abs=1e-12)
    assert est.ci_high == pytest.approx(ref.high, abs=1e-12)
    assert est.value == k / n
    assert (est.statistic, est.unit, est.method, est.n) == ("proportion", "trials", method, n)


@pytest.mark.parametrize("method", ["wilson", "clopper-pearson"])
def test_proportion_is_exact_at_zero_and_all_successes(method):
    assert stats.proportion(0, 25, method=method).ci_low == 0.0
    assert stats.proportion(25, 25, method=method).ci_high == 1.0


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 1000),
    method=st.sampled_from(["wilson", "clopper-pearson"]),
    level=st.floats(0.5, 0.999),
)
def test_wilson_and_clopper_pearson_intervals_are_inside_the_unit_interval(
    data, n, method, level
):
    k = data.draw(st.integers(0, n))
    est = stats.proportion(k, n, level=level, method=method)
    assert 0.0 <= est.ci_low <= est.value <= est.ci_high <= 1.0
    assert est.status == "ok"


def test_clopper_pearson_is_wider_than_wilson():
    w = stats.proportion(7, 40, method="wilson")
    cp = stats.proportion(7, 40, method="clopper-pearson")
    assert cp.ci_low < w.ci_low and w.ci_high < cp.ci_high


def test_proportion_of_counts_true_outcomes():
    outcomes = np.array([True, False, True, True, False])
    assert stats.proportion_of(outcomes) == stats.proportion(3, 5)
    assert stats.proportion_of([1, 0, 1, 1, 0]) == stats.proportion(3, 5)


def test_proportion_of_no_trials_is_degenerate():
    with pytest.warns(RuntimeWarning, match=r"no trials \(n=0\)"):
        est = stats.proportion_of([])
    assert est.status == "degenerate" and math.isnan(est.value)


def test_proportion_of_nan_outcomes_is_degenerate():
    with pytest.warns(RuntimeWarning, match="1 of 3 outcomes are NaN or inf"):
        est = stats.proportion_of([1.0, np.nan, 0.0])
    assert est.status == "degenerate"


# ----------------------------------------------------------------------------------------
# equivalent and bootstrap_pvalue


def make_estimate(*, low: float, high: float, distribution=None, status: str = "ok"):
    return Estimate(
        value=(low + high) / 2,
        ci_low=low,
        ci_high=high,
        level=0.95,
        n=10,
        method="test",
        status=status,
        bootstrap_distribution=None if distribution is None else np.asarray(distribution),
    )


def test_equivalent_requires_the_whole_ci_inside_the_margin():
    assert stats.equivalent(make_estimate(low=-0.04, high=0.03), margin=0.05)
    assert stats.equivalent(make_estimate(low=-0.05, high=0.05), margin=0.05)
    assert not stats.equivalent(make_estimate(low=-0.04, high=0.06), margin=0.05)
    assert not stats.equivalent(make_estimate(low=-0.2, high=-0.06), margin=0.05)


def test_a_degenerate_estimate_is_never_equivalent():
    est = make_estimate(low=0.0, high=0.0, status="degenerate")
    assert stats.equivalent(est, margin=1.0) is False


def test_bootstrap_pvalue_counts_resamples_on_each_side_of_the_null():
    est = make_estimate(low=0, high=1, distribution=np.arange(1.0, 11.0))  # 1..10
    assert stats.bootstrap_pvalue(est, null=3.0) == pytest.approx(2 * 3 / 10)
    assert stats.bootstrap_pvalue(est, null=5.5) == pytest.approx(1.0)


def test_bootstrap_pvalue_is_clipped_to_one_over_b_plus_one():
    est = make_estimate(low=0, high=1, distribution=np.arange(1.0, 100.0))
    assert stats.bootstrap_pvalue(est, null=0.0) == pytest.approx(1 / 100)


def test_bootstrap_pvalue_of_a_clear_effect_is_small_and_of_no_effect_is_large():
    rng = np.random.default_rng(11)
    effect = stats.bootstrap_mean(rng.normal(1.0, 1.0, 100), seed=0, n_resamples=999)
    assert stats.bootstrap_pvalue(effect) == pytest.approx(1 / 1000)
    null = stats.bootstrap_mean(rng.normal(0.0, 1.0, 100) - 0.0, seed=0, n_resamples=999)
    assert stats.bootstrap_pvalue(null, null=null.value) > 0.5


def test_bootstrap_pvalue_of_a_degenerate_estimate_is_one_with_a_warning():
    with pytest.warns(RuntimeWarning):
        est = stats.bootstrap_mean(np.ones(4), seed=0)
    with pytest.warns(RuntimeWarning, match="p-value of a degenerate estimate set to 1"):
        assert stats.bootstrap_pvalue(est) == 1.0


# ----------------------------------------------------------------------------------------
# Multiple comparisons


def reference_holm(p: np.ndarray) -> np.ndarray:
    m = len(p)
    order = np.argsort(p)
    out = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_holm_adjusts_a_known_example():
    adj = stats.holm([0.01, 0.04, 0.30, 0.005], alpha=0.05)
    np.testing.assert_allclose(adj.pvalues, [0.03, 0.08, 0.30, 0.02])
    np.testing.assert_array_equal(adj.reject, [True, False, False, True])
    assert adj.method == "holm" and adj.alpha == 0.05 and adj.n_rejected == 2


def test_benjamini_hochberg_adjusts_a_known_example():
    adj = stats.benjamini_hochberg([0.01, 0.04, 0.30])
    np.testing.assert_allclose(adj.pvalues, [0.03, 0.06, 0.30])
    assert adj.method == "benjamini-hochberg"


def test_adjustments_of_no_pvalues_are_empty():
    assert stats.holm([]).pvalues.shape == (0,)
    assert stats.benjamini_hochberg([]).reject.shape == (0,)


pvalue_arrays = hnp.arrays(
    np.float64, st.integers(1, 60), elements=st.floats(0.0, 1.0, allow_subnormal=False)
)


@PROPERTY
@given(p=pvalue_arrays)
def test_benjamini_hochberg_matches_scipy_false_discovery_control(p):
    adj = stats.benjamini_hochberg(p)
    np.testing.assert_allclose(adj.pvalues, scipy_stats.false_discovery_control(p), atol=1e-12)


@PROPERTY
@given(p=pvalue_arrays)
def test_holm_matches_a_plain_loop_reference(p):
    np.testing.assert_allclose(stats.holm(p).pvalues, reference_holm(p), atol=1e-12)


@PROPERTY
@given(p=pvalue_arrays, alpha=st.floats(0.001, 0.5))
@pytest.mark.parametrize("adjust", [stats.holm, stats.benjamini_hochberg])
def test_adjusted_pvalues_are_monotone_at_least_raw_and_at_most_one(adjust, p, alpha):
    adj = adjust(p, alpha=alpha)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adj.pvalues[order]) >= 0)
    assert np.all(adj.pvalues >= p - 1e-15)
    assert np.all(adj.pvalues <= 1.0)
    np.testing.assert_array_equal(adj.reject, adj.pvalues <= alpha)


def test_holm_is_at_least_as_strict_as_benjamini_hochberg():
    p = np.array([0.001, 0.01, 0.02, 0.03, 0.2])
    assert np.all(stats.holm(p).pvalues >= stats.benjamini_hochberg(p).pvalues)


# ----------------------------------------------------------------------------------------
# Error messages: each names the argument, repeats the bad value and says the fix


def test_level_given_as_a_percentage_suggests_the_fraction():
    with pytest.raises(
        StatsError,
        match=r"`level` must be in \(0, 1\), got 95; did you mean 0.95\?",
    ):
        stats.bootstrap_mean(np.arange(5.0), level=95, seed=0)


@pytest.mark.parametrize("level", [0, 1, -0.5, float("nan"), "0.95", True])
def test_level_outside_the_open_unit_interval_is_rejected(level):
    with pytest.raises(
        StatsError,
        match=r"`level` must be in \(0, 1\), got .*; pass a confidence",
    ):
        stats.proportion(1, 2, level=level)


@pytest.mark.parametrize("n_resamples", [0, -5, 10.5, True])
def test_n_resamples_must_be_a_positive_integer(n_resamples):
    with pytest.raises(
        StatsError,
        match=r"`n_resamples` must be a positive integer, got .*; pass",
    ):
        stats.bootstrap_mean(np.arange(5.0), n_resamples=n_resamples, seed=0)


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_seed_must_be_a_non_negative_int(seed):
    with pytest.raises(
        StatsError,
        match=r"`seed` must be a non-negative int, got .*; pass e.g. seed=0",
    ):
        stats.slope_near_zero(ALPHAS, noisy_scores(), seed=seed)


def test_seed_is_required_outside_a_claim():
    with pytest.raises(StatsError, match=r"bootstrap_ci: `seed` is required outside a claim; pass e.g. seed=0"):
        stats.bootstrap_mean(np.arange(5.0))


def test_unknown_bootstrap_method_suggests_the_closest():
    with pytest.raises(
        StatsError,
        match=r"`method` must be one of 'BCa', 'percentile', got 'bca2'; did you mean 'BCa'\?",
    ):
        stats.bootstrap_mean(np.arange(5.0), method="bca2", seed=0)


def test_unknown_bootstrap_method_lists_the_choices():
    with pytest.raises(StatsError, match=r"got 'jackknife'; pass one of 'BCa', 'percentile'"):
        stats.paired_difference([1.0, 2.0], [0.0, 1.0], method="jackknife", seed=0)


def test_unknown_statistic_is_rejected():
    with pytest.raises(
        StatsError,
        match=r"`statistic` must be one of 'mean', 'median', got 'variance'",
    ):
        stats.bootstrap_ci(np.arange(5.0), statistic="variance", seed=0)


def test_unknown_proportion_method_suggests_the_closest():
    with pytest.raises(
        StatsError,
        match=r"`method` must be one of 'wilson', 'clopper-pearson', got 'wilsen'; did you mean"
        r" 'wilson'\?",
    ):
        stats.proportion(1, 2, method="wilsen")


def test_two_dimensional_data_is_rejected():
    with pytest.raises(
        StatsError,
        match=r"`data` must be 1-D \[n_examples\], got shape \(3, 4\); pass one value per"
        r" example",
    ):
        stats.bootstrap_mean(np.zeros((3, 4)), seed=0)


def test_non_numeric_data_is_rejected():
    with pytest.raises(StatsError, match=r"`data` must be numeric, got list"):
        stats.bootstrap_mean(["a", "b"], seed=0)


def test_transposed_scores_suggest_the_transpose():
    with pytest.raises(
        StatsError,
        match=r"`scores` must have shape \[n_examples, k\] with k = len\(alphas\) = 21, got"
        r" shape \(21, 60\); did you mean scores.T\?",
    ):
        stats.slope_near_zero(ALPHAS, noisy_scores().T, seed=0)


def test_scores_of_the_wrong_shape_are_rejected():
    with pytest.raises(
        StatsError,
        match=r"`scores` must have shape .* got shape \(60,\); pass one row per example",
    ):
        stats.slope_near_zero(ALPHAS, np.zeros(60), seed=0)


def test_non_finite_alphas_are_rejected():
    alphas = ALPHAS.copy()
    alphas[3] = np.nan
    with pytest.raises(StatsError, match=r"`alphas` must be finite, got nan at index 3"):
        stats.slope_near_zero(alphas, noisy_scores(), seed=0)


def test_two_dimensional_alphas_are_rejected():
    with pytest.raises(StatsError, match=r"`alphas` must be 1-D \[k\], got shape \(3, 7\)"):
        stats.slope_near_zero(ALPHAS.reshape(3, 7), noisy_scores(), seed=0)


@pytest.mark.parametrize("near", [0, -0.1, float("inf")])
def test_near_must_be_positive(near):
    with pytest.raises(
        StatsError,
        match=r"`near` must be a positive number, got .*; pass the largest \|alpha\|",
    ):
        stats.slope_near_zero(ALPHAS, noisy_scores(), near=near, seed=0)


def test_paired_inputs_of_different_lengths_are_rejected():
    with pytest.raises(
        StatsError,
        match=r"`y` must have the same length as `x` \(one pair per example\), got len\(x\)=3,"
        r" len\(y\)=2",
    ):
        stats.paired_ratio([1.0, 2.0, 3.0], [1.0, 2.0], seed=0)
    with pytest.raises(StatsError, match=r"`y` must have the same length as `x`"):
        stats.paired_difference([1.0, 2.0, 3.0], [1.0, 2.0], seed=0)


def test_ratio_of_rejects_a_non_estimate():
    est = stats.bootstrap_mean(np.arange(5.0), seed=0, **FAST)
    with pytest.raises(StatsError, match=r"`denominator` must be an Estimate, got float"):
        stats.ratio_of(est, 2.0)  # type: ignore[arg-type]


def test_ratio_of_needs_bootstrap_distributions():
    est = stats.bootstrap_mean(np.arange(5.0), seed=0, **FAST)
    with pytest.raises(
        StatsError,
        match=r"`numerator` has no bootstrap distribution \(method='wilson'\); build it with a"
        r" bootstrap function",
    ):
        stats.ratio_of(stats.proportion(3, 5), est)


def test_ratio_of_needs_distributions_of_equal_length():
    a = stats.bootstrap_mean(np.arange(5.0), seed=0, n_resamples=99)
    b = stats.bootstrap_mean(np.arange(5.0), seed=0, n_resamples=199)
    with pytest.raises(
        StatsError,
        match=r"`denominator` has a bootstrap distribution of 199 resamples but `numerator` has"
        r" 99; build both with the same n_resamples",
    ):
        stats.ratio_of(a, b)


def test_ratio_of_needs_an_explicit_level_when_the_inputs_differ():
    a = stats.bootstrap_mean(np.arange(5.0), seed=0, level=0.9, **FAST)
    b = stats.bootstrap_mean(np.arange(5.0), seed=0, level=0.95, **FAST)
    with pytest.raises(
        StatsError,
        match=r"`level` is None but numerator.level=0.9 and denominator.level=0.95 differ; pass"
        r" level= explicitly",
    ):
        stats.ratio_of(a, b)


@pytest.mark.parametrize(("k", "n", "match"), [
    (11, 10, r"`successes` must be between 0 and n=10, got 11"),
    (-1, 10, r"`successes` must be a non-negative integer count, got -1"),
    (2.5, 10, r"`successes` must be a non-negative integer count, got 2.5"),
    (1, -3, r"`n` must be a non-negative integer count, got -3"),
])
def test_bad_proportion_counts_are_rejected(k, n, match):
    with pytest.raises(StatsError, match=match):
        stats.proportion(k, n)


def test_proportion_of_non_binary_outcomes_is_rejected():
    with pytest.raises(
        StatsError,
        match=r"`outcomes` must hold only 0/1 or True/False, got 0.5 at index 1; threshold the"
        r" scores first",
    ):
        stats.proportion_of([1.0, 0.5, 0.0])


@pytest.mark.parametrize("margin", [0, -0.1, float("nan")])
def test_margin_must_be_positive(margin):
    with pytest.raises(
        StatsError,
        match=r"`margin` must be a positive number, got .*; pass the largest effect",
    ):
        stats.equivalent(make_estimate(low=0, high=0), margin=margin)


def test_equivalent_rejects_a_non_estimate():
    with pytest.raises(StatsError, match=r"`estimate` must be an Estimate, got tuple"):
        stats.equivalent((0.0, 1.0), margin=1.0)  # type: ignore[arg-type]


def test_bootstrap_pvalue_needs_a_bootstrap_distribution():
    with pytest.raises(
        StatsError,
        match=r"`estimate` has no bootstrap distribution \(method='wilson'\)",
    ):
        stats.bootstrap_pvalue(stats.proportion(3, 5))


def test_bootstrap_pvalue_needs_a_finite_null():
    with pytest.raises(StatsError, match=r"`null` must be a finite number, got nan"):
        stats.bootstrap_pvalue(make_estimate(low=0, high=1, distribution=[1.0]), null=float("nan"))


@pytest.mark.parametrize("adjust", [stats.holm, stats.benjamini_hochberg])
def test_pvalues_outside_the_unit_interval_are_rejected(adjust):
    with pytest.raises(
        StatsError,
        match=r"`pvalues` must be in \[0, 1\], got 1.5 at index 2; pass raw p-values",
    ):
        adjust([0.1, 0.2, 1.5])
    with pytest.raises(StatsError, match=r"`pvalues` must be in \[0, 1\], got nan at index 0"):
        adjust([float("nan")])


def test_two_dimensional_pvalues_are_rejected():
    with pytest.raises(StatsError, match=r"`pvalues` must be 1-D, got shape \(2, 2\)"):
        stats.holm(np.full((2, 2), 0.5))


def test_alpha_given_as_a_percentage_suggests_the_fraction():
    with pytest.raises(
        StatsError,
        match=r"`alpha` must be in \(0, 1\), got 5; did you mean 0.05\?",
    ):
        stats.benjamini_hochberg([0.01], alpha=5)
    with pytest.raises(
        StatsError,
        match=r"`alpha` must be in \(0, 1\), got 0; pass a significance level",
    ):
        stats.holm([0.01], alpha=0)


def test_ratio_of_needs_one_dimensional_distributions():
    est = stats.bootstrap_mean(np.arange(5.0), seed=0, **FAST)
    two_d = make_estimate(low=0, high=1, distribution=np.ones((2, 199)))
    with pytest.raises(
        StatsError,
        match=r"`numerator` must have a 1-D bootstrap distribution, got shape \(2, 199\)",
    ):
        stats.ratio_of(two_d, est)


def test_difference_of_two_independent_means_covers_the_true_gap_and_is_their_difference():
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.0, 1.0, 400), rng.normal(0.5, 2.0, 300)
    a, b = stats.bootstrap_mean(x, seed=1), stats.bootstrap_mean(y, seed=2)
    gap = stats.difference_of(a, b)
    assert gap.value == pytest.approx(x.mean() - y.mean())
    assert gap.ci_low < 0.5 < gap.ci_high
    se = np.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)  # the two-sample normal interval
    assert gap.ci_high - gap.ci_low == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert "difference of distributions" in gap.method


def test_difference_of_a_degenerate_input_is_degenerate_and_says_which():
    a = stats.bootstrap_mean(np.arange(10.0), seed=0)
    with pytest.warns(RuntimeWarning):
        flat = stats.bootstrap_mean(np.ones(10), seed=0)
    with pytest.warns(RuntimeWarning, match="the second is degenerate"):
        gap = stats.difference_of(a, flat)
    assert gap.degenerate and "the second is degenerate" in gap.reason
