"""Finding 3: the source's hand selection of steering coefficients, made by rule on the tuning split."""

from __future__ import annotations

import pytest

from harness import expect, stats

from claims.codegen.settings import FEATURES, FLIP_BAND


@pytest.mark.claim("On the tuning split, the rule (smallest coefficient with a flip rate in [0.2, 0.6] and few "
                   "syntax errors) selects the stated coefficient, where the code stays intact",
                   source="001: coefficients with 20-60% flips that keep the code intact, chosen by hand")
@pytest.mark.parametrize("feature", FEATURES)
def test_the_rule_selects_the_stated_coefficient(selection, thresholds, site, feature):
    stated = thresholds.selected[feature]
    picked = selection[feature]["selected"]
    grid = {row["coefficient"]: row for row in selection[feature]["grid"]}
    row = grid[stated]
    syntax = stats.proportion(round(row["syntax_error_rate"] * row["n"]), row["n"]).with_context(
        statistic=f"syntax-error rate at coefficient {stated} (tuning, Wilson; flip rate {row['flip_rate']:.2f})",
        site=site)
    expect(syntax).at_most(thresholds.max_syntax_error_rate)
    summary = ", ".join(f"{c}: flips {r['flip_rate']:.2f}, syntax {r['syntax_error_rate']:.2f}" for c, r in grid.items())
    assert picked == stated, (
        f"the rule selected {picked} for the {feature} feature ({selection[feature]['feature']}), the study states "
        f"{stated}; the grid (flip band {FLIP_BAND}): {summary}")
