"""Estimates derived from two existing bootstrap estimates, resample by resample: `ratio_of` and
`difference_of`."""

from __future__ import annotations

import math

import numpy as np

from harness.errors import StatsError
from harness.stats.estimate import Estimate
from harness.stats._checks import _check_estimate, _check_level, _show
from harness.stats._results import _degenerate, _denominator_reason, _frozen, _recomputable


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
