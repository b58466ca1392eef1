"""The tracer study's statistics over pairs: recoveries by role and layer, the crossing layer, the
agreement of two maps, with bootstrap CIs over pairs (`harness.stats`).

Every array here is per pair: ``[n_pairs, layers, roles]`` (roles in `settings.ROLES` order) with
NaN where a pair has no position of a role. Layers are the harness's: index ``l`` is
``blocks.{l+1}.resid_pre`` (the input of block l+1; index 0 is the embeddings).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import spearmanr

from harness import DataError, Estimate, stats

from claims.tracer.settings import ROLES



def role(name: str) -> int:
    """The column of role `name` in a by-role array."""
    if name not in ROLES:
        raise DataError(f"unknown role {name!r}; the roles are {list(ROLES)}")
    return ROLES.index(name)


def cell(values: np.ndarray, layer: int, name: str, *, what: str) -> Estimate:
    """Mean over the pairs that have role `name` of ``values[:, layer - 1, role]`` (harness layer
    `layer`, 1-based), with its bootstrap CI over pairs."""
    x = values[:, layer - 1, role(name)]
    x = x[np.isfinite(x)]
    return stats.bootstrap_mean(x).with_context(
        statistic=f"{what} at blocks.{layer}.resid_pre, {name} position ({x.size} pairs, mean)")


def paired(values: np.ndarray, layer: int, first: str, second: str, *, what: str) -> Estimate:
    """Mean over pairs that have both roles of (first - second) at harness layer `layer`."""
    a, b = values[:, layer - 1, role(first)], values[:, layer - 1, role(second)]
    keep = np.isfinite(a) & np.isfinite(b)
    return stats.paired_difference(a[keep], b[keep]).with_context(
        statistic=f"{what} at blocks.{layer}.resid_pre: {first} - {second} ({int(keep.sum())} pairs with both)")


def crossing_layer(values: np.ndarray, *, late: str = "final", early: str = "divergence") -> int:
    """The first harness layer at which the mean over pairs at role `late` exceeds that at
    `early` (``layers + 1`` when it never does)."""
    late_mean, early_mean = nanmean(values[:, :, role(late)]), nanmean(values[:, :, role(early)])
    above = np.flatnonzero(late_mean > early_mean)
    return int(above[0]) + 1 if above.size else values.shape[1] + 1


def crossing(values: np.ndarray) -> Estimate:
    """`crossing_layer` with a percentile bootstrap CI over pairs."""
    return stats.bootstrap_statistic(values, crossing_layer, name="first layer at which the final position "
                                     "recovers more than the divergence position (mean over pairs)",
                                     method="percentile")


def rank_agreement(first: np.ndarray, second: np.ndarray, *, name: str) -> Estimate:
    """Spearman's rho between the mean maps (layers x roles cells) of two per-pair arrays over
    the same pairs, with a bootstrap CI resampling pairs (a pair's two maps kept together)."""
    if first.shape != second.shape:
        raise DataError(f"the two maps have shapes {first.shape} and {second.shape}; give them over the same pairs")
    both = np.stack([first, second], 1)
    defined = np.isfinite(nanmean(first)) & np.isfinite(nanmean(second))

    def rho(sample: np.ndarray) -> float:
        a, b = nanmean(sample[:, 0])[defined], nanmean(sample[:, 1])[defined]
        ok = np.isfinite(a) & np.isfinite(b)
        return float(spearmanr(a[ok], b[ok]).statistic)

    return stats.bootstrap_statistic(both, rho, name=name)


def nanmean(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """`np.nanmean` without its "mean of empty slice" warning (a role no pair has: NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis)


def summary(values: np.ndarray) -> dict:
    """JSON-safe mean map ``{role: [per layer]}`` and the count of pairs per role."""
    means = nanmean(values)
    return {"layers": list(range(1, values.shape[1] + 1)),
            "mean": {name: [None if not np.isfinite(v) else round(float(v), 4) for v in means[:, r]]
                     for r, name in enumerate(ROLES)},
            "pairs": {name: int(np.isfinite(values[:, 0, r]).sum()) for r, name in enumerate(ROLES)}}
