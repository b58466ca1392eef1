"""Findings 3 and 4: global steering along the class-mean direction moves the score; controls do not."""

from __future__ import annotations

import numpy as np
import pytest

from claims.tacgen.settings import LAYERS, NEAR
from harness import expect, random_direction, shuffled_label_direction, symmetric, within_class_direction

LOCAL = symmetric(NEAR, steps=5)   # -0.25, -0.125, 0, 0.125, 0.25: every slope is fitted on these
DENSE = np.union1d(symmetric(1.0, steps=9), LOCAL)  # alpha in [-1, 1] for the plots, LOCAL included
CONTROLS = ["random0", "random1", "random2", "shuffled", "within-intro"]


def global_curve(sweeps, test500, directions, layer):
    return sweeps(("global", layer), rows=test500, site=f"encoder.{layer}.resid_post",
                  direction=directions[layer]["direction"].vector, alphas=DENSE)


def control_curve(sweeps, test500, directions, tacgen_split, layer, name):
    d = control_direction(name, directions, tacgen_split, layer)
    return sweeps(("control", layer, name), rows=test500, site=d.site, direction=d.vector, alphas=LOCAL)


def control_direction(name, directions, tacgen_split, layer):
    real = directions[layer]["direction"]
    pooled, labels = directions[layer]["pooled"], [r.label for r in tacgen_split.train]
    keys = directions[layer]["keys"]   # each train row's identity: the shuffles rank rows by (seed, key)
    site = real.site
    if name.startswith("random"):
        return random_direction(real, seed=int(name.removeprefix("random")))
    if name == "shuffled":
        return shuffled_label_direction(pooled, labels, positive="intro", negative="apply", site=site, seed=0,
                                        keys=keys)
    return within_class_direction(pooled, labels, label="intro", site=site, seed=0, keys=keys)


@pytest.mark.claim("Adding alpha x the class-mean direction at every encoder position moves "
                   "logP(intro) - logP(apply) with a positive slope near 0",
                   source="000: slope near 0 (global, alpha +-0.25): layer 11 = 9.36 [8.86, 9.83], "
                          "layer 12 = 17.73 [16.81, 18.59]")
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: f"layer{layer}")
def test_class_mean_steering_moves_the_score(sweeps, test500, directions, thresholds, claim_seed, claims_settings,
                                             layer):
    slope = global_curve(sweeps, test500, directions, layer).slope(near=NEAR, seed=claim_seed,
                                                                   n_resamples=claims_settings.resamples)
    expect(slope).ci_excludes(0).positive().at_least(thresholds.min_slope)


@pytest.mark.claim("Control directions (norm-matched random, shuffled labels, within-class split) "
                   "leave logP(intro) - logP(apply) near zero",
                   source="000: controls stayed near zero across the dense sweep")
@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: f"layer{layer}")
def test_control_directions_stay_near_zero(sweeps, test500, directions, tacgen_split, thresholds, claim_seed,
                                           claims_settings, layer, control):
    slope = control_curve(sweeps, test500, directions, tacgen_split, layer, control).slope(
        near=NEAR, seed=claim_seed, n_resamples=claims_settings.resamples)
    expect(slope).within(-thresholds.control_margin, thresholds.control_margin)


@pytest.mark.claim("The class-mean slope exceeds every control's by a stated factor",
                   source="000: real direction vs random / shuffled / within-class controls")
@pytest.mark.parametrize("control", CONTROLS)
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: f"layer{layer}")
def test_class_mean_slope_exceeds_every_control(sweeps, test500, directions, tacgen_split, thresholds, claim_seed,
                                                claims_settings, layer, control):
    control_slope = control_curve(sweeps, test500, directions, tacgen_split, layer, control).slope(
        near=NEAR, seed=claim_seed, n_resamples=claims_settings.resamples)
    real = global_curve(sweeps, test500, directions, layer).slope(near=NEAR, seed=claim_seed,
                                                                  n_resamples=claims_settings.resamples)
    expect(real).exceeds(control_slope, factor=thresholds.control_factor)
