"""`slope_near_zero`: the mean per-example least-squares slope of score on alpha, bootstrapped
over examples."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from harness.errors import StatsError
from harness.stats.estimate import Estimate
from harness.stats._checks import (
    _as_1d,
    _as_array,
    _check_bootstrap_args,
    _check_positive,
    _fmt,
    _show,
)
from harness.stats._resampling import _bootstrap_values
from harness.stats._results import _count_nonfinite, _degenerate


def slope_near_zero(
    alphas: Any,
    scores: Any,
    *,
    near: float | None = None,
    level: float = 0.95,
    method: str = "BCa",
    n_resamples: int | None = None,
    seed: int | None = None,
) -> Estimate:
    """CI of the mean slope of score against alpha, near alpha = 0, bootstrapping examples.

    Example::

        alphas = np.linspace(-1, 1, 21)                  # steering strengths, [k]
        est = slope_near_zero(alphas, scores, near=0.5, seed=0)   # scores: [n_examples, k]
        est.value, est.ci_low, est.ci_high

    Keeps the alphas with ``|alpha| <= near`` (all of them when `near` is None), reduces each
    example to its own least-squares slope over those alphas, and bootstraps the mean of the
    per-example slopes over examples. The resampling unit is the example because one
    example's scores at different alphas are correlated; resampling (example, alpha) points
    would treat them as independent and give too narrow an interval.

    With a grid of alphas shared by all examples, the mean of the per-example OLS slopes
    equals the pooled OLS slope (one regression over all n*k points) exactly: the slope is
    linear in the scores, ``sum_j (a_j - mean(a)) * s_ij / sum_j (a_j - mean(a))**2``.
    So this is the usual pooled slope, with a CI that respects the correlation, at the cost
    of one bootstrap of n numbers.
    """
    level, method, n_resamples, seed = _check_bootstrap_args(level, method, n_resamples, seed, owner="slope_near_zero")
    if near is not None:
        near = _check_positive(
            near, name="near", example="pass the largest |alpha| to keep, e.g. near=0.5, or None"
        )
    a = _as_1d(alphas, name="alphas", what="[k]")
    bad_alpha = np.flatnonzero(~np.isfinite(a))
    if bad_alpha.size:
        i = int(bad_alpha[0])
        raise StatsError(
            f"`alphas` must be finite, got {_show(a[i])} at index {i}; pass the grid of "
            "intervention strengths that the scores were measured at"
        )
    s = _as_array(scores, name="scores")
    k = a.shape[0]
    if s.ndim != 2 or s.shape[1] != k:
        hint = "pass one row per example and one column per alpha"
        if s.ndim == 2 and s.shape[0] == k:
            hint = "did you mean scores.T?"
        raise StatsError(
            f"`scores` must have shape [n_examples, k] with k = len(alphas) = {k}, got shape "
            f"{tuple(s.shape)}; {hint}"
        )

    keep = np.ones(k, dtype=bool) if near is None else np.abs(a) <= near
    a, s = a[keep], s[:, keep]
    n = s.shape[0]
    common = dict(
        level=level,
        n=n,
        method=f"bootstrap {method}",
        seed=seed,
        statistic="slope",
        unit="examples",
    )
    distinct = np.unique(a)
    if distinct.size < 2:
        where = "in `alphas`" if near is None else f"with |alpha| <= {_fmt(near)}"
        shown = ", ".join(_fmt(v) for v in distinct) or "none"
        fix = "widen `near`" if near is not None else "measure at 2 or more alphas"
        return _degenerate(
            value=math.nan,
            reason=(
                f"only {distinct.size} distinct alpha {where} ({shown}); a slope needs at "
                f"least 2; {fix}"
            ),
            **common,
        )
    bad = _count_nonfinite(s)
    if bad:
        return _degenerate(
            value=math.nan,
            reason=(
                f"{bad} of {s.size} scores in range are NaN or inf; drop or fix those "
                "examples before estimating"
            ),
            **common,
        )
    centered = a - a.mean()
    slopes = (s - s.mean(axis=1, keepdims=True)) @ centered / (centered @ centered)
    return _bootstrap_values(
        slopes,
        stat_name="mean",
        statistic="slope",
        level=level,
        method=method,
        n_resamples=n_resamples,
        seed=seed,
        what="per-example slopes",
    )
