"""Controls that are random draws, summarised over several draws: `strongest_of`.

A control that is one random draw (one random direction, one label shuffle, one random head)
lets a claim's verdict hang on that draw: a shuffled-label probe control gave held-out
accuracies from 0.0 to 0.865 across nine seeds on the same features. Measure the control on k
seeded draws (draw i from seed ``base + i``, stated in the claim) and judge their summary:
`strongest_of` for a control that must stay small or that an effect must beat (its CI
reaches farthest from zero, so "the strongest of k draws stays within the margin" says every
draw does); a mean over draws, per example, for a control whose typical value is the point.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from harness.errors import StatsError
from harness.stats.estimate import Estimate


def _reach(est: Estimate) -> float:
    """How far the estimate's CI reaches from zero (NaN for a NaN bound: never the strongest)."""
    reach = max(abs(est.ci_low), abs(est.ci_high))
    return reach if reach == reach else float("-inf")


def strongest_of(estimates: Sequence[Estimate], *, what: str = "draws") -> Estimate:
    """The estimate of k random draws of a control whose CI reaches farthest from zero.

    Example::

        slopes = [sweep(model, texts, direction=random_direction(d, seed=CONTROL_SEED + i), ...)
                  .slope(near=0.25) for i in range(3)]
        control = stats.strongest_of(slopes)
        control.statistic   # 'slope vs alpha, |alpha| <= 0.25 (the strongest of 3 draws: draw 2, 0.673; ...)'
        expect(control).within(-1.5, 1.5)          # every draw's CI lies in the margin
        expect(real).exceeds(control, factor=5)    # the effect beats every draw

    "Strongest" is the largest ``max(|ci_low|, |ci_high|)`` at the estimates' own level (the
    first of equals), so a bound that the strongest draw meets (``within``, ``at_most``) every
    draw meets, and an effect that exceeds it (``exceeds``, ``greater_than``) exceeds every
    draw. The result is that draw's estimate, its statistic suffixed with k, which draw (0-based,
    in the order given) and every draw's value; `what` names the draws ("random directions").
    A degenerate draw is returned as soon as there is one (so the control cannot pass with a
    draw that measured nothing). ``at_level`` recomputes the chosen draw at another level (the
    choice is made at the estimates' own level).

    Raises `StatsError` for no estimates, a non-Estimate, or estimates at different levels.
    """
    estimates = list(estimates)
    if not estimates:
        raise StatsError("`estimates` is empty; give the control's estimate on each of its k draws")
    for i, est in enumerate(estimates):
        if not isinstance(est, Estimate):
            raise StatsError(f"`estimates[{i}]` must be an Estimate, got {type(est).__name__}; pass each "
                             "draw's estimate (e.g. its curve.slope(...))")
    levels = {est.level for est in estimates}
    if len(levels) > 1:
        raise StatsError(f"the draws' estimates have different levels {sorted(levels)}; build them at one level")
    bad = next((i for i, est in enumerate(estimates) if est.degenerate), None)
    chosen = bad if bad is not None else max(range(len(estimates)), key=lambda i: (_reach(estimates[i]), -i))
    est = estimates[chosen]
    values = ", ".join(f"{e.value:.3g}" for e in estimates)
    base = est.statistic or "estimate"
    label = (f"{base} (the strongest of {len(estimates)} {what}: draw {chosen}; all draws: {values})"
             if len(estimates) > 1 else f"{base} (1 draw)")
    return dataclasses.replace(est, statistic=label)
