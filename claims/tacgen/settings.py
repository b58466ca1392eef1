"""The tactic-generator study's constants and its per-model threshold table."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL = "fixture:tacgen"   # the model without --claims-model tacgen=SPEC
MAX_LENGTH = 384          # inputs truncated to 384 bytes, as in the source study
N_BALANCED = 5000         # the balanced intro/apply set
SPLIT_SEED = 0
NEAR = 0.25               # the slope is fitted over |alpha| <= 0.25
LAYERS = (11, 12)         # hidden-state indices: 11 = after block 11, 12 = after the final RMSNorm


@dataclass(frozen=True)
class Thresholds:
    """What each claim must show on one model. The run's row (`harness.plugin.resolve_row`) is
    printed in the terminal header."""

    min_accuracy: float      # baseline: CI lower bound of test500 accuracy
    min_separation: float    # directions: CI lower bound of held-out sign accuracy of the projection
    min_slope: float         # global steering: CI lower bound of the slope near 0 (layer 11 and 12)
    min_span_slope: float    # token-localized steering: CI lower bound for goal / context / goal_head
    control_margin: float    # controls: CI inside +-control_margin
    control_factor: float    # the real slope exceeds factor x any control's CI magnitude (and the
                             # span / RMS-scaled / post-norm slopes the strongest random direction's there)
    linearity_margin: float  # |goal + context - global| CI inside +-margin x global slope
    max_norm_ratio: float    # RMSNorm: in-encoder slope / post-norm slope, CI upper bound
    min_rms_slope: float     # RMS-scaled in-encoder injection: CI lower bound


THRESHOLDS: dict[str, Thresholds] = {
    # the shipped fixture (and its null twin, on which the effect claims must fail). Measured on
    # the shipped weights (seed 0): accuracy 0.826 [0.790, 0.857]; separation 0.649 / 0.725;
    # slopes 0.66 [0.62, 0.72] (layer 11), 0.80 [0.77, 0.84] (layer 12); spans goal 0.32,
    # context 0.46, goal_head 0.22 [0.195, 0.266]; largest control |CI| 0.28 (random2);
    # inside/after-norm ratio 0.032; RMS-scaled global / goal / context 1.78 / 0.75 / 0.98.
    # Each bound sits at about half to two thirds of the measured effect; the untrained twin
    # fails every effect bound (tests/studies/tacgen/test_tacgen_study.py).
    "fixture:tacgen": Thresholds(min_accuracy=0.75, min_separation=0.58, min_slope=0.5, min_span_slope=0.1,
                                 control_margin=0.35, control_factor=1.5, linearity_margin=0.2,
                                 max_norm_ratio=0.2, min_rms_slope=0.4),
    # the source study's model (000: accuracy 0.798, layer-12 slope 17.73, layer-11 9.36)
    "kaiyuy/leandojo-lean4-tacgen-byt5-small": Thresholds(
        min_accuracy=0.75, min_separation=0.7, min_slope=5.0, min_span_slope=2.0, control_margin=2.0,
        control_factor=3.0, linearity_margin=0.35, max_norm_ratio=0.8, min_rms_slope=0.1),
}
THRESHOLDS["fixture:tacgen-null"] = THRESHOLDS["fixture:tacgen"]
