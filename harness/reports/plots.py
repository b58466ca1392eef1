"""Plots of sweeps, written as PNG files beside the report.

    plot_sweeps(curves, path, title=...)   mean score shift vs alpha for several curves, each
                                           with a 95% bootstrap band over examples
    plot_layers(curves, path, title=...)   one Estimate per layer for each curve (e.g. a probe's
                                           accuracy and its control's), its CI as a band
    plot_heatmap(matrix, path, title=...)  a matrix (e.g. layer x head) as annotated cells
                                           with a colorbar
    plot_heatmaps(panels, path, title=...) several such matrices side by side (e.g. a tracing
                                           map beside a patching map)
    plot_panels(panels, xs, path, ...)     panels side by side, each with curves of one Estimate
                                           per x and CI bands (e.g. rates against a coefficient)

The shift of a curve is each example's score minus its score at alpha = 0, so curves of
different directions and spans share an origin. Bands are percentile bootstrap intervals of
the mean shift at each alpha, resampling examples (`harness.stats.bootstrap_ci`). Writing is
atomic: a temporary file renamed into place. matplotlib's Agg backend is used, so no display
is needed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from harness.errors import DataError
from harness.stats.estimate import Estimate
from harness.measures.sweeps import Curve

__all__ = ["plot_heatmap", "plot_heatmaps", "plot_layers", "plot_panels", "plot_sweeps"]


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
    with _figure(path, figsize=(6.4, 4.0)) as (fig, ax):
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
    return Path(path)


def plot_layers(curves: Mapping[str, Sequence[Estimate]], path: str | Path, *, title: str, ylabel: str,
                layers: Sequence[int] | None = None, reference: float | None = None) -> Path:
    """Plot one `Estimate` per layer for each curve: its value, and its CI as a band; returns the
    PNG's path. `layers` labels the x axis (default 0, 1, ...); `reference` draws a dashed
    horizontal line (e.g. chance accuracy).

    Example::

        plot_layers({"probe": probe_accuracy, "control": control_accuracy}, "reports/latest/arith/probes.png",
                    title="has-parentheses probe at '='", ylabel="test accuracy", reference=0.5)
    """
    if not curves:
        raise DataError("`curves` is empty; give at least one labelled sequence of per-layer Estimates")
    lengths = {label: len(estimates) for label, estimates in curves.items()}
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise DataError(f"every curve needs one Estimate per layer, and as many as the others; got {lengths}")
    xs = list(range(next(iter(lengths.values())))) if layers is None else list(layers)
    if len(xs) != next(iter(lengths.values())):
        raise DataError(f"`layers` has {len(xs)} entries for curves of {next(iter(lengths.values()))} "
                        "Estimates; give one layer per Estimate")
    with _figure(path, figsize=(6.4, 4.0)) as (fig, ax):
        for label, estimates in curves.items():
            value = [e.value for e in estimates]
            ax.plot(xs, value, marker="o", label=f"{label} (n={estimates[0].n})")
            ax.fill_between(xs, [e.ci_low for e in estimates], [e.ci_high for e in estimates], alpha=0.25)
        if reference is not None:
            ax.axhline(reference, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xticks(xs)
        ax.set_xlabel("layer")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    return Path(path)


def plot_panels(panels: Mapping[str, Mapping[str, Sequence[Estimate]]], xs: Sequence[float], path: str | Path, *,
                title: str, xlabel: str, log_x: bool = False) -> Path:
    """Several panels side by side, each a set of curves of one `Estimate` per x with its CI as a
    band (e.g. pass rate, flip rates and similarity against the steering coefficient, one curve
    per direction); returns the PNG's path.

    Example::

        plot_panels({"pass rate": {"correct": [...], "random-direction": [...]}, "similarity": {...}},
                    [1, 3, 10, 30], "reports/latest/codegen/grid.png", title="steering", xlabel="coefficient",
                    log_x=True)

    Raises `DataError` for no panels, an empty panel, or a curve without one Estimate per x.
    """
    if not panels or any(not curves for curves in panels.values()):
        raise DataError("`panels` must name at least one panel, each with at least one curve")
    xs = [float(x) for x in xs]
    for name, curves in panels.items():
        for label, estimates in curves.items():
            if len(estimates) != len(xs):
                raise DataError(f"panel {name!r}, curve {label!r} has {len(estimates)} Estimates for {len(xs)} x "
                                "values; give one Estimate per x")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), dpi=110, squeeze=False)
    try:
        for ax, (name, curves) in zip(axes[0], panels.items()):
            for label, estimates in curves.items():
                ax.plot(xs, [e.value for e in estimates], marker="o", markersize=3, label=label)
                ax.fill_between(xs, [e.ci_low for e in estimates], [e.ci_high for e in estimates], alpha=0.2)
            if log_x:
                ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_title(name, fontsize=9)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        _save_png(fig, path)
    finally:
        plt.close(fig)
    return path


@contextlib.contextmanager
def _figure(path: str | Path, *, figsize: tuple[float, float]):
    """A matplotlib (Agg) figure with one axes; on a clean exit it is laid out and written as a
    PNG at `path` atomically (a temporary file renamed into place); always closed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=figsize, dpi=110)
    try:
        yield fig, ax
        fig.tight_layout()
        _save_png(fig, path)
    finally:
        plt.close(fig)


