"""The planted study's per-model threshold table."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

DEFAULT_MODEL = "fixture:planted"   # the model without --claims-model planted=SPEC


@dataclass(frozen=True)
class Thresholds:
    """What each claim must show on a model; one row per model (`harness.plugin.resolve_row`
    picks the run's, printed in the terminal header)."""

    min_slope: float         # the planted slope's CI lower bound must reach this
    null_margin: float       # the designed null direction's CI must lie inside +-null_margin
    control_margin: float    # norm-matched random directions' CIs must lie inside +-control_margin
    min_factor: float        # the planted slope must exceed min_factor x any control's CI magnitude
    # claims measured NOT to hold on this model: test name (``test_x`` or ``test_x[id]``) -> why.
    # They still run and report their evidence, as xfail(strict=True): one that starts to hold
    # fails the run, so the table must follow the model.
    refuted: dict[str, str] = field(default_factory=dict)


# The planted recipe sets the read-out gain so the final-residual slope is about 5.5 per unit
# alpha; the thresholds leave room for a retrained seed but not for a missing plant. The null
# twin is held to the same bars (its effect claims must fail, tests/studies/planted/test_planted_study.py).
THRESHOLDS: dict[str, Thresholds] = {
    "fixture:planted": Thresholds(
        min_slope=2.5, null_margin=0.25, control_margin=1.5, min_factor=5.0,
        refuted={
            "test_planted_slope_exceeds_every_control[random]":
                "the planted slope 5.54 [5.49, 5.60] (97.5%) is 4.7x, not 5x, the strongest of 5 norm-matched "
                "random directions (seeds 0-4: 0.28, 0.29, 0.67, 1.17, 0.52; draw 3 1.17 [1.15, 1.18]); "
                "random directions of the planted norm move the score by up to a fifth of the plant",
        }),
}
# the null twin is held to the same bars (and refutes nothing in advance)
THRESHOLDS["fixture:planted-null"] = replace(THRESHOLDS["fixture:planted"], refuted={})
