"""`harness.stats.auroc` and `auroc_difference`: the value against a brute-force pairwise count,
the class-stratified bootstrap, degenerate input, bad arguments, and (slow) calibration."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from harness import stats
from harness.errors import StatsError
from harness.stats._auroc import _counted_auroc

FAST = dict(n_resamples=199)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pairwise_auroc(scores, labels) -> float:
    """AUROC by brute force: over every (positive, negative) pair, 1 if the positive scores
    higher, 1/2 if they tie, 0 otherwise; averaged."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def separable_data(*, n: int = 80, shift: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.4
    return rng.normal(size=n) + shift * labels, labels


def quietly(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


# ----------------------------------------------------------------------------------------
# The value


@PROPERTY
@given(
    labels=st.lists(st.booleans(), min_size=2, max_size=30).filter(lambda ls: 0 < sum(ls) < len(ls)),
    data=st.data(),
)
def test_auroc_equals_the_pairwise_count_with_ties_counting_half(labels, data):
    # scores from a handful of integers, so ties are common
    scores = data.draw(st.lists(st.integers(-3, 3), min_size=len(labels), max_size=len(labels)))
    est = quietly(stats.auroc, scores, labels, seed=0, **FAST)
    assert est.value == pytest.approx(pairwise_auroc(scores, labels), abs=1e-12)


def test_auroc_of_a_worked_example_with_ties():
    # positives 3, 2, 2; negatives 1, 2: pairs 3>1 3>2 2>1 2=2 2>1 2=2 -> (4 + 2 * 0.5) / 6
    est = stats.auroc([3, 2, 2, 1, 2], [1, 1, 1, 0, 0], seed=0, **FAST)
    assert est.value == pytest.approx(5 / 6)
    assert pairwise_auroc([3, 2, 2, 1, 2], [1, 1, 1, 0, 0]) == pytest.approx(5 / 6)


def test_the_counted_resample_statistic_equals_the_pairwise_count():
    """The bootstrap computes AUROC by counting, not ranking: pin it on random resamples."""
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 6, size=40).astype(float)
    labels = rng.random(40) < 0.5
    values, dense = np.unique(scores, return_inverse=True)
    pos_idx, neg_idx = np.flatnonzero(labels), np.flatnonzero(~labels)
    pos = pos_idx[rng.integers(0, pos_idx.size, size=(25, pos_idx.size))]
    neg = neg_idx[rng.integers(0, neg_idx.size, size=(25, neg_idx.size))]
    counted = _counted_auroc(dense, values.size, pos, neg)
    for r in range(25):
        resample = np.concatenate([pos[r], neg[r]])
        truth = pairwise_auroc(scores[resample], np.r_[np.ones(pos.shape[1]), np.zeros(neg.shape[1])])
        assert counted[r] == truth  # both are exact sums of halves


def test_auroc_is_one_for_perfect_separation_zero_reversed_and_half_for_chance():
    labels = [0, 0, 0, 1, 1, 1]
    with pytest.warns(RuntimeWarning, match="every resample gave AUROC = 1"):
        assert stats.auroc([1, 2, 3, 4, 5, 6], labels, seed=0, **FAST).value == 1.0
    with pytest.warns(RuntimeWarning, match="every resample gave AUROC = 0"):
        assert stats.auroc([6, 5, 4, 3, 2, 1], labels, seed=0, **FAST).value == 0.0
    # positives 1 and 4 against negatives 2 and 3: two wins out of four pairs
    assert stats.auroc([1, 4, 2, 3], [1, 1, 0, 0], seed=0, **FAST).value == 0.5


def test_constant_scores_give_half_and_a_degenerate_estimate():
    with pytest.warns(RuntimeWarning, match="every resample gave AUROC = 0.5"):
        est = stats.auroc(np.full(10, 2.0), [0, 1] * 5, seed=0, **FAST)
    assert est.value == 0.5
    assert est.degenerate


def test_flipping_the_labels_gives_one_minus_the_auroc_and_a_mirrored_interval():
    scores, labels = separable_data(seed=1)
    assert labels.sum() != (~labels).sum()  # unequal classes: the same draws in both calls
    est = stats.auroc(scores, labels, method="percentile", seed=4, **FAST)
    flipped = stats.auroc(scores, ~labels, method="percentile", seed=4, **FAST)
    assert flipped.value == pytest.approx(1.0 - est.value)
    assert flipped.ci_low == pytest.approx(1.0 - est.ci_high)
    assert flipped.ci_high == pytest.approx(1.0 - est.ci_low)


def test_labels_may_be_bool_ints_floats_or_tensors():
    torch = pytest.importorskip("torch")
    scores, labels = separable_data()
    expected = stats.auroc(scores, labels, seed=0, **FAST)
    for variant in (labels.astype(int), labels.astype(float), list(labels), torch.tensor(labels)):
        assert stats.auroc(scores, variant, seed=0, **FAST) == expected
    assert stats.auroc(torch.tensor(scores), labels, seed=0, **FAST) == expected


