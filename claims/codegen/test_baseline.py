"""Finding 1: the unsteered greedy baseline passes some held-out problems and fails others, in
every complexity stratum (so both kinds of feature can exist)."""

from __future__ import annotations

import numpy as np
import pytest

from harness import expect, stats

from claims.codegen.conftest import stratum

STRATA = ["all", "cc1", "cc2", "cc3", "cc4-5", "cc6+"]


@pytest.mark.claim("The unsteered greedy baseline passes a share of the held-out problems within the stated "
                   "band, overall and in every complexity stratum",
                   source="001: features found by how they separate problems the model solves from those it fails")
@pytest.mark.parametrize("group", STRATA)
def test_baseline_pass_rate_per_complexity_stratum(problems, baseline, thresholds, group):
    keep = np.array([group == "all" or stratum(p) == group for p in problems["test"]])
    if not keep.any():
        pytest.fail(f"no test problem falls in stratum {group}; the strata come from COMPLEXITY_EDGES")
    cut = "" if thresholds.n_problems is None else f", of the first {thresholds.n_problems} test problems"
    rate = stats.proportion_of(baseline.passed[keep]).with_context(
        statistic=f"greedy pass rate on held-out problems ({group}{cut}, Wilson)")
    expect(rate).within(thresholds.min_pass_rate, thresholds.max_pass_rate)
