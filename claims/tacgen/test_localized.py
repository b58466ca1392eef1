"""Finding 5: steering only the goal, the context or the goal's head moves the score; the parts
add up to the global effect near alpha = 0."""

from __future__ import annotations

import pytest

from claims.tacgen.settings import NEAR
from claims.tacgen.test_steering import DENSE
from harness import expect, stats

SPANS = ["goal", "context", "goal_head"]
SITE = "encoder.12.resid_post"


def span_curve(sweeps, spans_of, test500, directions, span):
    return sweeps(("span", span), rows=test500, site=SITE, direction=directions[12]["direction"].vector,
                  alphas=DENSE, positions=spans_of(test500, span))


def global_curve(sweeps, test500, directions):
    return sweeps(("global", 12), rows=test500, site=SITE, direction=directions[12]["direction"].vector, alphas=DENSE)


@pytest.mark.claim("Steering only one token span at layer 12 (goal, context, or the goal's first bytes) "
                   "moves the score with a positive slope, well above norm-matched random directions there",
                   source="000: token-localized layer-12 slopes: goal 7.67, context 10.18, goal_head 7.14")
@pytest.mark.parametrize("span", SPANS)
def test_span_steering_moves_the_score(sweeps, spans_of, strongest_random, test500, directions,
                                       thresholds, claim_seed, claims_settings, span):
    slope = span_curve(sweeps, spans_of, test500, directions, span).slope(
        near=NEAR, seed=claim_seed, n_resamples=claims_settings.resamples)
    control = strongest_random(("span", span), rows=test500, site=SITE, like=directions[12]["direction"],
                               positions=spans_of(test500, span), seed=claim_seed,
                               n_resamples=claims_settings.resamples)
    expect(slope).ci_excludes(0).positive().at_least(thresholds.min_span_slope).exceeds(
        control, factor=thresholds.control_factor)


@pytest.mark.claim("Steering every position moves the score more than steering any one span",
                   source="000: global 17.73 > goal 7.67, context 10.18, goal_head 7.14")
@pytest.mark.parametrize("span", SPANS)
def test_global_steering_exceeds_each_span(sweeps, spans_of, test500, directions, claim_seed, claims_settings,
                                           span):
    part = span_curve(sweeps, spans_of, test500, directions, span)
    whole = global_curve(sweeps, test500, directions)
    difference = stats.paired_difference(whole.example_slopes(near=NEAR), part.example_slopes(near=NEAR),
                                         seed=claim_seed, n_resamples=claims_settings.resamples)
    expect(difference.with_context(statistic=f"slope(global) - slope({span})", site=SITE)).positive()


@pytest.mark.claim("Near alpha = 0 the effect is linear: goal + context slopes add up to the global slope",
                   source="000: goal 7.67 + context 10.18 = 17.85 vs global 17.73")
def test_goal_and_context_add_up_to_global(sweeps, spans_of, test500, directions, thresholds, claim_seed,
                                           claims_settings):
    goal = span_curve(sweeps, spans_of, test500, directions, "goal").example_slopes(near=NEAR)
    context = span_curve(sweeps, spans_of, test500, directions, "context").example_slopes(near=NEAR)
    whole = global_curve(sweeps, test500, directions)
    difference = stats.paired_difference(goal + context, whole.example_slopes(near=NEAR), seed=claim_seed,
                                         n_resamples=claims_settings.resamples)
    margin = thresholds.linearity_margin * float(whole.example_slopes(near=NEAR).mean())
    expect(difference.with_context(statistic="slope(goal) + slope(context) - slope(global)", site=SITE)
           ).within(-margin, margin)
