"""Finding 8: attribution patching (one forward and one backward per batch of pairs, a first-order
estimate of every cell of a patching map) on the arithmetic model.

1. Agreement: per site family, Spearman's rho and Pearson's r over the cells between the pair-mean
   attribution map and the activation-patching map of the same test pairs and metric (the first
   answer token's logit difference, clean - corrupt), bootstrapping pairs
   (`harness.map_agreement`). Families: each head's output at all positions (the study's
   `head_patch_map`, 600 pairs); resid_pre at each block and position; each block's attention
   output and MLP output at the last token (two families of 4 cells); the neurons of MLP block
   `neuron_layer` at the last token. The residual and neuron maps use the first 100 test pairs
   (conftest.ATTRIBUTION_SUBSET).
2. Top cell: the patching map's top cell is among attribution's top `attribution_top_k` cells
   (`harness.top_cell_rank`).
3. Neurons: the `n_neurons` neurons of block `neuron_layer` that attribution ranks first on the
   selection split, on the test split, against the mean of 5 seeded random sets of as many
   other neurons of the layer: mean ablation lowers log P(answer) more, and patching them from
   the clean run recovers more of the logit difference.
4. Circuit: the heads whose attribution estimate on the selection split is at least
   `circuit_threshold` nats in size; on the test pairs, the clean logit difference with every
   other head mean-ablated, over the full model's, at least `min_faithfulness` and above the
   mean of 5 seeded random circuits of as many heads.

Pair-mean maps and point values are written to ``arith/attribution.json``.
"""

from __future__ import annotations

import numpy as np
import pytest

from claims.arith import measure
from claims.arith.attribution import FAMILIES
from harness import expect, map_agreement, stats, top_cell_rank
from harness.plugin import derive_seed

METHODS = ["spearman", "pearson"]


@pytest.mark.claim("Attribution patching agrees with activation patching on this model, per site family: the "
                   "correlation over cells of the two pair-mean maps (same pairs, same logit-difference metric) "
                   "is at least the stated bar (heads: 600 test pairs; residual stream and neurons: 100)",
                   source="Nanda 2023 (attribution patching); Kramar et al. 2024 (AtP*): Pearson r ~0.75 for the "
                          "residual stream, ~0.98 for attention outputs on GPT-2 small")
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family", FAMILIES)
def test_attribution_agrees_with_activation_patching(attribution_maps, thresholds, claim_seed, claims_settings,
                                                     family, method):
    maps = attribution_maps(family)
    label = "Spearman rho" if method == "spearman" else "Pearson r"
    est = map_agreement(maps.estimate, maps.measured, method=method, seed=claim_seed,
                        n_resamples=claims_settings.resamples,
                        name=f"{label}, attribution vs activation patching ({maps.what})")
    expect(est).at_least(thresholds.min_attribution_agreement)


@pytest.mark.claim("The top-k cells by attribution contain the top cell by activation patching, per site family "
                   "(heads: 600 test pairs; residual stream and neurons: 100)",
                   source="Kramar et al. 2024 (AtP*): attribution as a ranking that finds the largest effects")
@pytest.mark.parametrize("family", FAMILIES)
def test_attribution_ranks_the_top_patching_cell_among_its_top_k(attribution_maps, thresholds, claim_seed,
                                                                 claims_settings, family):
    maps = attribution_maps(family)
    rank = top_cell_rank(maps.estimate, maps.measured, seed=claim_seed, n_resamples=claims_settings.resamples,
                         name=f"rank in attribution of patching's top cell ({maps.what})")
    expect(rank).at_most(thresholds.attribution_top_k)


def _neuron_context(neuron_runs, thresholds) -> dict:
    units = ",".join(str(u) for u in neuron_runs["sets"][0])
    return {"site": f"blocks.{thresholds.neuron_layer}.mlp_post.neurons[{units}]"}


@pytest.mark.claim("Mean-ablating the MLP neurons that attribution ranks first (selection split) lowers "
                   "log P(answer) on the test split more than as many random neurons of the same layer (the mean "
                   "of 5 seeded random sets)",
                   source="the study's source: neurons 45-50 of FF layer 1 encode digit sums")
