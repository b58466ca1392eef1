"""The recall study can fail: on its untrained twin the effect claims fail.

Runs ``pytest claims/recall`` in a child process on `fixture:recall` (every claim holds, or is a
strict xfail listed in its row's ``refuted``) and on `fixture:recall-null` (the same Llama,
untrained), whose row traces every fact since it knows none: the known-facts claim and every
effect claim are measured there and fail.
"""

from __future__ import annotations

import pytest

from tests._support.recipes import by_kind, run_study_on

from claims.recall.settings import THRESHOLDS

EFFECTS = ("test_the_model_knows_most_facts", "test_noise_on_the_subject_lowers_the_answer_probability",
           "test_restoring_the_site_recovers_much_of_the_effect", "test_the_last_subject_token_beats_the_further_tokens",
           "test_patching_the_last_subject_token_recovers_the_answer", "test_subject_noise_exceeds_lead_noise")
ALL = EFFECTS + ("test_mlp_carries_the_early_site_and_attention_the_late_site", "test_patching_and_tracing_agree",
                 "test_noise_on_the_lead_moves_little", "test_attribution_agrees_with_patching",
                 "test_the_top_cells_by_attribution_contain_the_top_cell_by_patching")

pytestmark = pytest.mark.slow


def test_every_claim_holds_on_the_fixture_or_is_a_listed_refutation(tmp_path):
    claims = run_study_on("recall", "fixture:recall", ALL, tmp_path, returncodes=(0,))
    assert len(claims) == 11 + 6   # the attribution claims: 2 families x 2 methods, and 2 top-k
    refuted = set(THRESHOLDS["fixture:recall"].refuted)
    assert {k: v["outcome"] for k, v in claims.items() if k not in refuted} == dict.fromkeys(
        set(claims) - refuted, "passed")
    assert {claims[k]["outcome"] for k in refuted} <= {"xfailed"}
    assert (tmp_path / "recall" / "facts.jsonl").is_file() and (tmp_path / "recall" / "maps.json").is_file()


def test_effect_claims_fail_on_the_untrained_twin(tmp_path):
    claims = run_study_on("recall", "fixture:recall-null", EFFECTS, tmp_path, returncodes=(1,))
    effects = by_kind(claims, EFFECTS)
    assert len(effects) == 7
    assert {k: v["outcome"] for k, v in effects.items() if v["outcome"] != "failed"} == {}
    assert all(v["evidence"] for v in effects.values())
