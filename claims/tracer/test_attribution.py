"""Finding 7: attribution patching (one backward pass per batch of pairs) agrees with the
activation patching of findings 2 and 3, per site family: the residual map over layer x position,
the heads at the final position, the attention and MLP outputs at the final position. Both maps
are over the same pairs (the first 200 of the test half, `attribution_rows`) with the same metric
(`claims.tracer.attribution`); a cell's value is its effect on logit(a's answer) - logit(b's
answer) (`harness.patch_effects`)."""

from __future__ import annotations

import numpy as np
import pytest

from harness import expect, map_agreement, top_cell_rank

from claims.tracer.attribution import FAMILIES, effects_on

SOURCE = ("Nanda 2023, attribution patching; Kramar et al. 2024 (AtP*): on GPT-2 small Pearson r about 0.75 "
          "(residual), 0.98 (attention outputs), MLP outputs poor")
MAPS = {"resid": ("resid_map", "resid_attribution"), "heads": ("head_patch", "head_attribution"),
        "outputs": ("layer_patch", "layer_attribution")}
CASES = [(family, method) for family in FAMILIES for method in ("spearman", "pearson")]


@pytest.fixture
def maps(request, family, attribution_rows) -> tuple[np.ndarray, np.ndarray]:
    """``(estimate, measured)`` effects of `family` over `attribution_rows`, ``[pairs, layers, cells]``."""
    measured, estimate = (request.getfixturevalue(name) for name in MAPS[family])
    return effects_on(estimate, measured, attribution_rows)


def _what(family: str, est: np.ndarray) -> str:
    return f"{FAMILIES[family]} ({est.shape[0]} test-half pairs, effects on the logit difference)"


@pytest.mark.claim("Attribution patching agrees with activation patching on this model: the correlation over cells "
                   "of the two mean maps (same pairs, same metric) has a CI at least the row's bar", source=SOURCE)
@pytest.mark.parametrize(("family", "method"), CASES, ids=[f"{f}-{m}" for f, m in CASES])
def test_attribution_agrees_with_patching(maps, family, method, thresholds, claim_seed, claims_settings):
    est, measured = maps
    name = "Spearman rho" if method == "spearman" else "Pearson r"
    expect(map_agreement(est, measured, method=method, seed=claim_seed, n_resamples=claims_settings.resamples,
                         name=f"{name} between the mean attribution and patching maps: {_what(family, est)}")
           ).at_least(thresholds.min_attribution_agreement[family])


@pytest.mark.claim("The top-k cells by attribution contain the top cell by patching (k: the row's "
                   "attribution_top_k)", source=SOURCE)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_top_cells_by_attribution_contain_the_top_cell_by_patching(maps, family, thresholds, claim_seed,
                                                                        claims_settings):
    est, measured = maps
    expect(top_cell_rank(est, measured, seed=claim_seed, n_resamples=claims_settings.resamples,
                         name=f"rank, by attribution, of the top cell by patching: {_what(family, est)}")
           ).at_most(thresholds.attribution_top_k)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_attribution_and_patching_share_pairs_and_metric(request, family, attribution_rows):
    """The estimate's clean and corrupt metrics are the patching map's on its rows (the same
    programs, the same metric), within 1e-4 logits."""
    measured, estimate = (request.getfixturevalue(name) for name in MAPS[family])
    test = attribution_rows
    assert estimate.n == len(test)
    np.testing.assert_allclose(estimate.clean.numpy(), measured.clean[test].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(estimate.corrupt.numpy(), measured.corrupt[test].numpy(), atol=1e-4, rtol=0)
