"""The arithmetic study can fail: on the null twin (`fixture:arith-null`, the same topology
untrained) the accuracy and ablation claims are measured and fail, and the patching and
attribution claims cannot be formed at all (an untrained model answers nothing correctly, so
there is no clean run to patch from): they end in an error that says so, never in a pass."""

from __future__ import annotations

import pytest

from tests._support.recipes import by_kind, run_study_on

MEASURED = ("test_the_model_answers_held_out_expressions", "test_ablation_on_the_selection_split_picks_the_stated_head",
            "test_ablating_the_head_hurts_parenthesised_more_than_flat")
PATCHING = ("test_patching_the_head_restores_the_answer_more_than_a_control",
            "test_patching_the_head_recovers_the_logit_difference_more_than_a_control",
            "test_inside_the_parentheses_restores_more_than_outside", "test_inside_the_parentheses_recovers_more_than_outside",
            "test_the_top_heads_together_restore_more")
ATTRIBUTION = ("test_attribution_agrees_with_activation_patching",
               "test_attribution_ranks_the_top_patching_cell_among_its_top_k",
               "test_ablating_the_top_neurons_hurts_more_than_random_neurons",
               "test_patching_the_top_neurons_recovers_more_than_random_neurons",
               "test_the_attribution_circuit_is_faithful",
               "test_the_attribution_circuit_is_more_faithful_than_random_circuits")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def null_claims(tmp_path_factory):
    return run_study_on("arith", "fixture:arith-null", MEASURED + PATCHING + ATTRIBUTION,
                        tmp_path_factory.mktemp("arith-null"), returncodes=(1,))


def test_accuracy_and_ablation_claims_fail_on_the_untrained_twin(null_claims):
    measured = by_kind(null_claims, MEASURED)
    assert len(measured) == 2 + 1 + 2
    assert {k: v["outcome"] for k, v in measured.items() if v["outcome"] != "failed"} == {}
    assert all(v["evidence"] for v in measured.values())  # measured, then judged


def test_patching_claims_cannot_be_formed_on_the_untrained_twin(null_claims):
    patching = by_kind(null_claims, PATCHING)
    assert len(patching) == 3 + 2 + 1 + 1 + 2
    assert {k: v["outcome"] for k, v in patching.items() if v["outcome"] != "error"} == {}
    assert all("no patching pairs" in v["message"] for v in patching.values())


def test_attribution_claims_cannot_be_formed_on_the_untrained_twin(null_claims):
    """Attribution is compared with patching on the same pairs, and picks neurons and heads from
    selection-split pairs: without correctly answered prompts there are none, and every
    attribution claim ends in that error."""
    claims = by_kind(null_claims, ATTRIBUTION)
    assert len(claims) == 10 + 5 + 1 + 1 + 1 + 1
    assert {k: v["outcome"] for k, v in claims.items() if v["outcome"] != "error"} == {}
    assert all("no patching pairs" in v["message"] for v in claims.values())
