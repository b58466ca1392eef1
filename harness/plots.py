"""Plots of sweeps, written as PNG files beside the report.

    plot_sweeps(curves, path, title=...)   mean score shift vs alpha for several curves, each
                                           with a 95% bootstrap band over examples

The shift of a curve is each example's score minus its score at alpha = 0, so curves of
different directions and spans share an origin. Bands are percentile bootstrap intervals of
the mean shift at each alpha, resampling examples (`harness.stats.bootstrap_ci`). Writing is
atomic: a temporary file renamed into place. matplotlib's Agg backend is used, so no display
is needed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

from harness.errors import DataError
from harness.sweeps import Curve

__all__ = ["plot_sweeps"]


def _shift_band(curve: Curve, *, seed: int, n_resamples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from harness import stats

    zero = int(np.argmin(np.abs(curve.alphas)))
    shifts = curve.scores - curve.scores[:, [zero]]
    mean, low, high = [], [], []
    for j in range(curve.alphas.size):
        if np.ptp(shifts[:, j]) == 0.0:  # alpha = 0, where every shift is 0 by construction
            mean.append(shifts[0, j])
            low.append(shifts[0, j])
            high.append(shifts[0, j])
            continue
        est = stats.bootstrap_ci(shifts[:, j], method="percentile", n_resamples=n_resamples, seed=seed)
        mean.append(est.value)
        low.append(est.ci_low)
        high.append(est.ci_high)
    return np.asarray(mean), np.asarray(low), np.asarray(high)


def plot_sweeps(curves: Mapping[str, Curve], path: str | Path, *, title: str, ylabel: str = "score shift",
                seed: int = 0, n_resamples: int = 999) -> Path:
    """Plot each curve's mean shift vs alpha with a 95% band; returns the PNG's path.

    Example::

        plot_sweeps({"class-mean": real, "random0": control}, "reports/latest/tacgen/layer12.png",
                    title="encoder.12.resid_post")
    """
    if not curves:
        raise DataError("`curves` is empty; give at least one labelled Curve to plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    try:
        for label, curve in curves.items():
            mean, low, high = _shift_band(curve, seed=seed, n_resamples=n_resamples)
            ax.plot(curve.alphas, mean, marker=".", label=f"{label} (n={curve.n})")
            ax.fill_between(curve.alphas, low, high, alpha=0.25)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.axvline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel("alpha")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        try:
            fig.savefig(tmp, format="png")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    finally:
        plt.close(fig)
    return path
