"""Equivalence, bootstrap p-values and multiple-comparison adjustments across a family of claims."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.errors import StatsError
from harness.stats.estimate import Estimate
from harness.stats._results import _warn
from harness.stats._checks import (
    _as_array,
    _check_estimate,
    _check_fraction,
    _check_positive,
    _show,
)

# ----------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, eq=False)
class Adjusted:
    """P-values adjusted for multiple comparisons, from `holm` or `benjamini_hochberg`.

    Example::

        adj = stats.holm([0.01, 0.04, 0.30], alpha=0.05)
        adj.pvalues, adj.reject   # array([0.03, 0.08, 0.3]), array([True, False, False])

    `pvalues` are in the order given, monotone in the raw p-values and at most 1; `reject`
    is ``pvalues <= alpha``.
    """

    pvalues: np.ndarray
    reject: np.ndarray
    alpha: float
    method: str

    @property
    def n_rejected(self) -> int:
        return int(np.count_nonzero(self.reject))




# ----------------------------------------------------------------------------------------
# Decisions and multiple comparisons


def equivalent(estimate: Estimate, *, margin: float) -> bool:
    """True when the whole CI lies inside [-margin, +margin] (an equivalence verdict).

    Example::

        est = slope_near_zero(alphas, scores, seed=0)
        equivalent(est, margin=0.05)   # the slope is practically zero

    A degenerate estimate is never equivalent.
    """
    estimate = _check_estimate(estimate, name="estimate")
    margin = _check_positive(
        margin, name="margin", example="pass the largest effect you treat as zero, e.g. "
        "margin=0.05"
    )
    if estimate.degenerate:
        return False
    return bool(-margin <= estimate.ci_low and estimate.ci_high <= margin)


def bootstrap_pvalue(estimate: Estimate, *, null: float = 0.0) -> float:
    """Two-sided p-value for ``value == null`` read off the bootstrap distribution.

    Example::

        est = paired_difference(patched, clean, seed=0)
        p = bootstrap_pvalue(est)        # 2 * min(P(d <= 0), P(d >= 0)) over resamples d

    ``p = 2 * min(P(d <= null), P(d >= null))``, clipped to ``[1 / (B + 1), 1]`` for B
    resamples: with B resamples no p below 1/(B + 1) can be claimed. A degenerate estimate
    gets p = 1 (it never rejects) and a ``RuntimeWarning``.
    """
    estimate = _check_estimate(estimate, name="estimate")
    ok = isinstance(null, numbers.Real) and not isinstance(null, bool) and math.isfinite(null)
    if not ok:
        raise StatsError(
            f"`null` must be a finite number, got {_show(null)}; pass the value under the null "
            "hypothesis, e.g. null=0.0"
        )
    if estimate.degenerate:
        _warn(f"p-value of a degenerate estimate set to 1: {estimate.reason}")
        return 1.0
    if estimate.bootstrap_distribution is None:
        raise StatsError(
            f"`estimate` has no bootstrap distribution (method={estimate.method!r}); build it "
            "with a bootstrap function such as bootstrap_mean or paired_difference"
        )
    d = np.asarray(estimate.bootstrap_distribution, dtype=np.float64).ravel()
    b = d.shape[0]
    p = 2.0 * min(np.count_nonzero(d <= null), np.count_nonzero(d >= null)) / b
    return float(min(max(p, 1.0 / (b + 1)), 1.0))


def _check_pvalues(pvalues: Any) -> np.ndarray:
    p = _as_array(pvalues, name="pvalues")
    if p.ndim != 1:
        raise StatsError(
            f"`pvalues` must be 1-D, got shape {tuple(p.shape)}; pass one p-value per claim"
        )
    bad = np.flatnonzero(~((p >= 0.0) & (p <= 1.0)))
    if bad.size:
        i = int(bad[0])
        raise StatsError(
            f"`pvalues` must be in [0, 1], got {_show(p[i])} at index {i}; pass raw p-values "
            "(not -log10 p or percentages)"
        )
    return p


def _check_alpha(alpha: Any) -> float:
    return _check_fraction(alpha, name="alpha", what="a significance level such as 0.05")


def _adjusted(adjusted: np.ndarray, alpha: float, method: str) -> Adjusted:
    adjusted = np.minimum(adjusted, 1.0)
    reject = adjusted <= alpha
    adjusted.setflags(write=False)
    reject.setflags(write=False)
    return Adjusted(pvalues=adjusted, reject=reject, alpha=alpha, method=method)


def holm(pvalues: Any, *, alpha: float = 0.05) -> Adjusted:
    """Holm step-down adjustment: controls the family-wise error rate at `alpha`.

    Example::

        adj = holm([0.01, 0.04, 0.30])
        adj.pvalues   # array([0.03, 0.08, 0.3])

    The i-th smallest p (1-based) becomes ``max_{j <= i} min(1, (m - j + 1) * p_(j))``.
    """
    p = _check_pvalues(pvalues)
    alpha = _check_alpha(alpha)
    m = p.shape[0]
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled) if m else scaled
    return _adjusted(adjusted, alpha, "holm")


def benjamini_hochberg(pvalues: Any, *, alpha: float = 0.05) -> Adjusted:
    """Benjamini-Hochberg step-up adjustment: controls the false discovery rate at `alpha`.

    Example::

        adj = benjamini_hochberg([0.01, 0.04, 0.30])
        adj.pvalues   # array([0.03, 0.06, 0.3])

    The i-th smallest p (1-based) becomes ``min_{j >= i} min(1, m / j * p_(j))``; the same
    as ``scipy.stats.false_discovery_control(p, method="bh")``.
    """
    p = _check_pvalues(pvalues)
    alpha = _check_alpha(alpha)
    m = p.shape[0]
    order = np.argsort(p, kind="stable")
    scaled = m / np.arange(1, m + 1) * p[order]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum.accumulate(scaled[::-1])[::-1] if m else scaled
    return _adjusted(adjusted, alpha, "benjamini-hochberg")