# ----------------------------------------------------------------------------------------
# The interval


def test_auroc_records_its_metadata():
    scores, labels = separable_data()
    est = stats.auroc(scores, labels, level=0.9, seed=3, **FAST)
    assert est.status == "ok"
    assert est.statistic == "AUROC"
    assert est.method == "bootstrap BCa"
    assert est.unit == "examples (resampled within each class)"
    assert (est.level, est.n, est.seed) == (0.9, 80, 3)
    assert est.ci_low < est.value < est.ci_high
    assert 0.0 <= est.ci_low and est.ci_high <= 1.0
    assert est.bootstrap_distribution.shape == (199,)
    assert not est.bootstrap_distribution.flags.writeable


def test_the_percentile_interval_is_the_quantiles_of_the_distribution():
    scores, labels = separable_data()
    est = stats.auroc(scores, labels, method="percentile", seed=0, **FAST)
    low, high = np.percentile(est.bootstrap_distribution, [2.5, 97.5])
    assert (est.ci_low, est.ci_high) == pytest.approx((low, high))


def test_resamples_keep_the_class_counts():
    """Stratified: each resample redraws positives among positives and negatives among
    negatives, so its AUROC is always defined, even with 2 positives out of 200."""
    rng = np.random.default_rng(5)
    labels = np.zeros(200, dtype=bool)
    labels[:2] = True
    scores = rng.normal(size=200) + 2.0 * labels
    est = stats.auroc(scores, labels, method="percentile", seed=0, n_resamples=2000)
    assert est.status == "ok"
    assert np.all(np.isfinite(est.bootstrap_distribution))


def test_same_seed_gives_an_identical_estimate_and_another_seed_does_not():
    scores, labels = separable_data()
    a = stats.auroc(scores, labels, seed=11, **FAST)
    b = stats.auroc(scores, labels, seed=11, **FAST)
    c = stats.auroc(scores, labels, seed=12, **FAST)
    assert a == b
    np.testing.assert_array_equal(a.bootstrap_distribution, b.bootstrap_distribution)
    assert not np.array_equal(a.bootstrap_distribution, c.bootstrap_distribution)


def test_at_level_recomputes_from_the_same_resamples():
    scores, labels = separable_data()
    est = stats.auroc(scores, labels, seed=2, **FAST)
    assert est.can_change_level
    wide = est.at_level(0.99)
    direct = stats.auroc(scores, labels, level=0.99, seed=2, **FAST)
    assert (wide.ci_low, wide.ci_high, wide.level) == (direct.ci_low, direct.ci_high, 0.99)
    assert wide.ci_low <= est.ci_low and est.ci_high <= wide.ci_high
    assert wide.value == est.value


# ----------------------------------------------------------------------------------------
# auroc_difference


def test_difference_is_auroc_minus_the_mean_control_auroc():
    scores, labels = separable_data(seed=6)
    controls = np.random.default_rng(7).normal(size=(4, scores.size))
    est = stats.auroc_difference(scores, controls, labels, seed=0, **FAST)
    parts = [pairwise_auroc(row, labels) for row in controls]
    assert est.value == pytest.approx(pairwise_auroc(scores, labels) - np.mean(parts), abs=1e-12)
    assert est.statistic == "AUROC - mean control AUROC (4 controls)"
    assert est.unit == "examples (resampled within each class)"


def test_difference_is_paired_resample_by_resample_with_auroc():
    """With the same seed, every call draws the same examples in resample b, so the
    difference's distribution is the AUROCs' distributions subtracted resample by resample."""
    scores, labels = separable_data(seed=8)
    controls = np.random.default_rng(9).normal(size=(3, scores.size))
    est = stats.auroc_difference(scores, controls, labels, seed=5, **FAST)
    main = stats.auroc(scores, labels, seed=5, **FAST).bootstrap_distribution
    ctrl = [stats.auroc(row, labels, seed=5, **FAST).bootstrap_distribution for row in controls]
    np.testing.assert_allclose(est.bootstrap_distribution, main - np.mean(ctrl, axis=0), atol=1e-12)


def test_one_control_may_be_given_as_a_vector():
    scores, labels = separable_data()
    control = np.random.default_rng(1).normal(size=scores.size)
    one = stats.auroc_difference(scores, control, labels, seed=0, **FAST)
    stacked = stats.auroc_difference(scores, control[None, :], labels, seed=0, **FAST)
    assert one == stacked
    assert one.statistic == "AUROC - mean control AUROC (1 control)"


