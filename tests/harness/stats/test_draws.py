"""stats.strongest_of: a control measured on k random draws, judged by the draw whose CI reaches
farthest from zero."""

from __future__ import annotations

import numpy as np
import pytest

from harness import Estimate, StatsError, expect, stats


def _draws(*means, n=200, seed=0):
    """Bootstrap means of k normal samples with the given means (one per draw)."""
    rng = np.random.default_rng(seed)
    return [stats.bootstrap_mean(rng.normal(m, 1.0, n), seed=i, n_resamples=999).with_context(statistic="mean")
            for i, m in enumerate(means)]


def test_the_strongest_draw_is_the_one_whose_ci_reaches_farthest_from_zero():
    draws = _draws(0.1, -0.9, 0.4)
    out = stats.strongest_of(draws)
    assert (out.value, out.ci_low, out.ci_high) == (draws[1].value, draws[1].ci_low, draws[1].ci_high)


def test_the_statistic_names_k_the_chosen_draw_and_every_value():
    draws = _draws(0.1, 0.2, 0.9)
    out = stats.strongest_of(draws, what="random directions")
    assert out.statistic.startswith("mean (the strongest of 3 random directions: draw 2; all draws: ")
    assert all(f"{d.value:.3g}" in out.statistic for d in draws)


def test_a_bound_that_the_strongest_meets_every_draw_meets():
    rng = np.random.default_rng(1)
    for _ in range(20):
        draws = _draws(*rng.normal(0, 0.3, 4), n=50, seed=int(rng.integers(1 << 30)))
        out = stats.strongest_of(draws)
        margin = float(rng.uniform(0.1, 1.0))
        inside = [-margin <= d.ci_low and d.ci_high <= margin for d in draws]
        assert (-margin <= out.ci_low and out.ci_high <= margin) == all(inside)


def test_an_effect_that_exceeds_the_strongest_exceeds_every_draw():
    draws = _draws(0.05, -0.3, 0.2)
    effect = _draws(3.0)[0]
    expect(effect).exceeds(stats.strongest_of(draws), factor=5)
    with pytest.raises(AssertionError, match="strongest of 3"):
        expect(_draws(1.2)[0]).exceeds(stats.strongest_of(draws), factor=5)


def test_a_degenerate_draw_is_returned_so_the_control_cannot_pass():
    draws = _draws(0.1, 0.2)
    with pytest.warns(RuntimeWarning, match="degenerate"):
        flat = stats.bootstrap_mean(np.ones(10), seed=0, n_resamples=99)
    out = stats.strongest_of([draws[0], flat, draws[1]])
    assert out.degenerate and "draw 1" in out.statistic
    with pytest.raises(AssertionError):
        expect(out).within(-5, 5)


def test_at_level_recomputes_the_chosen_draw():
    draws = _draws(0.1, 0.5)
    out = stats.strongest_of(draws)
    wide = out.at_level(0.99)
    again = draws[1].at_level(0.99)
    assert (wide.ci_low, wide.ci_high, wide.level) == (again.ci_low, again.ci_high, 0.99)
    assert wide.statistic == out.statistic


def test_one_draw_says_so():
    assert stats.strongest_of(_draws(0.3)).statistic == "mean (1 draw)"


@pytest.mark.parametrize("bad, message", [
    ([], "`estimates` is empty"),
    ([0.3], r"`estimates\[0\]` must be an Estimate, got float"),
])
def test_bad_arguments_are_named(bad, message):
    with pytest.raises(StatsError, match=message):
        stats.strongest_of(bad)


def test_draws_at_different_levels_are_refused():
    a, b = _draws(0.1, 0.2)
    with pytest.raises(StatsError, match="different levels"):
        stats.strongest_of([a, b.at_level(0.99)])


def test_an_estimate_built_by_hand_is_accepted():
    hand = Estimate(value=0.2, ci_low=0.1, ci_high=0.3, level=0.95, n=10, method="by hand", statistic="x")
    assert stats.strongest_of([hand]).ci_high == 0.3
