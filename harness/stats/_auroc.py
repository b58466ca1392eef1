"""`auroc` and `auroc_difference`: the area under the ROC curve of per-example scores against
binary labels, with a bootstrap CI that resamples examples within each class.

The AUROC is the Mann-Whitney U statistic scaled to [0, 1] (Hanley & McNeil 1982, "The meaning
and use of the area under a receiver operating characteristic (ROC) curve", Radiology 143:
29-36): the probability that a randomly drawn positive scores higher than a randomly drawn
negative, a tie counting 1/2. It equals the trapezoidal area under the empirical ROC curve
(what ``sklearn.metrics.roc_auc_score`` returns).

The CI resamples examples with their score, label (and control scores) kept together, and
resamples positives and negatives separately, so every resample keeps the observed class
counts: the stratified bootstrap of the AUROC, i.e. the two-sample bootstrap of Efron &
Tibshirani 1993 (An Introduction to the Bootstrap), which resamples each group on its own, and
the default of pROC's ``ci.auc`` (Robin et al. 2011, BMC Bioinformatics 12: 77). Resampling
all examples together would now and then draw a resample with no positive (or no negative),
whose AUROC is undefined; with a rare class that happens in most runs of 9999 resamples.
Stratifying rules it out and conditions the interval on the class counts, which a study
usually fixes by design.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

from harness.errors import StatsError
from harness.stats.estimate import Estimate
from harness.stats._checks import (
    _as_1d,
    _as_array,
    _check_bootstrap_args,
    _fmt,
)
from harness.stats._resampling import _finish, _resample
from harness.stats._results import _WARN_SKIPS, _count_nonfinite, _degenerate, _recomputable

_UNIT = "examples (resampled within each class)"

# A bootstrap distribution whose spread is below this is constant (an AUROC is a multiple of
# 1 / (2 * n1 * n0) in [0, 1], so anything smaller is float rounding).
_CONSTANT_SPREAD = 1e-12


# ----------------------------------------------------------------------------------------
# Checks


def _check_labels(labels: Any, n: int) -> np.ndarray:
    """`labels` as a boolean ``[n]`` array (True = positive); `StatsError` unless 0/1."""
    arr = _as_array(labels, name="labels")
    if arr.ndim != 1:
        raise StatsError(
            f"`labels` must be 1-D [n_examples], got shape {tuple(arr.shape)}; pass one "
            "label per example"
        )
    if arr.shape[0] != n:
        raise StatsError(
            f"`labels` must have the same length as `scores` (one label per example), got "
            f"len(scores)={n}, len(labels)={arr.shape[0]}; pass labels of the same examples "
            "in the same order"
        )
    bad = ~((arr == 0.0) | (arr == 1.0))
    if np.any(bad):
        shown = ", ".join(_fmt(v) for v in np.unique(arr[bad])[:5])
        raise StatsError(
            f"`labels` must be binary (bool, or 0/1 with 1 = positive), got other values: "
            f"{shown}; pass e.g. labels == positive_class"
        )
    return arr == 1.0


def _check_controls(control_scores: Any, n: int) -> np.ndarray:
    """`control_scores` as ``[k, n]`` (a single ``[n]`` control becomes ``[1, n]``)."""
    arr = _as_array(control_scores, name="control_scores")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise StatsError(
            f"`control_scores` must be [n_examples] (one control) or [k, n_examples] with "
            f"k >= 1, got shape {tuple(np.shape(control_scores))}; pass one row of scores per "
            "control"
        )
    if arr.shape[1] != n:
        raise StatsError(
            f"`control_scores` must score the same examples as `scores`, got "
            f"len(scores)={n} but control_scores of shape {tuple(arr.shape)}; pass "
            "[k, n_examples] in the same order as `scores`"
        )
    return arr


def _degenerate_here(**fields: Any) -> Estimate:
    """`_degenerate`, with its warning attributed to the caller of `auroc` or
    `auroc_difference` (the shared `_warn` skips only the modules in `_WARN_SKIPS`)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimate = _degenerate(**fields)
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_globals.get("__name__") in _WARN_SKIPS | {__name__}:
        frame, level = frame.f_back, level + 1
    for record in caught:
        warnings.warn(record.message, record.category, stacklevel=level)
    return estimate


def _class_reason(n1: int, n0: int) -> str | None:
    """Why the class counts leave no AUROC or no CI (None when both classes have 2+)."""
    counts = f"{n1} positive{'s' if n1 != 1 else ''} and {n0} negative{'s' if n0 != 1 else ''}"
    if n1 == 0 or n0 == 0:
        return (
            f"only one class among the labels ({counts}); the AUROC needs both classes, "
            "and its bootstrap CI at least 2 examples of each"
        )
    if n1 < 2 or n0 < 2:
        return (
            f"{counts}; the bootstrap resamples each class separately and needs at least 2 "
            "examples of each class"
        )
    return None


# ----------------------------------------------------------------------------------------
# The statistic


