"""The planted study: the framework must find an effect that was put there, and nothing where
nothing was put.

`fixture:planted` reads logit("A") - logit("B") off a planted direction of the final residual
stream; a designed null direction is removed from that read-out. On the null twin
(`--claims-model planted=fixture:planted-null`) the planted claims fail and the null claims hold.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import expect, logit_diff, random_direction, scorer, stats, sweep_directions, symmetric

LAYERS = pytest.mark.parametrize("site", ["blocks.3.resid_post", "blocks.4.block_out"],
                                 ids=["layer3", "layer4"])


@pytest.mark.claim("Adding alpha * planted direction moves logit(A) - logit(B) with a positive slope",
                   source="planted recipe: read-out gain 0.5 on the final residual")
@LAYERS
def test_planted_direction_moves_the_logit_difference(curves, thresholds, claim_seed, claims_settings, site):
    slope = curves(site, "planted").slope(near=0.25, seed=claim_seed, n_resamples=claims_settings.resamples)
    expect(slope).ci_excludes(0).positive().at_least(thresholds.min_slope)


@pytest.mark.claim("The slope near 0 recovers the exact derivative computed by autograd",
                   source="planted recipe: d/d(alpha) of the logit difference at alpha = 0")
def test_slope_near_zero_recovers_the_exact_derivative(planted, planted_directions, prompts, curves,
                                                       claim_seed, claims_settings):
    truth = float(np.mean(_exact_slopes(planted, prompts, planted_directions["planted"].vector)))
    slope = curves("blocks.4.block_out", "planted").slope(near=0.05, seed=claim_seed,
                                                          n_resamples=claims_settings.resamples)
    expect(slope).ci_contains(truth)


@pytest.mark.claim("Steering along the designed null direction leaves logit(A) - logit(B) unchanged",
                   source="planted recipe: null direction removed from the read-out")
def test_null_direction_stays_near_zero(curves, thresholds, claim_seed, claims_settings):
    slope = curves("blocks.4.block_out", "null").slope(near=0.25, seed=claim_seed,
                                                       n_resamples=claims_settings.resamples)
    expect(slope).within(-thresholds.null_margin, thresholds.null_margin)


# The norm-matched random control is RANDOM_DRAWS directions, draw i from
# random_direction(planted, seed=CONTROL_SEED + i), swept in one pass on a 3-point grid (the slope over
# |alpha| <= 0.25 from its ends and 0) and judged by the strongest: a control that is one draw lets the
# verdict hang on that draw (on the shipped fixture seeds 0-7 give 0.28, 0.29, 0.67, 1.17, 0.52, -0.40,
# 1.23, -1.11).
CONTROL_SEED = 0
RANDOM_DRAWS = 5
CONTROL_ALPHAS = symmetric(0.25, steps=3)


@pytest.mark.claim("Norm-matched random directions (the strongest of 5 draws) leave logit(A) - logit(B) near zero",
                   source="control: random directions with the planted direction's norm")
def test_random_directions_stay_near_zero(random_control, thresholds, claim_seed, claims_settings):
    expect(random_control(seed=claim_seed, n_resamples=claims_settings.resamples)).within(
        -thresholds.control_margin, thresholds.control_margin)


@pytest.mark.claim("The planted direction's slope is many times any slope a control's CI allows (the designed "
                   "null direction; the strongest of 5 norm-matched random directions)",
                   source="planted recipe vs null and norm-matched random directions")
@pytest.mark.parametrize("control", ["null", "random"])
def test_planted_slope_exceeds_every_control(curves, random_control, thresholds, claim_seed, claims_settings,
                                             control):
    planted = curves("blocks.4.block_out", "planted").slope(near=0.25, seed=claim_seed,
                                                            n_resamples=claims_settings.resamples)
    if control == "null":
        slope = curves("blocks.4.block_out", "null").slope(near=0.25, seed=claim_seed,
                                                           n_resamples=claims_settings.resamples)
    else:
        slope = random_control(seed=claim_seed, n_resamples=claims_settings.resamples)
    expect(planted).exceeds(slope, factor=thresholds.min_factor)


@pytest.fixture(scope="module")
def random_control(planted, planted_directions, prompts):
    """``random_control(seed=, n_resamples=)``: the slopes of the RANDOM_DRAWS norm-matched random
    directions at the final residual (swept once), judged by the strongest (`stats.strongest_of`)."""
    draws = [random_direction(planted_directions["planted"], seed=CONTROL_SEED + i).vector
             for i in range(RANDOM_DRAWS)]
    found = sweep_directions(planted, prompts, at="blocks.4.block_out", directions=draws, alphas=CONTROL_ALPHAS,
                             score=scorer(logit_diff, "A", "B"))

    def get(*, seed: int, n_resamples: int):
        return stats.strongest_of([c.slope(near=0.25, seed=seed, n_resamples=n_resamples) for c in found],
                                  what=f"norm-matched random directions, seeds {CONTROL_SEED}-"
                                       f"{CONTROL_SEED + RANDOM_DRAWS - 1}")

    return get


def _exact_slopes(model, prompts, direction: torch.Tensor) -> np.ndarray:
    """d/d(alpha) of logit(A) - logit(B) at alpha = 0, one example at a time, by autograd.

    Written against plain torch (a hook on the last block), independent of the harness's
    sites, interventions and sweeps, so it is an oracle for them.
    """
    block = model.module.transformer.h[-1]
    a_id, b_id = (model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in ("A", "B"))
    out = []
    for text in prompts:
        ids = torch.tensor([model.tokenizer(text)["input_ids"]])
        alpha = torch.zeros((), requires_grad=True)

        def add(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            edited = hidden + (alpha * direction).to(hidden.dtype)   # the model's dtype (bfloat16 with --claims-model-options)
            return (edited,) + tuple(output[1:]) if isinstance(output, tuple) else edited

        handle = block.register_forward_hook(add)
        try:
            logits = model.module(input_ids=ids).logits[0, -1]
        finally:
            handle.remove()
        (grad,) = torch.autograd.grad(logits[a_id] - logits[b_id], alpha)
        out.append(float(grad))
    return np.asarray(out)
