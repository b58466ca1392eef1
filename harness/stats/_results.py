"""Building `Estimate`s for the statistics: degenerate results (with their warning), the hooks
that let `Estimate.at_level` recompute, read-only distributions, and the input tests that decide
an estimate is degenerate (NaN or inf, constant data, a denominator interval that includes 0)."""

from __future__ import annotations

import dataclasses
import sys
import warnings
from collections.abc import Callable

import numpy as np

from harness.stats.estimate import Estimate
from harness.stats._checks import _fmt

# `_warn` attributes a warning to the first frame outside these modules: this one and the
# bootstrap estimators built on it (they were once one module and keep its attribution).
# `_family` and `_proportions` are deliberately not listed: their warnings point at them.
_WARN_SKIPS = frozenset({
    __name__,
    "harness.stats._resampling",
    "harness.stats._slopes",
    "harness.stats._paired",
    "harness.stats._derived",
    "harness.stats._statistic",
})


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
    """A RuntimeWarning attributed to the first caller outside the modules in `_WARN_SKIPS`."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_globals.get("__name__") in _WARN_SKIPS:
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
