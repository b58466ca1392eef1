"""Paired-sample bootstraps: `paired_difference` and `paired_ratio`, resampling examples with
each pair (x[i], y[i]) kept together."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from harness.stats.estimate import Estimate
from harness.stats._checks import _as_1d, _check_bootstrap_args, _check_same_length, _fmt
from harness.stats._resampling import _bootstrap_values, _finish, _resample
from harness.stats._results import (
    _count_nonfinite,
    _degenerate,
    _denominator_reason,
    _is_constant,
    _recomputable,
)


def paired_difference(
    x: Any,
    y: Any,
    *,
    level: float = 0.95,
    method: str = "BCa",
    n_resamples: int | None = None,
    seed: int | None = None,
) -> Estimate:
    """CI of mean(x - y) over paired examples, bootstrapping examples.

    Example::

        est = paired_difference(patched_scores, clean_scores, seed=0)   # both [n_examples]
        est.value   # mean drop from patching

    ``x[i]`` and ``y[i]`` are two measurements of example i; the pair is resampled together.
    """
    level, method, n_resamples, seed = _check_bootstrap_args(level, method, n_resamples, seed, owner="paired_difference")
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


def paired_ratio(
    x: Any,
    y: Any,
    *,
    level: float = 0.95,
    method: str = "BCa",
    n_resamples: int | None = None,
    seed: int | None = None,
) -> Estimate:
    """CI of mean(x) / mean(y) over paired examples, resampling the pairs jointly.

    Example::

        est = paired_ratio(patched_effect, total_effect, seed=0)   # both [n_examples]
        est.value   # fraction of the effect the patched site carries

    Each resample draws example indices once and takes both means over them (scipy's
    ``paired=True``). When the denominator's bootstrap interval includes 0 the ratio is
    unbounded: the estimate is degenerate, with the point ratio as its value.
    """
    level, method, n_resamples, seed = _check_bootstrap_args(level, method, n_resamples, seed, owner="paired_ratio")
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
