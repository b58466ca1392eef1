"""Bootstrap estimates over examples: means, slopes near zero, paired differences and ratios."""

from __future__ import annotations

import dataclasses
import math
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

from harness.errors import StatsError
from harness.verdicts.estimate import Estimate
from harness.stats._checks import (
    _BATCH_ELEMENTS,
    _STATISTICS,
    _as_1d,
    _as_array,
    _check_bootstrap_args,
    _check_choice,
    _check_estimate,
    _check_level,
    _check_positive,
    _check_same_length,
    _fmt,
    _show,
)

# ----------------------------------------------------------------------------------------
# Shared machinery


def _degenerate(
    *,
    value: float,
    reason: str,
    level: float,
    n: int,
    method: str,
    seed: int | None,
    statistic: str,
    unit: str,
    distribution: np.ndarray | None = None,
) -> Estimate:
    """An Estimate with status 'degenerate', bounds equal to the value, and a warning."""
    _warn(f"degenerate {statistic} estimate: {reason}")
    value = float(value)
    return Estimate(
        value=value,
        ci_low=value,
        ci_high=value,
        level=level,
        n=int(n),
        method=method,
        seed=seed,
        statistic=statistic,
        unit=unit,
        status="degenerate",
        reason=reason,
        bootstrap_distribution=_frozen(distribution),
    )


def _warn(message: str) -> None:
    """A RuntimeWarning attributed to the first caller outside this module."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, RuntimeWarning, stacklevel=level)


def _recomputable(estimate: Estimate, again: Callable[[float], Estimate]) -> Estimate:
    """`estimate` with ``recompute`` set to `again` (the same statistic at another level), so
    `Estimate.at_level` can judge it at a family's corrected level."""
    if estimate.degenerate:
        return estimate
    return dataclasses.replace(estimate, recompute=again)


def _frozen(array: np.ndarray | None) -> np.ndarray | None:
    if array is None:
        return None
    array = np.ascontiguousarray(array, dtype=np.float64)
    array.setflags(write=False)
    return array


def _is_constant(x: np.ndarray) -> bool:
    """All values equal, up to a few ulps of their magnitude."""
    spread = float(np.ptp(x))
    return spread <= 4.0 * np.finfo(np.float64).eps * float(np.max(np.abs(x)))


def _count_nonfinite(*arrays: np.ndarray) -> int:
    return int(sum(np.count_nonzero(~np.isfinite(a)) for a in arrays))


