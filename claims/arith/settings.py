"""The arithmetic study's constants and its per-model threshold table."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

DEFAULT_MODEL = "fixture:arith"   # the model without --claims-model arith=SPEC
PAIR_SEED = 0
N_PAIRS = 600            # clean -> corrupt patching pairs, at most


@dataclass(frozen=True)
class Thresholds:
    """What each claim must show on one model. The run's row (`harness.plugin.resolve_row`) is
    printed in the terminal header."""

    # finding 1: accuracy
    min_flat_accuracy: float     # whole-answer exact match on flat held-out rows: CI lower bound
    min_paren_accuracy: float    # ... on parenthesised held-out rows
    # finding 2: ablation
    head: str                    # the head that ablation on the selection split must pick, "layerL-headH"
    min_impact_gap: float        # ablating it hurts parenthesised more than flat: CI lower bound of the gap (nats)
    # findings 3-4: patching
    top_k: int                   # multi-head patching: the k heads ablation ranks highest, together
    # finding 5: logit lens
    lens_layer: int              # the first block after which the answer's first token is decodable
    max_early_top1: float        # before `lens_layer`: top-1 rate CI upper bound below this
    min_final_top1: float        # after the last block: top-1 rate CI lower bound above this
    # finding 6: probes
    parens_probe_layer: int      # the first layer at which the has-parentheses probe beats its control
    operator_probe_layer: int    # ... the operator probe
    probe_margin: float          # probe accuracy minus shuffled-label control: CI lower bound
    # finding 7: attention
    attention_factor: float      # a head "attends to X" when its attention is this many times uniform
    # claims measured NOT to hold on this model: test name (``test_x`` or ``test_x[id]``) -> why.
    # They still run and report their evidence, as xfail(strict=True): one that starts to hold
    # fails the run, so the table must follow the model.
    refuted: dict[str, str] = field(default_factory=dict)


THRESHOLDS: dict[str, Thresholds] = {
    "fixture:arith": Thresholds(
        min_flat_accuracy=0.7, min_paren_accuracy=0.6, head="layer1-head0", min_impact_gap=0.05, top_k=4,
        lens_layer=2, max_early_top1=0.25, min_final_top1=0.9, parens_probe_layer=1, operator_probe_layer=1,
        probe_margin=0.15, attention_factor=1.5,
        refuted={
            "test_patching_the_head_restores_the_answer_more_than_a_control[layer1-head0-other-head-same-layer]":
                "whole answers restored: layer1-head0 0.075 [0.053, 0.105] vs layer1's lowest-ranked head 0.055 "
                "[0.037, 0.082] (600 pairs, 98.3% CIs of a family of 3): every layer-1 head carries some of the "
                "bracketing (patching_heads.png)",
            "test_patching_the_head_restores_the_answer_more_than_a_control[layer1-head0-wrong-to-wrong]":
                "not shown at the family's 98.3% level: 0.075 [0.053, 0.105] vs 0.022 [0.007, 0.066] from "
                "incorrect sources (uncorrected, 95%, it would pass by a hair: 0.057 vs 0.055); the few "
                "wrong-source pairs leave the control's interval too wide",
            "test_identified_heads_attend_to_the_pattern[to-matching-paren]":
                "no head attends from ')' to its '(' at 1.5x uniform: the best, layer1-head0, gives 1.40 "
                "[1.39, 1.41] (97.5%) on the test split",
        }),
}
# the untrained twin is held to the trained model's bars (and refutes nothing in advance)
THRESHOLDS["fixture:arith-null"] = replace(THRESHOLDS["fixture:arith"], refuted={})


def thresholds_at_collection(config) -> Thresholds | None:
    """The study's THRESHOLDS row in this session (`harness.plugin.thresholds_for`: the row
    ``--claims-thresholds arith=ROW`` names, else the row of the model ``--claims-model arith=SPEC``
    names, default ``fixture:arith``, or of the model its config names), for parametrizing at
    collection, before any model loads; None for a model without a row (the plugin
    then ends the run with the usage error once collection finishes)."""
    import pytest

    from harness.plugin import thresholds_for

    try:
        return thresholds_for(config, "arith").row
    except pytest.UsageError:
        return None
