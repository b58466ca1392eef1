"""Finding 2: where the changed value lives, by patching ``resid_pre`` of every block at every
position from program a into program b (normalised recovery of the logit difference between
the two answers, averaged over at least 1,000 pairs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import expect

from claims.tracer import measure

SOURCE = "004: patch one (layer, token) from one program into the other; the heat map over layers and positions"
WHAT = "normalised recovery (patched - b) / (a - b)"


def test_the_map_covers_enough_pairs(resid_map, every_pair):
    assert resid_map.n == len(every_pair) >= 1000
    assert bool((resid_map.clean > resid_map.corrupt).all()), "each pair's clean run prefers its own answer"


def test_at_the_first_block_only_the_divergence_position_restores(resid_map, positions):
    """Exact by construction: the programs differ in one token, so at the embeddings patching it
    makes the corrupt input the clean one (recovery 1) and patching any other position changes
    nothing (recovery exactly 0)."""
    first = resid_map.normalized()[:, 0]
    for i, where in enumerate(positions):
        div = where["divergence"][0]
        length = int(resid_map.lengths[i])
        assert abs(float(first[i, div]) - 1.0) < 1e-3
        others = torch.cat([first[i, :div], first[i, div + 1: length]])
        assert bool((others == 0).all())


@pytest.mark.claim("At the last block only the final position carries the answer: patching it recovers the clean "
                   "answer's logit difference, every other position recovers nothing (equivalence bound)",
                   source=SOURCE)
def test_at_the_last_block_only_the_final_position_carries_the_answer(recovery, thresholds, last_role):
    role = last_role
    est = measure.cell(recovery, thresholds.layers, role, what=WHAT)
    if role == "final":
        expect(est).at_least(thresholds.min_final_recovery)
    else:
        expect(est).within(-thresholds.margin, thresholds.margin)


@pytest.mark.claim("Between the first and the last block the effect moves from the divergence position to the final "
                   "position: the first layer at which the final position recovers more lies strictly inside the "
                   "stack (bootstrap CI over pairs)", source=SOURCE)
def test_the_effect_moves_to_the_final_position_inside_the_stack(recovery, thresholds):
    expect(measure.crossing(recovery)).within(2, thresholds.layers)


@pytest.mark.claim("At middle layers the value travels along its data dependencies: the end of a later step that "
                   "reads the changed variable recovers more than the end of a step the change does not reach",
                   source=SOURCE)
def test_steps_that_read_the_changed_variable_carry_it(recovery, middle_layer):
    expect(measure.paired(recovery, middle_layer, "readers", "others", what=WHAT)).positive()


def test_the_roles_are_where_the_programs_say(positions, every_pair, tracer):
    """Every pair has the divergence and the final position; the divergence lies inside the
    changed step; readers and others are step ends after it."""
    for where, pair in zip(positions, every_pair):
        ids = tracer.tokenize([pair["program_a"]])[0]
        assert where["final"] == [len(ids) - 1] and where["divergence"][0] < len(ids) - 1
        later = set(where["readers"]) | set(where["others"])
        assert not set(where["readers"]) & set(where["others"])
        assert all(p > where["divergence"][0] for p in later)
    assert np.mean([bool(w["readers"]) for w in positions]) > 0.2
