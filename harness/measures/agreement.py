"""How far two maps over the same pairs agree: one measured (activation patching), one estimated
(attribution patching), or two measurements of one effect (patching and causal tracing).

    patch_effects(map)                       ``[n_pairs, ...cells]``: a patching map's values minus its corrupt metric
    map_agreement(a, b, method=...)      Spearman's rho or Pearson's r over the cells of the two pair-mean maps,
                                         bootstrap CI resampling pairs
    pair_mean(x)                         the mean over pairs of a per-pair map, cell by cell, NaN ignored
    top_cell_rank(estimate, measured)    the rank, in the estimate's ordering, of the measured map's top cell,
                                         bootstrap CI resampling pairs

Both maps are per pair (the first axis), the same shape, NaN where a cell is undefined for a pair
(past its length). A cell counts when both pair-mean maps are finite there. The agreement the
literature reports for attribution patching is a correlation of this kind over the cells of a
map (Kramár et al. 2024, AtP*, arXiv 2403.00745; Syed et al. 2023, arXiv 2310.10348).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr

from harness import stats
from harness.errors import DataError
from harness.stats.estimate import Estimate

__all__ = ["patch_effects", "map_agreement", "top_cell_rank", "pair_mean"]

_METHODS = ("spearman", "pearson")


def pair_mean(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """The mean over pairs (axis 0) of a per-pair map, each cell over the pairs that define it
    (`np.nanmean` without its "mean of empty slice" warning: a cell no pair defines is NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis)


def patch_effects(patch_map: Any) -> np.ndarray:
    """``[n_pairs, rows, cols]`` float64: a `PatchMap` / `SitePatchMap`'s ``values`` minus each
    pair's ``corrupt`` metric (the effect of patching, or its estimate, in the metric's units);
    NaN cells stay NaN. Raises `DataError` for an object without ``values`` and ``corrupt``."""
    try:
        values, corrupt = patch_map.values, patch_map.corrupt
    except AttributeError:
        raise DataError(f"`patch_map` must be a PatchMap or SitePatchMap (with .values and .corrupt), "
                        f"got {type(patch_map).__name__}") from None
    values = np.asarray(values, dtype=np.float64)
    corrupt = np.asarray(corrupt, dtype=np.float64)
    return values - corrupt.reshape(-1, *([1] * (values.ndim - 1)))


def _both(first: Any, second: Any, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    if a.shape != b.shape:
        raise DataError(f"the two maps have shapes {a.shape} and {b.shape}; give them over the same pairs "
                        f"and cells ({what})")
    if a.ndim < 2:
        raise DataError(f"the maps must be [n_pairs, ...cells], got shape {a.shape}")
    defined = np.isfinite(pair_mean(a)) & np.isfinite(pair_mean(b))
    if defined.sum() < 3:
        raise DataError(f"the maps share {int(defined.sum())} defined cells; {what} needs at least 3")
    return a.reshape(len(a), -1), b.reshape(len(b), -1), defined.ravel()


def map_agreement(first: Any, second: Any, *, method: str = "spearman", name: str | None = None,
                  seed: int | None = None, n_resamples: int | None = None, level: float = 0.95) -> Estimate:
    """Correlation over cells between the pair-mean maps of `first` and `second` (each
    ``[n_pairs, ...cells]``, the same pairs in the same order), with a percentile bootstrap CI
    resampling pairs (a pair's two maps kept together; `harness.stats.bootstrap_statistic`).

    `method`: ``"spearman"`` (rank correlation: do the two orderings of cells agree) or
    ``"pearson"`` (linear correlation: do the sizes agree too). Unitless, in [-1, 1]. A cell
    counts where both full-sample means are finite; a resample uses those cells where its
    means are finite. Raises `DataError` for maps of different shapes, fewer than 3 shared
    cells, or an unknown `method` (naming the choices).
    """
    if method not in _METHODS:
        raise DataError(f"`method` must be one of {_METHODS}, got {method!r}")
    a, b, defined = _both(first, second, f"{method} agreement")
    corr = spearmanr if method == "spearman" else pearsonr
    both = np.stack([a[:, defined], b[:, defined]], 1)

    def statistic(sample: np.ndarray) -> float:
        x, y = pair_mean(sample[:, 0]), pair_mean(sample[:, 1])
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
            return float("nan")
        return float(corr(x[ok], y[ok]).statistic)

    label = name or f"{'Spearman rho' if method == 'spearman' else 'Pearson r'} between the mean maps"
    return stats.bootstrap_statistic(both, statistic, name=label, seed=seed, n_resamples=n_resamples, level=level)


def top_cell_rank(estimate: Any, measured: Any, *, name: str | None = None, seed: int | None = None,
                  n_resamples: int | None = None, level: float = 0.95) -> Estimate:
    """Where the measured map's top cell falls in the estimate's ordering: 1 when the cell the
    pair-mean `measured` map puts highest is also the estimate's highest, k when it is the
    estimate's k-th. "The top-k cells by attribution contain the top cell by patching" is this
    rank's CI upper bound at most k. Percentile bootstrap CI resampling pairs (both means and
    both orderings recomputed per resample). Unit: rank (1 = first) among the shared defined
    cells. Raises as `map_agreement`.
    """
    a, b, defined = _both(estimate, measured, "a top-cell rank")
    both = np.stack([a[:, defined], b[:, defined]], 1)

    def statistic(sample: np.ndarray) -> float:
        est, meas = pair_mean(sample[:, 0]), pair_mean(sample[:, 1])
        ok = np.isfinite(est) & np.isfinite(meas)
        if not ok.any():
            return float("nan")
        top = int(np.flatnonzero(ok)[np.argmax(meas[ok])])
        return float(1 + np.sum(est[ok] > est[top]))

    return stats.bootstrap_statistic(both, statistic, name=name or "rank of the measured top cell in the estimate",
                                     seed=seed, n_resamples=n_resamples, level=level)
