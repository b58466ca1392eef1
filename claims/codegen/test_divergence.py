"""Finding 5: the steered code diverges from the baseline as the coefficient grows: similarity
falls with log-coefficient, stays high at the low end and collapses, with syntax errors, at the
extreme end (held-out grid problems)."""

from __future__ import annotations

import numpy as np
import pytest

from harness import expect, stats

from claims.codegen.measure import Condition
from claims.codegen.settings import FEATURES, GRID


def similarities(test_grid, feature: str, level: str = "char") -> np.ndarray:
    """``[n, len(GRID)]``: similarity of each problem's steered generation to its baseline
    generation, over characters (``char``) or generated tokens (``token``)."""
    return np.stack([test_grid["similarity"][Condition(feature, float(c))][level] for c in GRID], axis=1)


@pytest.mark.claim("Similarity of the steered code to the baseline falls with log10(coefficient) (slope CI below 0)",
                   source="001: regimes subtle (1-10), semantic (30-100), corruption (300-1000)")
@pytest.mark.parametrize("level", ["char", "token"])
@pytest.mark.parametrize("feature", FEATURES)
def test_similarity_falls_with_the_coefficient(test_grid, claim_seed, claims_settings, site, feature, level):
    est = stats.slope_near_zero(np.log10(GRID), similarities(test_grid, feature, level), seed=claim_seed,
                                n_resamples=claims_settings.resamples).with_context(
        statistic=f"slope of {level}-level similarity to the baseline generation on log10(coefficient)", site=site)
    expect(est).negative()


@pytest.mark.claim("At the low end of the grid the steered code stays close to the baseline (similarity above 0.8)",
                   source="001: coefficients 1-10 are subtle, similarity > 0.8")
@pytest.mark.parametrize("feature", FEATURES)
def test_similarity_stays_high_at_the_low_end(test_grid, thresholds, claim_seed, claims_settings, site, feature):
    column = GRID.index(thresholds.low_coefficient)
    est = stats.bootstrap_mean(similarities(test_grid, feature)[:, column], seed=claim_seed,
                               n_resamples=claims_settings.resamples, method="percentile").with_context(
        statistic=f"character similarity to the baseline generation at coefficient {thresholds.low_coefficient}", site=site)
    expect(est).at_least(thresholds.min_low_similarity)


@pytest.mark.claim("At the extreme end of the grid the code is corrupted: similarity below 0.5 and syntax errors "
                   "above the stated rate",
                   source="001: coefficients 300-1000 corrupt the code, similarity < 0.5, syntax errors")
@pytest.mark.parametrize("measure", ["similarity", "syntax-errors"])
@pytest.mark.parametrize("feature", FEATURES)
def test_the_extreme_end_corrupts_the_code(test_grid, thresholds, claim_seed, claims_settings, site, feature,
                                           measure):
    c = thresholds.high_coefficient
    if measure == "similarity":
        est = stats.bootstrap_mean(similarities(test_grid, feature)[:, GRID.index(c)], seed=claim_seed,
                                   n_resamples=claims_settings.resamples, method="percentile").with_context(
            statistic=f"character similarity to the baseline generation at coefficient {c}", site=site)
        expect(est).at_most(thresholds.max_high_similarity)
    else:
        run = test_grid["runs"][Condition(feature, float(c))]
        est = stats.proportion(int(run.syntax_error.sum()), len(run.statuses)).with_context(
            statistic=f"syntax-error rate at coefficient {c} (Wilson)", site=site)
        expect(est).at_least(thresholds.min_high_syntax_error_rate)
