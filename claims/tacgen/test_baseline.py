"""Findings 1 and 2: the model tells intro from apply, and the class-mean directions separate them."""

from __future__ import annotations

import numpy as np
import pytest

from claims.tacgen.settings import LAYERS, MAX_LENGTH
from harness import expect, logprob_diff, stats


@pytest.mark.claim("The teacher-forced score logP(intro) - logP(apply) classifies test500",
                   source="000: baseline accuracy (test500, max_length=384) = 0.798")
def test_baseline_score_classifies_test500(tacgen, test500, thresholds):
    score = logprob_diff(tacgen, [r.state for r in test500], "intro", "apply", max_length=MAX_LENGTH, batch_size=64)
    correct = (score.numpy() > 0) == np.array([r.label == "intro" for r in test500])
    accuracy = stats.proportion_of(correct).with_context(statistic="accuracy on test500")
    expect(accuracy).at_least(thresholds.min_accuracy)


@pytest.mark.claim("The train-only class-mean direction separates held-out intro from apply states",
                   source="000: class-mean directions at layers 11 and 12 (hidden-state indices)")
@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: f"layer{layer}")
def test_class_mean_direction_separates_held_out_states(tacgen, tacgen_split, directions, held_out_pooled,
                                                        thresholds, layer):
    d = directions[layer]["direction"].vector
    midpoint = float(directions[layer]["pooled"].mean(0) @ d)  # the train states' mean projection
    predicted_intro = (held_out_pooled[layer] @ d - midpoint > 0).numpy()
    correct = predicted_intro == np.array([r.label == "intro" for r in tacgen_split.test])
    est = stats.proportion_of(correct).with_context(statistic="sign accuracy of the projection",
                                                    site=f"encoder.{layer}.resid_post", fingerprint=tacgen.fingerprint)
    expect(est).at_least(thresholds.min_separation)