def _resample(
    samples: tuple[np.ndarray, ...],
    statistic: Callable[..., np.ndarray],
    *,
    paired: bool,
    level: float,
    method: str,
    n_resamples: int,
    seed: int,
    previous: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """Run `scipy.stats.bootstrap` over examples; return (ci_low, ci_high, distribution, result).

    With `previous` (the result of an earlier call on the same samples) no new resamples are
    drawn: the interval at `level` is computed from the earlier bootstrap distribution, as a
    call with the same seed would compute it. NaN bounds (BCa on data it cannot handle) come
    back as NaN for the caller to judge; scipy's warnings about them are silenced here because
    the caller reports them.
    """
    n = samples[0].shape[-1]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", _scipy_stats.DegenerateDataWarning)
        result = _scipy_stats.bootstrap(
            samples,
            statistic,
            n_resamples=0 if previous is not None else n_resamples,
            bootstrap_result=previous,
            batch=max(1, _BATCH_ELEMENTS // n),
            vectorized=True,
            paired=paired,
            confidence_level=level,
            method=method,
            rng=np.random.default_rng(seed),
        )
    ci = result.confidence_interval
    return np.asarray(ci.low), np.asarray(ci.high), np.asarray(result.bootstrap_distribution), result


def _finish(
    *,
    value: float,
    low: float,
    high: float,
    distribution: np.ndarray,
    level: float,
    n: int,
    method: str,
    seed: int,
    statistic: str,
    unit: str = "examples",
) -> Estimate:
    label = f"bootstrap {method}"
    if not (math.isfinite(low) and math.isfinite(high)):
        return _degenerate(
            value=value,
            reason=(
                f"the {method} interval is undefined for this data (scipy returned "
                f"[{_fmt(low)}, {_fmt(high)}]); try method='percentile' or more resamples"
            ),
            level=level,
            n=n,
            method=label,
            seed=seed,
            statistic=statistic,
            unit=unit,
            distribution=distribution,
        )
    return Estimate(
        value=float(value),
        ci_low=float(low),
        ci_high=float(high),
        level=level,
        n=int(n),
        method=label,
        seed=seed,
        statistic=statistic,
        unit=unit,
        bootstrap_distribution=_frozen(distribution),
    )


def _bootstrap_values(
    values: np.ndarray,
    *,
    stat_name: str,
    statistic: str,
    level: float,
    method: str,
    n_resamples: int,
    seed: int,
    what: str = "values",
) -> Estimate:
    """The generic one-sample core: degeneracy checks, then the bootstrap over examples."""
    fn = _STATISTICS[stat_name]
    n = values.shape[0]
    common = dict(
        level=level,
        n=n,
        method=f"bootstrap {method}",
        seed=seed,
        statistic=statistic,
        unit="examples",
    )
    bad = _count_nonfinite(values)
    if bad:
        return _degenerate(
            value=math.nan,
            reason=(
                f"{bad} of {n} {what} are NaN or inf; drop or fix those examples before "
                "estimating"
            ),
            **common,
        )
    if n < 2:
        value = float(fn(values)) if n == 1 else math.nan
        return _degenerate(
            value=value,
            reason=f"{n} example{'s' if n != 1 else ''}; a bootstrap CI needs at least 2",
            **common,
        )
    if _is_constant(values):
        value = float(fn(values))
        return _degenerate(
            value=value,
            reason=(
                f"constant data: all {n} {what} equal {_fmt(values[0])}; a bootstrap CI is "
                "not informative"
            ),
            **common,
        )

    def at(level: float, previous: Any = None) -> Estimate:
        low, high, dist, result = _resample(
            (values,),
            fn,
            paired=False,
            level=level,
            method=method,
            n_resamples=n_resamples,
            seed=seed,
            previous=previous,
        )
        estimate = _finish(
            value=float(fn(values)),
            low=float(low),
            high=float(high),
            distribution=dist,
            level=level,
            n=n,
            method=method,
            seed=seed,
            statistic=statistic,
        )
        # another level reuses these resamples: the same interval a call with that level gives
        return _recomputable(estimate, lambda other: at(other, result))

    return at(level)


# ----------------------------------------------------------------------------------------
# Bootstrap over examples


def bootstrap_ci(
    data: Any,
    *,
    statistic: str = "mean",
    level: float = 0.95,
    method: str = "BCa",
    n_resamples: int = 9999,
    seed: int,
) -> Estimate:
    """CI of a statistic of per-example values, by bootstrapping examples.

    Example::

        est = bootstrap_ci(logit_diffs, statistic="median", seed=0)
        est.value, est.ci_low, est.ci_high

    `data` is ``[n_examples]``, one value per example. `statistic` is ``"mean"`` or
    ``"median"``; `method` is ``"BCa"`` (default) or ``"percentile"``. Runs
    `scipy.stats.bootstrap` with ``rng=np.random.default_rng(seed)``; the result keeps the
    bootstrap distribution.
    """
    level, method, n_resamples, seed = _check_bootstrap_args(level, method, n_resamples, seed)
    stat_name = _check_choice(statistic, name="statistic", choices=tuple(_STATISTICS))
    values = _as_1d(data, name="data")
    return _bootstrap_values(
        values,
        stat_name=stat_name,
        statistic=stat_name,
        level=level,
        method=method,
        n_resamples=n_resamples,
        seed=seed,
    )


def bootstrap_mean(
    data: Any,
    *,
    level: float = 0.95,
    method: str = "BCa",
    n_resamples: int = 9999,
    seed: int,
) -> Estimate:
    """CI of the mean of per-example values, by bootstrapping examples.

    Example::

        est = bootstrap_mean(patched_minus_clean, seed=0)
        est.value, est.ci_low, est.ci_high   # 0.41, 0.37, 0.45

    `data` is ``[n_examples]``. The same as ``bootstrap_ci(data, statistic="mean", ...)``.
    """
    return bootstrap_ci(
        data,
        statistic="mean",
        level=level,
        method=method,
        n_resamples=n_resamples,
        seed=seed,
    )


def slope_near_zero(
    alphas: Any,
    scores: Any,
    *,
    near: float | None = None,
    level: float = 0.95,
    method: str = "BCa",
    n_resamples: int = 9999,
    seed: int,
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
    level, method, n_resamples, seed = _check_bootstrap_args(level, method, n_resamples, seed)
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


def paired_difference(
    x: Any,
    y: Any,
    *,
    level: float = 0.95,
    method: str = "BCa",
    n_resamples: int = 9999,
    seed: int,
) -> Estimate:
    """CI of mean(x - y) over paired examples, bootstrapping examples.

    Example::

        est = paired_difference(patched_scores, clean_scores, seed=0)   # both [n_examples]
        est.value   # mean drop from patching

    ``x[i]`` and ``y[i]`` are two measurements of example i; the pair is resampled together.
    """
    level, method, n_resamples, seed = _check_bootstrap_args(level, method, n_resamples, seed)
    xa = _as_1d(x, name="x")
    ya = _as_1d(y, name="y")
    _check_same_length(xa, ya)
    return _bootstrap_values(
        xa - ya,
        stat_name="mean",
        statistic="mean difference",
        level=level,
        method=method,
        n_resamples=n_resamples,
        seed=seed,
        what="differences x - y",
    )


def _ratio_and_denominator(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.stack([np.mean(x, axis=axis) / np.mean(y, axis=axis), np.mean(y, axis=axis)])


def _denominator_reason(den_dist: np.ndarray, level: float) -> str | None:
    """Why the ratio is unbounded, when the denominator's interval includes 0."""
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(den_dist, [tail, 1.0 - tail])
    if lo <= 0.0 <= hi or np.any(den_dist == 0.0):
        return (
            f"the denominator's {_fmt(level * 100)}% interval [{_fmt(lo)}, {_fmt(hi)}] "
            "includes 0, so the ratio is unbounded; report the numerator and denominator "
            "separately"
        )
    return None


def paired_ratio(
    x: Any,
    y: Any,
    *,
    level: float = 0.95,
    method: str = "BCa",
    n_resamples: int = 9999,
    seed: int,
) -> Estimate:
    """CI of mean(x) / mean(y) over paired examples, resampling the pairs jointly.

    Example::

        est = paired_ratio(patched_effect, total_effect, seed=0)   # both [n_examples]
        est.value   # fraction of the effect the patched site carries

    Each resample draws example indices once and takes both means over them (scipy's
    ``paired=True``). When the denominator's bootstrap interval includes 0 the ratio is
    unbounded: the estimate is degenerate, with the point ratio as its value.
    """
    level, method, n_resamples, seed = _check_bootstrap_args(level, method, n_resamples, seed)
    xa = _as_1d(x, name="x")
    ya = _as_1d(y, name="y")
    _check_same_length(xa, ya)
    n = xa.shape[0]
    common = dict(
        level=level,
        n=n,
        method=f"bootstrap {method}",
        seed=seed,
        statistic="ratio of means",
        unit="examples",
    )
    bad = _count_nonfinite(xa, ya)
    if bad:
        return _degenerate(
            value=math.nan,
            reason=(
                f"{bad} of {2 * n} values in x and y are NaN or inf; drop or fix those "
                "examples before estimating"
            ),
            **common,
        )
    mean_y = float(np.mean(ya)) if n else math.nan
    value = float(np.mean(xa)) / mean_y if n and mean_y != 0.0 else math.nan
    if n < 2:
        return _degenerate(
            value=value,
            reason=f"{n} example{'s' if n != 1 else ''}; a bootstrap CI needs at least 2",
            **common,
        )
    if mean_y == 0.0:
        return _degenerate(
            value=math.nan,
            reason="the denominator's mean is 0, so mean(x) / mean(y) is undefined",
            **common,
        )
    if _is_constant(xa) and _is_constant(ya):
        return _degenerate(
            value=value,
            reason=(
                f"constant data: all {n} x equal {_fmt(xa[0])} and all y equal "
                f"{_fmt(ya[0])}; a bootstrap CI is not informative"
            ),
            **common,
        )
    low, high, dist, _ = _resample(
        (xa, ya),
        _ratio_and_denominator,
        paired=True,
        level=level,
        method=method,
        n_resamples=n_resamples,
        seed=seed,
    )
    ratio_dist = dist[0]
    reason = _denominator_reason(dist[1], level)
    if reason is not None:
        return _degenerate(value=value, reason=reason, distribution=ratio_dist, **common)
    estimate = _finish(
        value=value,
        low=float(low[0]),
        high=float(high[0]),
        distribution=ratio_dist,
        level=level,
        n=n,
        method=method,
        seed=seed,
        statistic="ratio of means",
    )
    return _recomputable(estimate, lambda other: paired_ratio(
        xa, ya, level=other, method=method, n_resamples=n_resamples, seed=seed))


def _two_distributions(a: Estimate, b: Estimate, names: tuple[str, str], level: float | None,
                       *, method: str, statistic: str):
    """Check two bootstrap estimates for a combination resample by resample; return the level,
    the fields the combined `Estimate` shares, the degenerate input (or None) and both
    distributions."""
    a = _check_estimate(a, name=names[0])
    b = _check_estimate(b, name=names[1])
    if level is None:
        if a.level != b.level:
            raise StatsError(
                f"`level` is None but {names[0]}.level={_show(a.level)} and "
                f"{names[1]}.level={_show(b.level)} differ; pass level= explicitly"
            )
        level = a.level
    level = _check_level(level)
    common = dict(
        level=level,
        n=min(a.n, b.n),
        method=method,
        seed=a.seed if a.seed == b.seed else None,
        statistic=statistic.format(a.statistic or names[0], b.statistic or names[1]),
        unit=a.unit if a.unit == b.unit else f"{a.unit} / {b.unit}",
    )
    for name, est in zip(names, (a, b)):
        if est.degenerate:
            return level, common, f"the {name} is degenerate: {est.reason}", None, None
    for name, est in zip(names, (a, b)):
        if est.bootstrap_distribution is None:
            raise StatsError(
                f"`{name}` has no bootstrap distribution (method={est.method!r}); build it "
                "with a bootstrap function such as bootstrap_mean"
            )
        if np.ndim(est.bootstrap_distribution) != 1:
            raise StatsError(
                f"`{name}` must have a 1-D bootstrap distribution, got shape "
                f"{np.shape(est.bootstrap_distribution)}; pass a single-statistic Estimate"
            )
    a_dist = np.asarray(a.bootstrap_distribution, dtype=np.float64)
    b_dist = np.asarray(b.bootstrap_distribution, dtype=np.float64)
    if a_dist.shape != b_dist.shape:
        raise StatsError(
            f"`{names[1]}` has a bootstrap distribution of {b_dist.shape[0]} resamples but "
            f"`{names[0]}` has {a_dist.shape[0]}; build both with the same n_resamples (and "
            "the same seed over the same examples, to pair them)"
        )
    return level, common, None, a_dist, b_dist


def ratio_of(
    numerator: Estimate,
    denominator: Estimate,
    *,
    level: float | None = None,
) -> Estimate:
    """Ratio of two bootstrap estimates, from their distributions resample by resample.

    Example::

        direct = bootstrap_mean(direct_effects, seed=0)
        total = bootstrap_mean(total_effects, seed=0)
        share = ratio_of(direct, total)   # percentile CI of direct / total

    Both estimates need bootstrap distributions of equal length. Built with the same seed
    over the same examples, resample b of each used the same example indices, so the ratio
    is properly paired; built otherwise, the two are treated as independent. The CI is the
    percentile interval of the element-wise ratio at `level` (the inputs' level when None).
    When the denominator's interval includes 0 the ratio is unbounded and the estimate is
    degenerate.
    """
    level, common, bad, num_dist, den_dist = _two_distributions(
        numerator, denominator, ("numerator", "denominator"), level,
        method="bootstrap percentile (ratio of distributions)", statistic="{} / {}")
    if bad is not None:
        return _degenerate(value=math.nan, reason=bad, **common)
    value = numerator.value / denominator.value if denominator.value != 0.0 else math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = num_dist / den_dist
    reason = _denominator_reason(den_dist, level)
    if reason is not None:
        return _degenerate(value=value, reason=reason, distribution=ratio, **common)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(ratio, [tail, 1.0 - tail])
    estimate = Estimate(
        value=float(value),
        ci_low=float(low),
        ci_high=float(high),
        bootstrap_distribution=_frozen(ratio),
        **common,
    )
    return _recomputable(estimate, lambda other: ratio_of(numerator, denominator, level=other))


def difference_of(first: Estimate, second: Estimate, *, level: float | None = None) -> Estimate:
    """Difference of two bootstrap estimates, from their distributions resample by resample.

    Example::

        parens = bootstrap_mean(impact_on_parenthesised, seed=1)
        flat = bootstrap_mean(impact_on_flat, seed=2)
        gap = difference_of(parens, flat)   # percentile CI of parens - flat

    For two independent samples (different examples), build the estimates with different
    seeds: each resamples its own examples, which is the two-sample bootstrap. For paired
    examples use `paired_difference`. The CI is the percentile interval of the element-wise
    difference at `level` (the inputs' level when None).
    """
    level, common, bad, a_dist, b_dist = _two_distributions(
        first, second, ("first", "second"), level,
        method="bootstrap percentile (difference of distributions)", statistic="{} - {}")
    if bad is not None:
        return _degenerate(value=math.nan, reason=bad, **common)
    diff = a_dist - b_dist
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(diff, [tail, 1.0 - tail])
    estimate = Estimate(value=float(first.value - second.value), ci_low=float(low), ci_high=float(high),
                        bootstrap_distribution=_frozen(diff), **common)
    return _recomputable(estimate, lambda other: difference_of(first, second, level=other))
