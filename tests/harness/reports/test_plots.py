"""Plots: a PNG per call, written atomically, with a band per curve."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import DataError
from harness.reports.plots import plot_sweeps
from harness.measures.sweeps import Curve


def curve(slope: float, seed: int) -> Curve:
    rng = np.random.default_rng(seed)
    alphas = np.linspace(-1, 1, 9)
    scores = slope * alphas[None, :] + rng.normal(0, 0.1, (40, 9)) + rng.normal(0, 1, (40, 1))
    return Curve(alphas=alphas, scores=scores, site="encoder.12.resid_post", fingerprint="f", score_name="s")


def test_plot_sweeps_writes_a_png_and_leaves_no_temporary_file(tmp_path):
    out = plot_sweeps({"real": curve(2.0, 0), "control": curve(0.0, 1)}, tmp_path / "sub" / "layer12.png",
                      title="encoder.12.resid_post")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["layer12.png"]


def test_the_band_is_the_bootstrap_ci_of_the_mean_shift():
    from harness.reports.plots import _shift_band

    c = curve(2.0, 0)
    mean, low, high = _shift_band(c, seed=0, n_resamples=999)
    zero = int(np.argmin(np.abs(c.alphas)))
    assert mean[zero] == 0.0
    np.testing.assert_allclose(mean, (c.scores - c.scores[:, [zero]]).mean(0))
    assert np.all(low <= mean + 1e-12) and np.all(mean <= high + 1e-12)


def test_plotting_nothing_is_an_error(tmp_path):
    with pytest.raises(DataError, match="`curves` is empty"):
        plot_sweeps({}, tmp_path / "x.png", title="t")


def test_plot_heatmap_writes_a_png_with_nan_cells_and_names_mismatched_labels(tmp_path):
    from harness.reports.plots import plot_heatmap

    matrix = np.array([[1.0, 2.5, np.nan], [0.2, 3.0, 1.1]])
    out = plot_heatmap(matrix, tmp_path / "sub" / "map.png", title="attention / uniform",
                       row_labels=["layer1", "layer2"], col_labels=["head0", "head1", "head2"],
                       xlabel="head", ylabel="block", colorbar_label="ratio")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["map.png"]
    with pytest.raises(DataError, match=r"`col_labels` must hold 3 labels, one per column of the \(2, 3\) matrix"):
        plot_heatmap(matrix, tmp_path / "x.png", title="t", row_labels=["a", "b"], col_labels=["h0", "h1"])


def test_plot_heatmaps_puts_panels_side_by_side_and_refuses_mismatched_shapes(tmp_path):
    from harness.reports.plots import plot_heatmaps

    a, b = np.array([[1.0, np.nan], [0.5, 0.2]]), np.array([[0.1, 0.3], [0.0, 0.9]])
    out = plot_heatmaps({"patching": a, "tracing": b}, tmp_path / "maps.png", title="where the value lives",
                        row_labels=["layer1", "layer2"], col_labels=["div", "final"],
                        colorbar_labels={"patching": "recovery", "tracing": "indirect effect"})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and [p.name for p in tmp_path.iterdir()] == ["maps.png"]
    with pytest.raises(DataError, match="one shape"):
        plot_heatmaps({"a": a, "b": np.ones((3, 2))}, tmp_path / "x.png", title="t", row_labels=["r", "s"],
                      col_labels=["c", "d"])
    with pytest.raises(DataError, match="`panels` is empty"):
        plot_heatmaps({}, tmp_path / "x.png", title="t", row_labels=[], col_labels=[])
    with pytest.raises(DataError, match="`row_labels` must hold 2 labels"):
        plot_heatmaps({"a": a}, tmp_path / "x.png", title="t", row_labels=["r"], col_labels=["c", "d"])
