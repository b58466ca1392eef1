"""The planted study's per-model threshold table."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL = "fixture:planted"   # the model without --claims-model planted=SPEC


@dataclass(frozen=True)
class Thresholds:
    """What each claim must show on a model; one row per model (`harness.plugin.resolve_row`
    picks the run's, printed in the terminal header)."""

    min_slope: float         # the planted slope's CI lower bound must reach this
    null_margin: float       # the designed null direction's CI must lie inside +-null_margin
    control_margin: float    # norm-matched random directions' CIs must lie inside +-control_margin
    min_factor: float        # the planted slope must exceed min_factor x any control's CI magnitude


# The planted recipe sets the read-out gain so the final-residual slope is about 5.5 per unit
# alpha; the thresholds leave room for a retrained seed but not for a missing plant. The null
# twin is held to the same bars (its effect claims must fail, tests/test_planted_study.py).
THRESHOLDS: dict[str, Thresholds] = {
    "fixture:planted": Thresholds(min_slope=2.5, null_margin=0.25, control_margin=1.5, min_factor=5.0),
}
THRESHOLDS["fixture:planted-null"] = THRESHOLDS["fixture:planted"]
