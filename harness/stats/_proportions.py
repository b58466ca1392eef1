"""Proportions with Wilson and Clopper-Pearson intervals (unit: trials, no resampling)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special

from harness.errors import StatsError
from harness.stats.estimate import Estimate
from harness.stats._results import _count_nonfinite, _degenerate, _recomputable
from harness.stats._checks import (
    _PROPORTION_METHODS,
    _as_1d,
    _check_choice,
    _check_level,
    _check_nonnegative_int,
    _fmt,
)

# ----------------------------------------------------------------------------------------
# Proportions (no resampling)


def _check_count(value: Any, *, name: str) -> int:
    return _check_nonnegative_int(value, name=name, what="integer count",
                                  fix="pass a whole number (or use proportion_of for an array of outcomes)")


def proportion(
    successes: int,
    n: int,
    *,
    level: float = 0.95,
    method: str = "wilson",
) -> Estimate:
    """CI of a binomial proportion successes / n (Wilson or Clopper-Pearson).

    Example::

        est = proportion(87, 100)                       # Wilson, 95%
        est = proportion(0, 50, method="clopper-pearson")
        est.ci_low, est.ci_high                         # 0.0, 0.0711

    Closed forms, no resampling (unit: trials). Both intervals lie inside [0, 1] and contain
    successes / n; the lower bound is exactly 0 at 0 successes and the upper bound exactly
    1 at n of n. ``n = 0`` gives a degenerate estimate.
    """
    level = _check_level(level)
    method = _check_choice(method, name="method", choices=_PROPORTION_METHODS)
    k = _check_count(successes, name="successes")
    n = _check_count(n, name="n")
    if k > n:
        raise StatsError(
            f"`successes` must be between 0 and n={n}, got {k}; pass the number of successes "
            "among the n trials"
        )
    common = dict(level=level, n=n, method=method, seed=None, statistic="proportion",
                  unit="trials")
    if n == 0:
        return _degenerate(
            value=math.nan, reason="no trials (n=0); a proportion is undefined", **common
        )
    p = k / n
    tail = (1.0 - level) / 2.0
    if method == "wilson":
        z = float(special.ndtri(1.0 - tail))
        z2 = z * z
        denom = 1.0 + z2 / n
        center = (p + z2 / (2.0 * n)) / denom
        half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
        low, high = center - half, center + half
    else:
        low = float(special.betaincinv(k, n - k + 1, tail)) if k > 0 else 0.0
        high = float(special.betaincinv(k + 1, n - k, 1.0 - tail)) if k < n else 1.0
    # Exact at the edges; the min/max guard against rounding pushing p outside its CI.
    low = 0.0 if k == 0 else min(max(low, 0.0), p)
    high = 1.0 if k == n else max(min(high, 1.0), p)
    estimate = Estimate(value=p, ci_low=low, ci_high=high, **common)
    return _recomputable(estimate, lambda other: proportion(k, n, level=other, method=method))


def proportion_of(
    outcomes: Any,
    *,
    level: float = 0.95,
    method: str = "wilson",
) -> Estimate:
    """CI of the fraction of True (or 1) in an array of per-trial outcomes.

    Example::

        est = proportion_of(patched_logit_diff < 0)     # bool [n_examples]
        est.value, est.ci_low, est.ci_high

    `outcomes` holds only 0/1 or True/False; NaN makes the estimate degenerate.
    """
    level = _check_level(level)
    method = _check_choice(method, name="method", choices=_PROPORTION_METHODS)
    values = _as_1d(outcomes, name="outcomes", what="[n_trials]")
    n = values.shape[0]
    bad = _count_nonfinite(values)
    if bad:
        return _degenerate(
            value=math.nan,
            reason=f"{bad} of {n} outcomes are NaN or inf; drop or fix those trials",
            level=level,
            n=n,
            method=method,
            seed=None,
            statistic="proportion",
            unit="trials",
        )
    not_binary = np.flatnonzero((values != 0.0) & (values != 1.0))
    if not_binary.size:
        i = int(not_binary[0])
        raise StatsError(
            f"`outcomes` must hold only 0/1 or True/False, got {_fmt(values[i])} at index {i}; "
            "threshold the scores first, e.g. proportion_of(scores > 0)"
        )
    return proportion(int(values.sum()), n, level=level, method=method)