def _save_png(fig, path: Path) -> None:
    """Write `fig` as a PNG at `path` atomically (a temporary file renamed into place)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def plot_heatmap(matrix, path: str | Path, *, title: str, row_labels: Sequence[str], col_labels: Sequence[str],
                 xlabel: str = "", ylabel: str = "", colorbar_label: str = "", fmt: str = "{:.2f}",
                 cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
                 annotate: bool = True) -> Path:
    """Plot a 2-D matrix as a heatmap: one cell per entry, its value written in the cell
    (`fmt`; NaN cells are left blank), a colorbar, labelled rows and columns; returns the PNG's
    path. `vmin`/`vmax` fix the colour scale (default: the finite values' range).

    Example::

        plot_heatmap(mean_ratio, "reports/latest/arith/attention_parens.png", title="`)` to its `(`",
                     row_labels=["layer1", "layer2"], col_labels=["head0", "head1"],
                     xlabel="head", ylabel="layer", colorbar_label="attention / uniform")
    """
    values = np.asarray(matrix, dtype=float)
    if values.ndim != 2 or values.size == 0:
        raise DataError(f"`matrix` must be a non-empty 2-D array [rows, columns], got shape {values.shape}")
    for name, labels, axis in (("row_labels", row_labels, 0), ("col_labels", col_labels, 1)):
        if isinstance(labels, str) or len(labels) != values.shape[axis]:
            raise DataError(f"`{name}` must hold {values.shape[axis]} labels, one per {('row', 'column')[axis]} of "
                            f"the {values.shape} matrix; got {labels!r:.80}")
    rows, cols = values.shape
    with _figure(path, figsize=(min(2.0 + 0.7 * cols, 16.0), min(1.6 + 0.5 * rows, 16.0))) as (fig, ax):
        _heatmap_on(fig, ax, values, title=title, row_labels=row_labels, col_labels=col_labels, xlabel=xlabel,
                    ylabel=ylabel, colorbar_label=colorbar_label, fmt=fmt, cmap=cmap, vmin=vmin, vmax=vmax,
                    annotate=annotate)
    return Path(path)


def plot_heatmaps(panels: Mapping[str, object], path: str | Path, *, title: str, row_labels: Sequence[str],
                  col_labels: Sequence[str], xlabel: str = "", ylabel: str = "",
                  colorbar_labels: Mapping[str, str] | None = None, fmt: str = "{:.2f}", cmap: str = "viridis",
                  annotate: bool = True) -> Path:
    """Plot several matrices of one shape as heatmaps side by side (e.g. a causal-tracing map
    beside a patching map, as ROME's figures compare them), each with its own colour scale and
    colorbar (``colorbar_labels[panel]``); returns the PNG's path. Raises `DataError` for no
    panels, or matrices that are not 2-D of one shape matching the labels."""
    if not panels:
        raise DataError("`panels` is empty; give at least one titled matrix")
    mats = {name: np.asarray(m, dtype=float) for name, m in panels.items()}
    shapes = {name: m.shape for name, m in mats.items()}
    first = next(iter(mats.values()))
    if len(set(shapes.values())) != 1 or first.ndim != 2 or first.size == 0:
        raise DataError(f"every panel must be a non-empty 2-D matrix of one shape; got {shapes}")
    for name, labels, axis in (("row_labels", row_labels, 0), ("col_labels", col_labels, 1)):
        if isinstance(labels, str) or len(labels) != first.shape[axis]:
            raise DataError(f"`{name}` must hold {first.shape[axis]} labels, one per {('row', 'column')[axis]} of "
                            f"the {first.shape} matrices; got {labels!r:.80}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = first.shape
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(mats), dpi=110, squeeze=False,
                             figsize=(min(len(mats) * (2.0 + 0.7 * cols), 24.0), min(2.0 + 0.5 * rows, 16.0)))
    try:
        for ax, (name, values) in zip(axes[0], mats.items()):
            _heatmap_on(fig, ax, values, title=name, row_labels=row_labels, col_labels=col_labels, xlabel=xlabel,
                        ylabel=ylabel, colorbar_label=(colorbar_labels or {}).get(name, ""), fmt=fmt, cmap=cmap,
                        vmin=None, vmax=None, annotate=annotate)
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        _save_png(fig, path)
    finally:
        plt.close(fig)
    return path


def _heatmap_on(fig, ax, values: np.ndarray, *, title: str, row_labels: Sequence[str], col_labels: Sequence[str],
                xlabel: str, ylabel: str, colorbar_label: str, fmt: str, cmap: str, vmin: float | None,
                vmax: float | None, annotate: bool) -> None:
    rows, cols = values.shape
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    bar = fig.colorbar(image, ax=ax)
    bar.set_label(colorbar_label)
    if annotate:
        _annotate_cells(ax, image, values, fmt)
    ax.set_xticks(range(cols), [str(c) for c in col_labels], rotation=90 if cols > 12 else 0)
    ax.set_yticks(range(rows), [str(r) for r in row_labels])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)


def _annotate_cells(ax, image, values: np.ndarray, fmt: str) -> None:
    """Write each finite cell's value in it, dark on light colours and light on dark ones."""
    for (r, c), v in np.ndenumerate(values):
        if np.isfinite(v):
            red, green, blue, _ = image.cmap(image.norm(v))
            light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
            ax.text(c, r, fmt.format(v), ha="center", va="center", fontsize=8, color="black" if light else "white")
