"""The tracer study's statistics over pairs: recoveries by role and layer, the crossing layer, the
agreement of two maps, with bootstrap CIs over pairs (`harness.stats`).

Every array here is per pair: ``[n_pairs, layers, roles]`` (roles in `settings.ROLES` order) with
NaN where a pair has no position of a role. Layers are the harness's: index ``l`` is
``blocks.{l+1}.resid_pre`` (the input of block l+1; index 0 is the embeddings).
"""

from __future__ import annotations

import numpy as np

from harness import DataError, Estimate, pair_mean, stats

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
    late_mean, early_mean = pair_mean(values[:, :, role(late)]), pair_mean(values[:, :, role(early)])
    above = np.flatnonzero(late_mean > early_mean)
    return int(above[0]) + 1 if above.size else values.shape[1] + 1


def crossing(values: np.ndarray) -> Estimate:
    """`crossing_layer` with a percentile bootstrap CI over pairs."""
    return stats.bootstrap_statistic(values, crossing_layer, name="first layer at which the final position "
                                     "recovers more than the divergence position (mean over pairs)",
                                     method="percentile")


def summary(values: np.ndarray) -> dict:
    """JSON-safe mean map ``{role: [per layer]}`` and the count of pairs per role."""
    means = pair_mean(values)
    return {"layers": list(range(1, values.shape[1] + 1)),
            "mean": {name: [None if not np.isfinite(v) else round(float(v), 4) for v in means[:, r]]
                     for r, name in enumerate(ROLES)},
            "pairs": {name: int(np.isfinite(values[:, 0, r]).sum()) for r, name in enumerate(ROLES)}}