def _rank_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """AUROC of ``scores [n]`` for boolean ``positive [n]``, from the rank sum of the positives:
    U = R1 - n1 (n1 + 1) / 2, AUROC = U / (n1 n0), ties given their average rank (so they count
    1/2). NaN unless both classes are present."""
    n1 = int(np.count_nonzero(positive))
    n0 = positive.shape[0] - n1
    if n1 == 0 or n0 == 0:
        return math.nan
    ranks = _scipy_stats.rankdata(scores)
    u = float(np.sum(ranks[positive])) - n1 * (n1 + 1) / 2.0
    return u / (n1 * n0)


def _counted_auroc(dense: np.ndarray, m: int, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC of many resamples at once: the same U statistic as `_rank_auroc`, counted.

    `dense` ``[n]`` is each example's dense rank among all n scores (0..m-1); `pos` ``[r, n1]``
    and `neg` ``[r, n0]`` are example indices, one resample per row. For each resample the
    negatives' histogram over the m score values gives, at every value, the number of
    negatives below it plus half those equal to it; summing that over the positives is U.
    O(r * (n1 + n0 + m)) instead of the sort a rank per resample costs. Returns ``[r]``.
    """
    r, n0 = neg.shape
    n1 = pos.shape[1]
    offsets = np.arange(r)[:, None] * m
    hist = np.bincount((dense[neg] + offsets).ravel(), minlength=r * m).reshape(r, m)
    below_plus_half_tied = np.cumsum(hist, axis=1) - 0.5 * hist
    u = np.take_along_axis(below_plus_half_tied, dense[pos], axis=1).sum(axis=1)
    return u / (n1 * n0)


def _statistic(rows: np.ndarray, positives_first: bool,
               combine: Callable[[list[np.ndarray]], np.ndarray]) -> Callable[..., np.ndarray]:
    """The vectorized statistic `_resample` calls: it receives resampled example indices of the
    two classes (``[..., n_a]``, ``[..., n_b]``; the larger class first, which sizes scipy's
    batches) and returns ``combine`` of the AUROC of every row of ``rows [k, n]``."""
    dense_ranks = []
    for row in rows:
        values, dense = np.unique(row, return_inverse=True)
        dense_ranks.append((dense.reshape(-1), values.shape[0]))

    def statistic(first: np.ndarray, second: np.ndarray, axis: int = -1) -> np.ndarray:
        pos, neg = (first, second) if positives_first else (second, first)
        lead = np.broadcast_shapes(pos.shape[:-1], neg.shape[:-1])
        pos = np.broadcast_to(pos, lead + pos.shape[-1:]).reshape(-1, pos.shape[-1])
        neg = np.broadcast_to(neg, lead + neg.shape[-1:]).reshape(-1, neg.shape[-1])
        pos, neg = pos.astype(np.intp, copy=False), neg.astype(np.intp, copy=False)
        aurocs = [_counted_auroc(dense, m, pos, neg) for dense, m in dense_ranks]
        return np.asarray(combine(aurocs)).reshape(lead)

    return statistic


def _first(aurocs: list[Any]) -> Any:
    return aurocs[0]


def _minus_mean_of_rest(aurocs: list[Any]) -> Any:
    return aurocs[0] - np.mean(np.stack(aurocs[1:]), axis=0)


def _estimate(
    rows: np.ndarray,
    positive: np.ndarray,
    *,
    combine: Callable[[list[Any]], Any],
    statistic: str,
    what: str,
    level: float,
    method: str,
    n_resamples: int,
    seed: int,
) -> Estimate:
    """The shared core: degeneracy checks, then the class-stratified bootstrap of
    ``combine([AUROC(rows[0]), AUROC(rows[1]), ...])``."""
    n = positive.shape[0]
    n1 = int(np.count_nonzero(positive))
    n0 = n - n1
    common = dict(level=level, n=n, method=f"bootstrap {method}", seed=seed,
                  statistic=statistic, unit=_UNIT)
    bad = _count_nonfinite(rows)
    if bad:
        return _degenerate_here(
            value=math.nan,
            reason=(f"{bad} of {rows.size} {what} are NaN or inf; drop or fix those examples "
                    "before estimating"),
            **common,
        )
    value = float(combine([_rank_auroc(row, positive) for row in rows]))
    if n < 2:
        return _degenerate_here(
            value=value,
            reason=(f"{n} example{'s' if n != 1 else ''}; the AUROC needs a positive and a "
                    "negative, and a bootstrap CI at least 2 examples of each class"),
            **common,
        )
    reason = _class_reason(n1, n0)
    if reason is not None:
        return _degenerate_here(value=value, reason=reason, **common)

    pos_idx, neg_idx = np.flatnonzero(positive), np.flatnonzero(~positive)
    positives_first = n1 >= n0
    samples = (pos_idx, neg_idx) if positives_first else (neg_idx, pos_idx)
    fn = _statistic(rows, positives_first, combine)

    def at(level: float, previous: Any = None) -> Estimate:
        low, high, dist, result = _resample(
            samples, fn, paired=False, level=level, method=method,
            n_resamples=n_resamples, seed=seed, previous=previous,
        )
        if dist.size and float(np.ptp(dist)) <= _CONSTANT_SPREAD:
            return _degenerate_here(
                value=value,
                reason=(
                    f"every resample gave {statistic} = {_fmt(float(dist[0]))} (scores that "
                    "separate the classes perfectly, or are all equal, do that); a bootstrap "
                    "CI is not informative"
                ),
                distribution=dist, **dict(common, level=level),
            )
        estimate = _finish(
            value=value, low=float(low), high=float(high), distribution=dist, level=level,
            n=n, method=method, seed=seed, statistic=statistic, unit=_UNIT,
        )
        # another level reuses these resamples: the same interval a call with that level gives
        return _recomputable(estimate, lambda other: at(other, result))

    return at(level)


# ----------------------------------------------------------------------------------------
# Public functions


def auroc(
    scores: Any,
    labels: Any,
    *,
    level: float = 0.95,
    method: str = "BCa",
    n_resamples: int | None = None,
    seed: int | None = None,
) -> Estimate:
    """AUROC of `scores` for binary `labels`, with a bootstrap CI over examples.

    Example::

        est = auroc(feature_activation, is_buggy, seed=0)   # both [n_examples]
        est.value   # P(a random buggy example activates more than a random clean one)

    `scores` is ``[n_examples]`` (any real numbers; higher = more positive). `labels` is
    ``[n_examples]``, bool or 0/1, True / 1 marking a positive. The value is the Mann-Whitney
    U statistic over ``n1 * n0`` (Hanley & McNeil 1982): the fraction of (positive, negative)
    pairs in which the positive scores higher, a tie counting 1/2; 1 = perfect separation,
    0.5 = chance, 0 = perfectly reversed. It equals sklearn's ``roc_auc_score``.

    The CI (`method` ``"BCa"`` or ``"percentile"``) bootstraps examples within each class, so
    every resample keeps the observed numbers of positives and negatives and has an AUROC (see
    the module docstring). Resamples are drawn by `scipy.stats.bootstrap` with
    ``rng=np.random.default_rng(seed)``; `auroc` and `auroc_difference` calls with the same
    seed over the same labels draw the same resamples, so their bootstrap distributions pair
    resample by resample.

    Degenerate (a ``RuntimeWarning`` and ``status="degenerate"``, not an error): NaN or inf
    scores (value NaN), fewer than 2 examples, only one class (value NaN), fewer than 2
    examples of a class, and scores whose every resample gives the same AUROC (perfect
    separation, or all scores equal). Raises `StatsError` for labels that are not binary,
    `scores` and `labels` of different lengths or not 1-D, and bad `level`, `method`,
    `n_resamples` or `seed`.
    """
    level, method, n_resamples, seed = _check_bootstrap_args(level, method, n_resamples, seed, owner="auroc")
    values = _as_1d(scores, name="scores")
    positive = _check_labels(labels, values.shape[0])
    return _estimate(
        values[None, :], positive, combine=_first, statistic="AUROC", what="scores",
        level=level, method=method, n_resamples=n_resamples, seed=seed,
    )


def auroc_difference(
    scores: Any,
    control_scores: Any,
    labels: Any,
    *,
    level: float = 0.95,
    method: str = "BCa",
    n_resamples: int | None = None,
    seed: int | None = None,
) -> Estimate:
    """AUROC of `scores` minus the mean AUROC of control scores on the same examples, with a
    paired bootstrap CI.

    Example::

        est = auroc_difference(feature_acts, random_feature_acts, is_buggy, seed=0)
        est.value   # how much better the feature separates the classes than random features

    `scores` and `labels` are ``[n_examples]`` as in `auroc`; `control_scores` is
    ``[n_examples]`` (one control) or ``[k, n_examples]`` (k controls, e.g. k randomly drawn
    features), scored on the same examples in the same order. The value is
    ``AUROC(scores) - mean_j AUROC(control_scores[j])``, in AUROC units (from -1 to 1).

    Each resample draws example indices once (within each class, as `auroc` does) and
    computes both AUROCs on those examples, so the interval reflects the difference on the
    same examples, not two independent samples. With the same seed, the bootstrap
    distribution equals ``auroc(scores).bootstrap_distribution`` minus the mean of the
    controls' distributions, resample by resample. The k controls' AUROCs are averaged, so
    the CI is about this set of controls; it does not treat the k controls as a sample.

    Degenerate and error cases are those of `auroc` (NaN or inf in any control included);
    `control_scores` of the wrong shape raises `StatsError`.
    """
    level, method, n_resamples, seed = _check_bootstrap_args(level, method, n_resamples, seed, owner="auroc_difference")
    values = _as_1d(scores, name="scores")
    controls = _check_controls(control_scores, values.shape[0])
    positive = _check_labels(labels, values.shape[0])
    k = controls.shape[0]
    return _estimate(
        np.concatenate([values[None, :], controls]), positive, combine=_minus_mean_of_rest,
        statistic=f"AUROC - mean control AUROC ({k} control{'s' if k != 1 else ''})",
        what="scores and control scores", level=level, method=method,
        n_resamples=n_resamples, seed=seed,
    )
