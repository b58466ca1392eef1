"""The code-generation study can fail, and it runs on the real setting's path.

* On the null twin (`fixture:codegen-null`, the same Gemma-2 topology untrained) the baseline
  solves no held-out problem, so the baseline claims are measured and fail, and no feature can be
  selected: every claim built on the chosen features (separation, the rule, steering, divergence)
  ends in an error that says so, never in a pass.
* The real setting (``--claims-model codegen=<a Gemma-2 folder> --claims-sae codegen=<SAE folder>
  --claims-data codegen=mbpp.jsonl``) on a random-weight Gemma-2 of 13 blocks saved locally, whose
  config names ``google/gemma-2-2b`` (so the run takes that threshold row: 3 shots, 500 new
  tokens, the source's grid as given), with an SAE in sae-lens' format at Gemma Scope's
  ``blocks.12.hook_resid_post``, on real MBPP problems in MBPP's standard splits: the model,
  SAE and data load, the 3-shot prompts are built and decoded, the code is executed, and the
  run says that no feature can be selected because the baseline solved nothing. No download.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests._support.recipes import by_kind, load_recipe, run_study_on

from harness.models.fixtures import resolve
from harness.models.load import fingerprint, load_model
from tests._support.paths import ROOT

BASELINE = ("test_baseline_pass_rate_per_complexity_stratum",)
DEPENDENT = ("test_the_chosen_feature_separates_held_out_problems", "test_the_chosen_feature_beats_random_features",
             "test_the_rule_selects_the_stated_coefficient", "test_steering_flips_more_than_the_control",
             "test_similarity_falls_with_the_coefficient", "test_similarity_stays_high_at_the_low_end",
             "test_the_extreme_end_corrupts_the_code")
MBPP = ROOT.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"

pytestmark = pytest.mark.slow


def _check_no_feature_selected(claims: dict) -> None:
    baseline = by_kind(claims, BASELINE)
    assert len(baseline) == 6
    assert {k: v["outcome"] for k, v in baseline.items() if v["outcome"] != "failed"} == {}
    # measured, then judged (a stratum that a small problem set leaves empty fails saying so)
    assert all(v["evidence"] or "no test problem falls in stratum" in v["message"] for v in baseline.values())
    assert baseline["test_baseline_pass_rate_per_complexity_stratum[all]"]["evidence"]
    dependent = by_kind(claims, DEPENDENT)
    assert len(dependent) == 2 + 2 + 2 + 4 + 4 + 2 + 4
    assert {k: v["outcome"] for k, v in dependent.items() if v["outcome"] != "error"} == {}
    assert all("no feature can be selected" in v["message"] for v in dependent.values())


def test_effect_claims_fail_on_the_untrained_twin(tmp_path):
    claims = run_study_on("codegen", "fixture:codegen-null", BASELINE + DEPENDENT, tmp_path, returncodes=(1,))
    _check_no_feature_selected(claims)
    # the twin the child built (same cache): the trained fixture's topology, its seeded initialisation, untrained
    null, trained = load_model("fixture:codegen-null"), load_model("fixture:codegen")
    assert null.fingerprint != trained.fingerprint
    assert null.module.config.to_dict() | {"_name_or_path": ""} == trained.module.config.to_dict() | {"_name_or_path": ""}
    assert fingerprint(load_recipe("codegen").new_model(0)) == null.fingerprint
    assert null.tokenize(["def f(x):"]) == trained.tokenize(["def f(x):"])
    log = json.loads((resolve("codegen-null") / "train_log.json").read_text())
    assert log["trained"] is False and "heldout" not in log   # its baseline (above) solves nothing


def _random_gemma(folder: Path) -> None:
    """A random-weight Gemma-2 of 13 blocks (width 32) with a byte tokenizer, named google/gemma-2-2b."""
    import transformers as tf

    config = tf.Gemma2Config(vocab_size=384, hidden_size=32, intermediate_size=64, num_hidden_layers=13,
                             num_attention_heads=2, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16,
                             max_position_embeddings=4096, sliding_window=4096, attn_logit_softcapping=50.0,
                             final_logit_softcapping=30.0, hidden_activation="gelu_pytorch_tanh",
                             pad_token_id=0, bos_token_id=2, eos_token_id=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = tf.Gemma2ForCausalLM(config).eval()
    module.save_pretrained(folder)
    tf.ByT5Tokenizer().save_pretrained(folder)
    path = folder / "config.json"
    saved = json.loads(path.read_text())
    saved["_name_or_path"] = "google/gemma-2-2b"
    path.write_text(json.dumps(saved, indent=1))


def _sae(folder: Path) -> None:
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    meta = SAEMetadata(model_name="gemma-2-2b", hook_name="blocks.12.hook_resid_post")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=32, d_sae=64, metadata=meta))
        with torch.no_grad():
            sae.W_enc.normal_(0.0, 0.3)
            sae.W_dec.normal_(0.0, 0.3)
            sae.threshold.fill_(0.01)
    sae.save_model(str(folder))


def _mbpp_subset(path: Path) -> None:
    """The three shots (tasks 2-4) and 10 problems of each standard split (train, validation, test)."""
    rows = [json.loads(line) for line in MBPP.read_text().splitlines() if line.strip()]
    by_id = {r["task_id"]: r for r in rows}
    keep = [2, 3, 4, *range(11, 21), *range(511, 521), *range(601, 611)]
    path.write_text("".join(json.dumps(by_id[i]) + "\n" for i in keep))


@pytest.mark.skipif(not MBPP.is_file(), reason=f"MBPP not found at {MBPP} (../shared/data is absent)")
def test_the_real_setting_runs_from_local_folders(tmp_path):
    _random_gemma(tmp_path / "gemma")
    _sae(tmp_path / "sae")
    _mbpp_subset(tmp_path / "mbpp.jsonl")
    claims = run_study_on("codegen", str(tmp_path / "gemma"), BASELINE + DEPENDENT, tmp_path / "report",
                          returncodes=(1,), extra=["--claims-sae", f"codegen={tmp_path / 'sae'}",
                                                   "--claims-data", f"codegen={tmp_path / 'mbpp.jsonl'}"])
    _check_no_feature_selected(claims)
    # judged by the google/gemma-2-2b row (its pass-rate band), found from the folder's config
    assert "within [0.05, 0.95]" in claims["test_baseline_pass_rate_per_complexity_stratum[all]"]["message"]
