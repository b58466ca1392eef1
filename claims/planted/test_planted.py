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

from harness import expect, random_direction

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


CONTROLS = pytest.mark.parametrize("control", ["null", "random0", "random1", "random2"])


@pytest.mark.claim("Norm-matched random directions leave logit(A) - logit(B) near zero",
                   source="control: random direction with the planted direction's norm")
@pytest.mark.parametrize("control", ["random0", "random1", "random2"])
def test_random_directions_stay_near_zero(control_curve, thresholds, claim_seed, claims_settings, control):
    slope = control_curve(control).slope(near=0.25, seed=claim_seed, n_resamples=claims_settings.resamples)
    expect(slope).within(-thresholds.control_margin, thresholds.control_margin)


@pytest.mark.claim("The planted direction's slope is many times any slope a control's CI allows",
                   source="planted recipe vs null and norm-matched random directions")
@CONTROLS
def test_planted_slope_exceeds_every_control(curves, control_curve, thresholds, claim_seed, claims_settings,
                                             control):
    planted = curves("blocks.4.block_out", "planted").slope(near=0.25, seed=claim_seed,
                                                            n_resamples=claims_settings.resamples)
    slope = control_curve(control).slope(near=0.25, seed=claim_seed, n_resamples=claims_settings.resamples)
    expect(planted).exceeds(slope, factor=thresholds.min_factor)


@pytest.fixture(scope="module")
def control_curve(curves, planted_directions):
    """The sweep of a control direction at the final residual: `null` or `random<seed>`."""

    def get(control: str):
        if control == "null":
            return curves("blocks.4.block_out", "null")
        seed = int(control.removeprefix("random"))
        vector = random_direction(planted_directions["planted"], seed=seed).vector
        return curves("blocks.4.block_out", control, vector)

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
            edited = hidden + alpha * direction
            return (edited,) + tuple(output[1:]) if isinstance(output, tuple) else edited

        handle = block.register_forward_hook(add)
        try:
            logits = model.module(input_ids=ids).logits[0, -1]
        finally:
            handle.remove()
        (grad,) = torch.autograd.grad(logits[a_id] - logits[b_id], alpha)
        out.append(float(grad))
    return np.asarray(out)