def test_a_score_against_itself_as_control_is_degenerate_zero():
    scores, labels = separable_data()
    with pytest.warns(RuntimeWarning, match="every resample gave AUROC - mean control"):
        est = stats.auroc_difference(scores, np.stack([scores, scores]), labels, seed=0, **FAST)
    assert est.value == 0.0


def test_difference_at_level_recomputes():
    scores, labels = separable_data()
    controls = np.random.default_rng(2).normal(size=(2, scores.size))
    est = stats.auroc_difference(scores, controls, labels, seed=1, **FAST)
    direct = stats.auroc_difference(scores, controls, labels, level=0.9, seed=1, **FAST)
    assert (est.at_level(0.9).ci_low, est.at_level(0.9).ci_high) == (direct.ci_low, direct.ci_high)


# ----------------------------------------------------------------------------------------
# Degenerate input: a warning and a reason, never an exception


def test_one_class_only_is_degenerate_and_says_both_classes_are_needed():
    with pytest.warns(RuntimeWarning, match=r"only one class .*\(5 positives and 0 negatives\); "
                      "the AUROC needs both classes") as record:
        est = stats.auroc(np.arange(5.0), [1] * 5, seed=0)
    assert record[0].filename == __file__  # attributed to the caller, not to harness
    assert est.degenerate and math.isnan(est.value)
    assert "both classes" in est.reason and est.to_dict()["reason"] == est.reason


