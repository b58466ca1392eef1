"""`harness.measures.agreement`: correlations of two pair-mean maps and the measured top cell's
rank in an estimate, against numpy/scipy computed here without harness code."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from harness import DataError, map_agreement, patch_effects, top_cell_rank
from harness.measures.patching import PatchMap

import torch


def _maps(seed=0, n=40, shape=(4, 5), noise=0.5):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=shape)
    a = truth + rng.normal(scale=noise, size=(n, *shape))
    b = 2.0 * truth + 1.0 + rng.normal(scale=noise, size=(n, *shape))
    return a, b


@pytest.mark.parametrize("method, oracle", [("spearman", spearmanr), ("pearson", pearsonr)])
def test_the_value_is_the_correlation_of_the_mean_maps(method, oracle):
    a, b = _maps()
    est = map_agreement(a, b, method=method, seed=0, n_resamples=999)
    expected = oracle(a.mean(0).ravel(), b.mean(0).ravel()).statistic
    assert est.value == pytest.approx(expected, abs=1e-12)
    assert est.ci_low <= est.value <= est.ci_high and est.n == 40


def test_nan_cells_are_left_out_where_either_mean_is_undefined():
    a, b = _maps()
    a[:, 0, 0] = np.nan            # no pair defines this cell
    b[::2, 1, 1] = np.nan          # half the pairs define this one
    est = map_agreement(a, b, seed=0, n_resamples=199)
    flat_a, flat_b = a.reshape(len(a), -1)[:, 1:], b.reshape(len(b), -1)[:, 1:]
    ma, mb = np.nanmean(flat_a, 0), np.nanmean(flat_b, 0)
    assert est.value == pytest.approx(spearmanr(ma, mb).statistic, abs=1e-12)


def test_unrelated_maps_have_a_ci_around_zero():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(60, 6, 6)), rng.normal(size=(60, 6, 6))
    est = map_agreement(a, b, method="pearson", seed=0, n_resamples=999)
    assert est.ci_low < 0 < est.ci_high


def test_the_top_cell_rank_counts_the_estimate_cells_above_the_measured_top():
    n = 30
    measured = np.zeros((n, 3, 3))
    measured[:, 2, 1] = 5.0                        # the measured top cell
    estimate = np.tile(np.arange(9, dtype=float).reshape(3, 3), (n, 1, 1))   # cell (2,1) = 7: one cell (8) above
    est = top_cell_rank(estimate, measured, seed=0, n_resamples=199)
    assert (est.value, est.ci_low, est.ci_high) == (2.0, 2.0, 2.0)
    estimate[:, 2, 1] = 100.0
    assert top_cell_rank(estimate, measured, seed=0, n_resamples=199).value == 1.0


def test_patch_effects_subtract_each_pairs_corrupt_metric():
    values = torch.tensor([[[1.0, 2.0]], [[3.0, float("nan")]]])
    m = PatchMap(values=values, clean=torch.tensor([2.0, 4.0]), corrupt=torch.tensor([0.5, 1.0]),
                 lengths=torch.tensor([2, 1]), kind="resid_pre", fingerprint="x")
    out = patch_effects(m)
    np.testing.assert_array_equal(out, [[[0.5, 1.5]], [[2.0, np.nan]]])


def test_bad_input_names_the_problem():
    a, b = _maps()
    with pytest.raises(DataError, match="shapes"):
        map_agreement(a, b[:, :3])
    with pytest.raises(DataError, match="method"):
        map_agreement(a, b, method="kendall")
    with pytest.raises(DataError, match="defined cells"):
        map_agreement(np.full((5, 2, 1), np.nan), np.ones((5, 2, 1)))
    with pytest.raises(DataError, match="PatchMap"):
        patch_effects(np.ones(3))
