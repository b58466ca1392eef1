"""Finding 6: a distributed alignment search (DAS) at the best cell of the residual map: a learned
one-dimensional subspace whose interchange (program a -> program b) moves b's answer to a's, as
the changed variable predicts, far above a random one-dimensional subspace. The cell and the
subspace are chosen on the selection half of the pairs, measured on the test half."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import das, expect, interchange_logits, random_basis, stats

from claims.tracer import measure
from claims.tracer.settings import DAS_RANDOM, DAS_STEPS

SOURCE = "004: distributed alignment search (Geiger et al. 2023) at the best (layer, position)"
ONE_POSITION = ("divergence", "query", "final")   # roles with exactly one position per pair


@pytest.fixture(scope="session")
def das_cell(recovery, halves, thresholds) -> tuple[int, str]:
    """(harness layer, role): the cell after the embeddings with the highest mean recovery on the
    selection half, among roles with one position per pair."""
    means = measure.pair_mean(recovery[halves["selection"]])
    best = max(((layer, role) for layer in range(2, thresholds.layers + 1) for role in ONE_POSITION),
               key=lambda c: means[c[0] - 1, measure.role(c[1])])
    return best


@pytest.fixture(scope="session")
def das_result(tracer, every_pair, positions, halves, das_cell) -> dict:
    """The learned subspace (selection half) and, on the test half, the normalised recovery of the
    logit difference under its interchange and under `DAS_RANDOM` random subspaces."""
    from claims.tracer.conftest import _first

    layer, role = das_cell
    site = f"blocks.{layer}.resid_pre"
    a_ids = _first(tracer, [p["ground_truth_a"] for p in every_pair])
    b_ids = _first(tracer, [p["ground_truth_b"] for p in every_pair])
    where = [positions[i][role][0] for i in range(len(every_pair))]

    def pick(rows):
        return ([every_pair[i]["program_b"] for i in rows], [every_pair[i]["program_a"] for i in rows],
                [where[i] for i in rows])

    base, source, at = pick(halves["selection"])
    sub = das(tracer, base, source, site, at, [a_ids[i] for i in halves["selection"]], k=1, steps=DAS_STEPS)   # the run's seed (--claims-seed)
    test = halves["test"]
    base, source, at = pick(test)
    rows = torch.arange(len(test))
    ta, tb = torch.tensor([a_ids[i] for i in test]), torch.tensor([b_ids[i] for i in test])

    def diff(basis) -> np.ndarray:
        logits = interchange_logits(tracer, base, source, site, at, basis)
        return (logits[rows, ta] - logits[rows, tb]).numpy()

    zero = diff(torch.zeros(sub.basis.shape[0], 0))     # b's own run
    gap = diff(torch.eye(sub.basis.shape[0])) - zero     # the whole state interchanged: full recovery
    keep = np.abs(gap) > 0.1                             # pairs the cell matters for (logits)

    def recovered(basis) -> np.ndarray:
        return ((diff(basis) - zero) / np.where(keep, gap, 1.0))[keep]

    randoms = np.mean([recovered(random_basis(sub.basis.shape[0], 1, sub.seed + 1 + r)) for r in range(DAS_RANDOM)], 0)
    return {"site": site, "role": role, "learned": recovered(sub.basis), "random": randoms,
            "accuracy": float((diff(sub.basis) > 0).mean()), "dropped": int((~keep).sum())}


@pytest.mark.claim("A learned one-dimensional subspace at the best cell moves program b's answer to program a's when "
                   "interchanged from a, far above random one-dimensional subspaces (normalised recovery, test half)",
                   source=SOURCE)
def test_a_learned_subspace_carries_the_changed_value(das_result, thresholds):
    est = stats.paired_difference(das_result["learned"], das_result["random"]).with_context(
        statistic=f"normalised recovery of logit(a's answer) - logit(b's answer) interchanging a 1-d subspace of "
                  f"{das_result['site']} at the {das_result['role']} position: learned - mean of {DAS_RANDOM} random "
                  f"({len(das_result['learned'])} test-half pairs, {das_result['dropped']} where the whole state moves the logit "
                  f"difference by under 0.1 left out; a's answer wins in {das_result['accuracy']:.0%} of all)")
    expect(est).at_least(thresholds.min_das_gain)