def test_ablating_the_top_neurons_hurts_more_than_random_neurons(neuron_runs, thresholds, claim_seed,
                                                                claims_settings):
    n = len(neuron_runs["sets"][0])
    top = stats.bootstrap_mean(neuron_runs["top"]["drops"], seed=claim_seed, n_resamples=claims_settings.resamples)
    random_mean = np.mean([r["drops"] for r in neuron_runs["random"]], 0)
    control = stats.bootstrap_mean(random_mean, seed=derive_seed(claim_seed, "random"),
                                   n_resamples=claims_settings.resamples)
    expect(top.with_context(statistic=f"drop of log P(first answer token), the top {n} neurons mean-ablated (nats)",
                            **_neuron_context(neuron_runs, thresholds))).greater_than(
        control.with_context(statistic=f"... {n} random neurons of the layer, the mean of "
                                       f"{len(neuron_runs['random'])} sets (nats)"))


@pytest.mark.claim("Patching the MLP neurons that attribution ranks first (selection split) from the clean run "
                   "recovers more of the logit difference on the test pairs than as many random neurons of the "
                   "same layer (the mean of 5 seeded random sets)",
                   source="the study's source: neurons 45-50 of FF layer 1 encode digit sums")
def test_patching_the_top_neurons_recovers_more_than_random_neurons(neuron_runs, restoration, thresholds,
                                                                   claim_seed, claims_settings):
    clean, corrupt = restoration.baselines("clean")
    gap = clean.logit_diff - corrupt.logit_diff
    n = len(neuron_runs["sets"][0])
    top = stats.paired_ratio(neuron_runs["top"]["patched"] - corrupt.logit_diff, gap, seed=claim_seed,
                             n_resamples=claims_settings.resamples)
    random_mean = np.mean([r["patched"] for r in neuron_runs["random"]], 0)
    control = stats.paired_ratio(random_mean - corrupt.logit_diff, gap, seed=derive_seed(claim_seed, "random"),
                                 n_resamples=claims_settings.resamples)
    expect(top.with_context(statistic=f"recovered logit difference, the top {n} neurons patched",
                            **_neuron_context(neuron_runs, thresholds))).greater_than(
        control.with_context(statistic=f"... {n} random neurons of the layer, the mean of "
                                       f"{len(neuron_runs['random'])} sets"))


def _faithfulness(runs: dict, key: str, *, seed: int, n_resamples: int):
    kept = runs[key] if key == "circuit" else np.mean(runs[key], 0)
    return stats.paired_ratio(kept, runs["full"], seed=seed, n_resamples=n_resamples)


@pytest.mark.claim("The head circuit attribution keeps on the selection split (|estimated effect| at least the "
                   "stated threshold) is faithful on the test pairs: the clean logit difference with every other "
                   "head mean-ablated is at least the stated share of the full model's",
                   source="Syed et al. 2023 (attribution patching finds circuits); Wang et al. 2022 (faithfulness)")
def test_the_attribution_circuit_is_faithful(circuit_runs, thresholds, claim_seed, claims_settings):
    est = _faithfulness(circuit_runs, "circuit", seed=claim_seed, n_resamples=claims_settings.resamples)
    heads = circuit_runs["sets"][0]
    sites = ", ".join(measure.head_site(h) for h in heads)
    expect(est.with_context(statistic=f"faithfulness: logit difference, only the {len(heads)} circuit heads "
                                      "kept, over the full model's", site=sites)).at_least(thresholds.min_faithfulness)


@pytest.mark.claim("The head circuit attribution keeps is more faithful than random circuits of as many heads "
                   "(the mean of 5 seeded random circuits)",
                   source="Syed et al. 2023 (attribution patching finds circuits); Wang et al. 2022 (faithfulness)")
def test_the_attribution_circuit_is_more_faithful_than_random_circuits(circuit_runs, claim_seed, claims_settings):
    heads = circuit_runs["sets"][0]
    est = _faithfulness(circuit_runs, "circuit", seed=claim_seed, n_resamples=claims_settings.resamples)
    control = _faithfulness(circuit_runs, "random", seed=derive_seed(claim_seed, "random"),
                            n_resamples=claims_settings.resamples)
    expect(est.with_context(statistic=f"faithfulness of the attribution circuit ({len(heads)} heads)",
                            site=", ".join(measure.head_site(h) for h in heads))).greater_than(
        control.with_context(statistic=f"faithfulness of {len(heads)} random heads, the mean of "
                                       f"{len(circuit_runs['random'])} circuits"))