def test_a_single_example_of_a_class_is_degenerate_with_its_value():
    with pytest.warns(RuntimeWarning, match="1 positive and 4 negatives; .* at least 2 examples "
                      "of each class"):
        est = stats.auroc([5, 1, 2, 3, 4], [1, 0, 0, 0, 0], seed=0)
    assert est.value == 1.0
    assert (est.ci_low, est.ci_high) == (1.0, 1.0)


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_examples_is_degenerate(n):
    with pytest.warns(RuntimeWarning, match=f"{n} examples?; the AUROC needs a positive and a negative"):
        est = stats.auroc(np.ones(n), np.ones(n, dtype=bool), seed=0)
    assert est.degenerate and est.n == n and math.isnan(est.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores_are_degenerate(bad):
    scores, labels = separable_data(n=10)
    scores[3] = bad
    with pytest.warns(RuntimeWarning, match="1 of 10 scores are NaN or inf"):
        est = stats.auroc(scores, labels, seed=0)
    assert est.degenerate and math.isnan(est.value)


def test_non_finite_control_scores_are_degenerate():
    scores, labels = separable_data(n=10)
    controls = np.zeros((2, 10))
    controls[1, 4] = math.nan
    with pytest.warns(RuntimeWarning, match="1 of 30 scores and control scores are NaN or inf"):
        est = stats.auroc_difference(scores, controls, labels, seed=0)
    assert est.degenerate


# ----------------------------------------------------------------------------------------
# Bad arguments raise StatsError naming the argument


@pytest.mark.parametrize(
    "labels, match",
    [
        ([0, 1, 2, 1], r"`labels` must be binary .* got other values: 2; pass e.g. labels == "),
        ([0.0, 1.0, 0.5, 1.0], r"`labels` must be binary .* 0.5"),
        ([0, 1, math.nan, 1], r"`labels` must be binary .* nan"),
        (["a", "b", "a", "b"], r"`labels` must be numeric"),
        ([0, 1, 1], r"`labels` must have the same length as `scores` .* len\(scores\)=4, len\(labels\)=3"),
        ([[0, 1], [1, 0]], r"`labels` must be 1-D"),
    ],
)
def test_bad_labels_raise(labels, match):
    with pytest.raises(StatsError, match=match):
        stats.auroc([1.0, 2.0, 3.0, 4.0], labels, seed=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(level=95), r"`level` must be in \(0, 1\), got 95; did you mean 0.95\?"),
        (dict(method="bca2"), r"`method` must be one of 'BCa', 'percentile'"),
        (dict(n_resamples=0), r"`n_resamples` must be a positive integer"),
        (dict(seed=-1), r"`seed` must be a non-negative int"),
    ],
)
def test_bad_bootstrap_arguments_raise(kwargs, match):
    args = dict(seed=0) | kwargs
    with pytest.raises(StatsError, match=match):
        stats.auroc([1.0, 2.0, 3.0, 4.0], [0, 1, 0, 1], **args)
    with pytest.raises(StatsError, match=match):
        stats.auroc_difference([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [0, 1, 0, 1], **args)


def test_two_dimensional_scores_raise():
    with pytest.raises(StatsError, match=r"`scores` must be 1-D \[n_examples\], got shape \(2, 2\)"):
        stats.auroc([[1.0, 2.0], [3.0, 4.0]], [0, 1], seed=0)


@pytest.mark.parametrize(
    "controls, match",
    [
        (np.zeros((2, 3)), r"`control_scores` must score the same examples as `scores`, got "
                           r"len\(scores\)=4 but control_scores of shape \(2, 3\)"),
        (np.zeros(5), r"`control_scores` must score the same examples"),
        (np.zeros((0, 4)), r"`control_scores` must be \[n_examples\] .* got shape \(0, 4\)"),
        (np.zeros((2, 2, 4)), r"`control_scores` must be .* got shape \(2, 2, 4\)"),
    ],
)
def test_bad_control_scores_raise(controls, match):
    with pytest.raises(StatsError, match=match):
        stats.auroc_difference([1.0, 2.0, 3.0, 4.0], controls, [0, 1, 0, 1], seed=0)


# ----------------------------------------------------------------------------------------
# Calibration (slow): seeded replications with a known true AUROC
#
# Positives score N(delta, 1), negatives N(0, 1): the true AUROC is
# P(X1 > X0) = Phi(delta / sqrt(2)). With R replications the Monte Carlo standard error of a
# rate near 0.95 is sqrt(0.95 * 0.05 / R): 0.7 points at R = 1,000, 1.3 at R = 300.

CALIBRATION_RESAMPLES = 999


def coverage(replications: int, *, stream: int, truth: float, estimate) -> float:
    """Fraction of seeded replications whose CI covers `truth`; `estimate(rng, seed)` returns
    an Estimate, which must not be degenerate."""
    covered = 0
    for r in range(replications):
        est = estimate(np.random.default_rng([stream, r]), r)
        assert est.status == "ok", est.reason
        covered += est.ci_low <= truth <= est.ci_high
    return covered / replications


def shifted(rng: np.random.Generator, *, n: int, delta: float, positives: int | None = None):
    if positives is None:
        labels = rng.random(n) < 0.5
    else:
        labels = np.zeros(n, dtype=bool)
        labels[:positives] = True
    return rng.normal(size=n) + delta * labels, labels


@pytest.mark.slow
def test_auroc_ci_covers_the_true_auroc_95_percent_of_the_time():
    delta = 0.5
    truth = float(scipy_stats.norm.cdf(delta / math.sqrt(2.0)))  # 0.638

    def estimate(rng, seed):
        scores, labels = shifted(rng, n=200, delta=delta)
        return stats.auroc(scores, labels, n_resamples=CALIBRATION_RESAMPLES, seed=seed)

    rate = coverage(1000, stream=1, truth=truth, estimate=estimate)
    assert 0.93 <= rate <= 0.975, (
        f"95% BCa AUROC CI covered the true AUROC {truth:.3f} in {rate:.1%} of 1000 "
        "replications (n=200, balanced on average); expected 93-97.5%"
    )


@pytest.mark.slow
def test_auroc_ci_excludes_chance_at_most_6_5_percent_of_the_time_under_the_null():
    def estimate(rng, seed):
        scores, labels = shifted(rng, n=200, delta=0.0)
        return stats.auroc(scores, labels, n_resamples=CALIBRATION_RESAMPLES, seed=seed)

    covered = coverage(1000, stream=2, truth=0.5, estimate=estimate)
    assert 1.0 - covered <= 0.065, (
        f"'CI excludes 0.5' on null data in {1.0 - covered:.1%} of 1000 replications; "
        "expected at most 6.5%"
    )


@pytest.mark.slow
def test_auroc_ci_covers_the_truth_with_a_rare_positive_class():
    delta = 0.8
    truth = float(scipy_stats.norm.cdf(delta / math.sqrt(2.0)))  # 0.714

    def estimate(rng, seed):
        scores, labels = shifted(rng, n=200, delta=delta, positives=20)
        return stats.auroc(scores, labels, n_resamples=CALIBRATION_RESAMPLES, seed=seed)

    rate = coverage(500, stream=3, truth=truth, estimate=estimate)
    assert 0.92 <= rate <= 0.975, (
        f"95% BCa AUROC CI with 20 positives and 180 negatives covered the true AUROC in "
        f"{rate:.1%} of 500 replications; expected 92-97.5%"
    )


@pytest.mark.slow
def test_auroc_difference_ci_covers_the_true_difference():
    delta = 0.5
    truth = float(scipy_stats.norm.cdf(delta / math.sqrt(2.0))) - 0.5  # controls: AUROC 0.5

    def estimate(rng, seed):
        scores, labels = shifted(rng, n=200, delta=delta)
        controls = rng.normal(size=(2, 200))
        return stats.auroc_difference(scores, controls, labels,
                                      n_resamples=CALIBRATION_RESAMPLES, seed=seed)

    rate = coverage(300, stream=4, truth=truth, estimate=estimate)
    assert 0.91 <= rate <= 0.985, (
        f"95% BCa CI of AUROC - mean control AUROC covered the true difference {truth:.3f} in "
        f"{rate:.1%} of 300 replications; expected 91-98.5%"
    )
