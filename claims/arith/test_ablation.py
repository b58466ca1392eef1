"""Finding 2: ablation picks a head that matters more for parenthesised expressions."""

from __future__ import annotations

import numpy as np
import pytest

from claims.arith.measure import head_id
from harness import expect, stats

KINDS = ["zero", "mean"]


def impact_gap(impacts: np.ndarray, parens: np.ndarray, *, seed: int, n_resamples: int):
    """Mean impact on parenthesised rows minus on flat rows (two independent bootstraps)."""
    return stats.difference_of(stats.bootstrap_mean(impacts[parens], seed=seed, n_resamples=n_resamples),
                               stats.bootstrap_mean(impacts[~parens], seed=seed + 1, n_resamples=n_resamples))


@pytest.mark.claim("Ablation on the selection split picks the stated head (largest parenthesised-minus-flat "
                   "impact of mean ablation)",
                   source="002/003: ablation first to pick the head; layer 2 head 2")
def test_ablation_on_the_selection_split_picks_the_stated_head(selected_head, ablation, splits, thresholds,
                                                               claim_seed, claims_settings):
    layer, head = head_id(selected_head)
    impacts = ablation("selection", "mean")[:, layer - 1, head]
    parens = np.array([r.has_parens for r in splits["selection"]])
    gap = impact_gap(impacts, parens, seed=claim_seed, n_resamples=claims_settings.resamples).with_context(
        statistic=f"selection split: impact gap of {selected_head} (nats)", site=f"blocks.{layer}.attn.head{head}")
    expect(gap).positive()
    assert selected_head == thresholds.head, (
        f"ablation picked {selected_head}, the study states {thresholds.head}; update THRESHOLDS if the model changed")


@pytest.mark.claim("Ablating the selected head lowers log P(answer) more on parenthesised than on flat "
                   "held-out expressions",
                   source="002/003: head specialised for parentheses")
@pytest.mark.parametrize("kind", KINDS)
def test_ablating_the_head_hurts_parenthesised_more_than_flat(ablation, splits, thresholds, claim_seed,
                                                              claims_settings, head, kind):
    layer, h = head_id(head)
    impacts = ablation("test", kind, head)[:, layer - 1, h]
    parens = np.array([r.has_parens for r in splits["test"]])
    gap = impact_gap(impacts, parens, seed=claim_seed, n_resamples=claims_settings.resamples).with_context(
        statistic=f"{kind} ablation: impact(parens) - impact(flat) (nats)", site=f"blocks.{layer}.attn.head{h}")
    expect(gap).ci_excludes(0).positive().at_least(thresholds.min_impact_gap)
