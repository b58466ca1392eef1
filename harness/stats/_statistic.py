"""`bootstrap_statistic`: the bootstrap over examples of any statistic of a whole sample (a rank
correlation of two mean maps, the first layer at which one mean exceeds another), through
`scipy.stats.bootstrap` like every other estimate here."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.errors import StatsError
from harness.stats._checks import _check_bootstrap_args, _fmt
from harness.stats._resampling import _finish, _resample
from harness.stats._results import _count_nonfinite, _degenerate, _recomputable
from harness.stats.estimate import Estimate


def bootstrap_statistic(
    data: Any,
    statistic: Callable[[np.ndarray], float],
    *,
    name: str,
    level: float = 0.95,
    method: str = "percentile",
    n_resamples: int | None = None,
    seed: int | None = None,
) -> Estimate:
    """CI of ``statistic(data)`` by resampling the examples (the first axis of `data`).

    Example::

        # maps: [n_pairs, layers, cells]; the rank correlation of two mean maps, pairs resampled
        rho = lambda m: spearmanr(m[:, 0].mean(0).ravel(), m[:, 1].mean(0).ravel()).statistic
        est = bootstrap_statistic(np.stack([patching, tracing], 1), rho, name="Spearman rho", seed=0)

    `data` is ``[n_examples, ...]``; `statistic` maps an array of that shape (the examples
    resampled with replacement, ``[n_examples, ...]``) to one finite number; `name` says what
    it is (the estimate's ``statistic``). Each resample is the examples at
    ``scipy.stats.bootstrap``'s resampled indices, so a statistic of several per-example
    quantities keeps an example's quantities together. `method` is ``"percentile"`` (the
    default: right for a statistic with few distinct values, such as a layer index) or
    ``"BCa"`` (calls `statistic` once per left-out example more).

    Degenerate (an `Estimate` with ``status="degenerate"`` and a RuntimeWarning, as elsewhere in
    `harness.stats`): fewer than 2 examples, a statistic that is not finite on the data, or one
    that is not finite on some resamples (the reason says on how many of how many; no method's
    interval is defined then).
    Raises `StatsError` for a `statistic` that is not callable, returns other than one number,
    or for the bad bootstrap arguments every estimator refuses.
    """
    level, method, n_resamples, seed = _check_bootstrap_args(level, method, n_resamples, seed, owner="bootstrap_statistic")
    if not callable(statistic):
        raise StatsError(f"`statistic` must be a callable array -> float, got {statistic!r}")
    values = np.asarray(data, dtype=np.float64)
    if values.ndim == 0:
        raise StatsError(f"`data` must have a first axis of examples, got a scalar {_fmt(float(values))}")
    n = int(values.shape[0])

    def one(sample: np.ndarray) -> float:
        out = np.asarray(statistic(sample), dtype=np.float64)
        if out.shape != ():
            raise StatsError(f"`statistic` must return one number, got an array of shape {out.shape}")
        return float(out)

    common = dict(level=level, n=n, method=f"bootstrap {method}", seed=seed, statistic=name, unit="examples")
    value = one(values) if n else math.nan
    if n < 2:
        return _degenerate(value=value, reason=f"{n} example{'s' if n != 1 else ''}; a bootstrap CI needs at least 2",
                           **common)
    if not math.isfinite(value):
        return _degenerate(value=value, reason=f"{name} is {_fmt(value)} on the data; it must be a finite number",
                           **common)

    def over(index: np.ndarray, axis: int = -1) -> np.ndarray:
        index = np.asarray(index)
        if index.ndim == 1:
            return np.asarray(one(values[index.astype(np.int64)]))
        return np.array([one(values[row.astype(np.int64)]) for row in index])

    def at(level: float, previous: Any = None) -> Estimate:
        low, high, dist, result = _resample((np.arange(n, dtype=np.float64),), over, paired=False, level=level,
                                            method=method, n_resamples=n_resamples, seed=seed, previous=previous)
        bad = _count_nonfinite(dist)
        if bad:
            # Every method's interval is NaN then (percentile and BCa alike), and more resamples
            # draw more of the same samples: the statistic itself must be defined on them.
            return _degenerate(value=value, distribution=dist, **dict(common, level=level), reason=(
                f"{name} is not finite on {bad} of {dist.size} resamples ({_fmt(value)} on the data); "
                f"the {method} interval needs it finite on every resample: define it on the samples "
                f"where it is not (e.g. a correlation of a resample with no variation) or use more "
                f"examples"))
        estimate = _finish(value=value, low=float(low), high=float(high), distribution=dist, level=level, n=n,
                           method=method, seed=seed, statistic=name)
        return _recomputable(estimate, lambda other: at(other, result))

    return at(level)
