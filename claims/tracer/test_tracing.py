"""Finding 4: causal tracing as ROME does it: Gaussian noise of 3x the embeddings' std on the
tokens of the changed step, several draws, one clean ``resid_pre`` state restored at a time;
the indirect effect on P(answer), and its agreement with the patching map."""

from __future__ import annotations

import numpy as np
import pytest

from harness import expect, map_agreement, stats

from claims.tracer import measure
from claims.tracer.settings import NOISE_FACTOR

SOURCE = "004: causal tracing (Meng et al. 2022, ROME): corrupt with noise, then restore single states"


@pytest.mark.claim("Noise of 3x the embeddings' std on the changed step's tokens lowers the probability of the "
                   "answer (ROME's total effect)", source=SOURCE)
def test_noise_on_the_changed_step_corrupts_the_answer(traced):
    total = traced["map"].total_effect().numpy()
    expect(stats.bootstrap_mean(total).with_context(
        statistic=f"P(answer) clean - noised (mean over {traced['map'].samples} draws; {len(total)} programs)")
    ).positive()


@pytest.mark.claim("Restoring one clean state has an indirect effect: the changed step's divergence token at the "
                   "embeddings, and the final position at the last block", source=SOURCE)
@pytest.mark.parametrize("where", ["layer1-divergence-position", "last-layer-final-position"])
def test_restoring_one_state_has_an_indirect_effect(traced, thresholds, where):
    layer, role = (1, "divergence") if where.startswith("layer1") else (thresholds.layers, "final")
    expect(measure.cell(traced["effect"], layer, role, what="indirect effect on P(answer)")).positive()


@pytest.mark.claim("The tracing map and the patching map agree on where the effect lives: the rank correlation of "
                   "their layer x position means over the same pairs has a CI above 0 (token replacement against "
                   "noise, as Zhang & Nanda 2024 recommend comparing)", source=SOURCE)
def test_tracing_and_patching_agree_on_where_the_effect_lives(traced, recovery):
    rows = traced["rows"]
    expect(map_agreement(recovery[rows], traced["effect"], name=(
        f"Spearman rho between the mean patching recovery and the mean tracing indirect effect over layer x role "
        f"cells ({len(rows)} pairs, noise {NOISE_FACTOR:g}x the embeddings' std)"))).positive()


def test_tracing_noises_only_the_changed_step(traced, every_pair, tracer):
    """Restoring a position before the noised span is exactly the noised run (causal model)."""
    tm = traced["map"]
    for i, (start, _) in enumerate(tm.spans):
        before = tm.values[i, :, :, :start]
        assert bool((before == tm.corrupted[i][:, None, None]).all())
    assert tm.std > 0 and np.isfinite(tm.std)
