"""Finding 5: controls. Patching a program into itself changes nothing; pairs whose answers agree
carry no signal; a position chosen at random recovers about nothing (the mean of 8 draws per pair)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import Patch, Positions, Record, expect, intervene, pad_rows, stats

from claims.tracer import measure

SOURCE = "004: controls for the patching map"


def test_patching_a_program_into_itself_changes_nothing(tracer, every_pair, thresholds):
    """Exact: a full forward with every position of a middle block's resid_pre patched from the
    same program's own run gives the same logits bit for bit."""
    programs = [p["program_a"] for p in every_pair[:16]]
    ids, mask = pad_rows(tracer.tokenize(programs), pad_id=tracer.pad_id, device=tracer.device)
    site = tracer.site("blocks", thresholds.middle_layers[0], "resid_pre")
    with torch.no_grad():
        with intervene(tracer, {site: Record()}, masks={"blocks": mask}) as run:
            plain = tracer.module(input_ids=ids, attention_mask=mask).logits
        with intervene(tracer, {site: Patch(run.recorded[site], Positions.all())}, masks={"blocks": mask}):
            patched = tracer.module(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(plain, patched)


@pytest.mark.claim("For pairs whose answers agree, patching the final position at any block after the first (where "
                   "the final token's own embedding is the same) changes the answer's log-probability by less than "
                   "the margin: no signal without a changed answer", source=SOURCE)
def test_pairs_whose_answers_agree_carry_no_signal(control_map, thresholds, later_block):
    block = later_block
    last = control_map.lengths - 1
    rows = torch.arange(control_map.n)
    change = (control_map.values[rows, block - 1, last] - control_map.corrupt).numpy()
    est = stats.bootstrap_mean(change).with_context(
        statistic=f"change in log P(answer) patching blocks.{block}.resid_pre at the final position, pairs whose "
                  f"answers agree ({control_map.n} pairs)")
    expect(est).within(-thresholds.agree_margin, thresholds.agree_margin)


# The random-position control, RANDOM_POSITIONS positions per pair drawn uniformly (with replacement)
# between the divergence and the final position and averaged: one position per pair let the verdict
# hang on which position each pair drew. Pair i's draws come from np.random.default_rng([seed, i]).
RANDOM_POSITIONS = 8


@pytest.mark.claim("A position chosen at random after the divergence (not the divergence, not the final one; the "
                   "mean of 8 draws per pair) recovers about nothing at the middle layers", source=SOURCE)
def test_a_random_position_recovers_about_nothing(resid_map, positions, thresholds, middle_layer, claim_seed):
    norm = resid_map.normalized()[:, middle_layer - 1].numpy()
    picked = []
    for i, where in enumerate(positions):
        div, final = where["divergence"][0], where["final"][0]
        candidates = np.arange(div + 1, final)
        if candidates.size:
            drawn = np.random.default_rng([claim_seed, i]).choice(candidates, size=RANDOM_POSITIONS)
            picked.append(norm[i, drawn].mean())
    est = stats.bootstrap_mean(np.array(picked)).with_context(
        statistic=f"normalised recovery at blocks.{middle_layer}.resid_pre, the mean of {RANDOM_POSITIONS} random "
                  f"positions per pair between the divergence and the final position ({len(picked)} pairs)")
    expect(est).within(-thresholds.margin, thresholds.margin)


def test_the_control_pairs_agree_and_the_random_control_is_not_a_role(control_pairs):
    assert all(p["ground_truth_a"] == p["ground_truth_b"] for p in control_pairs)
    assert measure.role("final") != measure.role("divergence")
