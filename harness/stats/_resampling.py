"""The bootstrap over examples: the `scipy.stats.bootstrap` call every bootstrap estimate goes
through, the one-sample core with its degeneracy checks, and `bootstrap_ci` / `bootstrap_mean`."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats as _scipy_stats

from harness.stats.estimate import Estimate
from harness.stats._checks import (
    _BATCH_ELEMENTS,
    _STATISTICS,
    _STREAM_BATCH_ELEMENTS,
    _as_1d,
    _check_bootstrap_args,
    _check_choice,
    _fmt,
)
from harness.stats._results import (
    _count_nonfinite,
    _degenerate,
    _frozen,
    _is_constant,
    _recomputable,
)

# ----------------------------------------------------------------------------------------
# Shared machinery


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
    elements = _BATCH_ELEMENTS if len(samples) > 1 and not paired else _STREAM_BATCH_ELEMENTS
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", _scipy_stats.DegenerateDataWarning)
        result = _scipy_stats.bootstrap(
            samples,
            statistic,
            n_resamples=0 if previous is not None else n_resamples,
            bootstrap_result=previous,
            batch=max(1, elements // n),
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
    n_resamples: int | None = None,
    seed: int | None = None,
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
    level, method, n_resamples, seed = _check_bootstrap_args(level, method, n_resamples, seed, owner="bootstrap_ci")
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
    n_resamples: int | None = None,
    seed: int | None = None,
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
