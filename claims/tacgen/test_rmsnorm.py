"""Findings 6 and 7: the encoder's final RMSNorm suppresses edits made inside the encoder, and
RMS-scaled injection gets past it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from claims.tacgen.settings import MAX_LENGTH, NEAR
from claims.tacgen.test_steering import LOCAL
from harness import Add, expect, intervene, pad_rows, Record, stats

INSIDE, AFTER = "encoder.12.block_out", "encoder.12.resid_post"


@pytest.mark.claim("A raw edit inside the encoder (before the final RMSNorm) moves the score far less than "
                   "the same edit after it",
                   source="000: layer 11 slope 9.36 vs layer 12 slope 17.73; the encoder's RMSNorm "
                          "suppresses edits made inside the encoder")
def test_rmsnorm_suppresses_edits_inside_the_encoder(sweeps, strongest_random, test500, test200, directions,
                                                     thresholds, claim_seed, claims_settings):
    d = directions[12]["direction"].vector
    inside = sweeps(("norm", "inside"), rows=test500, site=INSIDE, direction=d, alphas=LOCAL)
    after = sweeps(("norm", "after"), rows=test500, site=AFTER, direction=d, alphas=LOCAL)
    slope_inside = inside.slope(near=NEAR, seed=claim_seed, n_resamples=claims_settings.resamples).with_context(
        statistic="slope before the final norm")
    slope_after = after.slope(near=NEAR, seed=claim_seed, n_resamples=claims_settings.resamples).with_context(
        statistic="slope after the final norm")
    control = strongest_random(("norm", "after"), rows=test200, site=AFTER, like=directions[12]["direction"],
                               seed=claim_seed, n_resamples=claims_settings.resamples)
    expect(slope_after).positive().at_least(thresholds.min_slope).exceeds(control, factor=thresholds.control_factor)
    expect(slope_inside).ratio_to(slope_after).below(thresholds.max_norm_ratio)


@pytest.mark.claim("Mechanism: per unit alpha, an edit before the final RMSNorm changes its output by about "
                   "the direction scaled by the norm's gain and divided by the residual's RMS",
                   source="000: RMSNorm diagnosis")
def test_the_norm_divides_an_inside_edit_by_the_residual_rms(tacgen, test200, directions, claim_seed,
                                                            claims_settings):
    d = directions[12]["direction"].vector
    ratios = _response_ratios(tacgen, [r.state for r in test200], d)
    est = stats.bootstrap_mean(ratios, seed=claim_seed, n_resamples=claims_settings.resamples).with_context(
        statistic="|measured change| / |gain * d / rms(residual)|", site=INSIDE, fingerprint=tacgen.fingerprint)
    expect(est).within(0.8, 1.2)


@pytest.mark.claim("RMS-scaled injection inside the encoder (alpha x the residual's RMS at each position) "
                   "moves the score with a positive slope, well above norm-matched random directions",
                   source="000: in-encoder RMS-scaled slope (test200, alpha +-0.25): global ~0.83, goal ~0.37, "
                          "context ~0.45")
@pytest.mark.parametrize("span", ["global", "goal", "context"])
def test_rms_scaled_injection_inside_the_encoder_moves_the_score(sweeps, spans_of, strongest_random, test200,
                                                                  directions, thresholds, claim_seed, claims_settings,
                                                                  span):
    d = directions[11]["direction"].rms_normalised()
    positions = None if span == "global" else spans_of(test200, span)
    curve = sweeps(("rms", span), rows=test200, site="encoder.11.resid_post", direction=d.vector, alphas=LOCAL,
                   positions=positions, rms_scaled=True)
    slope = curve.slope(near=NEAR, seed=claim_seed, n_resamples=claims_settings.resamples)
    control = strongest_random(("rms", span), rows=test200, site="encoder.11.resid_post", like=d,
                               positions=positions, rms_scaled=True, seed=claim_seed,
                               n_resamples=claims_settings.resamples)
    expect(slope).ci_excludes(0).positive().at_least(thresholds.min_rms_slope).exceeds(
        control, factor=thresholds.control_factor)


@torch.no_grad()
def _response_ratios(model, states: list[str], d: torch.Tensor, *, eps: float = 1e-3) -> np.ndarray:
    """Per example: mean over real tokens of |change of the final norm's output per unit alpha|
    divided by |gain * d| / rms(residual), the first-order prediction without the radial term."""
    ids, mask = pad_rows(model.tokenize(states, max_length=MAX_LENGTH), pad_id=model.pad_id)
    encoder = model.module.get_encoder()
    inside, after = model.site(INSIDE), model.site(AFTER)
    with intervene(model, {inside: Record(), after: Record()}, masks={"encoder": mask}) as plain:
        encoder(input_ids=ids, attention_mask=mask)
    with intervene(model, {inside: Add(d, alpha=eps), after: Record()}, masks={"encoder": mask}) as edited:
        encoder(input_ids=ids, attention_mask=mask)
    x = plain.recorded[inside].float()
    measured = (edited.recorded[after] - plain.recorded[after]).float() / eps
    norm = model.module.get_encoder().final_layer_norm
    rms = (x.pow(2).mean(-1) + norm.variance_epsilon).sqrt()
    predicted = (norm.weight.float() * d).norm() / rms
    ratio = measured.norm(dim=-1) / predicted
    real = mask.bool()
    return np.array([float(ratio[i][real[i]].mean()) for i in range(len(states))])
