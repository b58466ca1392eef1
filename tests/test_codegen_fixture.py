"""The codegen fixture: the shipped Gemma-2 (its layout, tokenizer and save/reload identity), its
held-out pass rate recorded per stratum, the SAE shipped beside it in sae-lens' format, the
the recipe's first steps, which replay the shipped run (the null twin: tests/test_codegen_study.py)."""

from __future__ import annotations

import json

import pytest

from fixtures.codegen import recipe
from recipes import FIXTURES

from harness.models.load import load_model
from harness.saes import load_sae, sae_site

FAMILY = FIXTURES / "codegen"
SHIPPED = FAMILY / "codegen"



@pytest.fixture(scope="module")
def codegen():
    return load_model("fixture:codegen")


@pytest.fixture(scope="module")
def shipped_log():
    return json.loads((SHIPPED / "train_log.json").read_text())


def test_the_fixture_has_gemma_2s_layout(codegen):
    config = codegen.module.config
    assert config.model_type == "gemma2"
    assert config.num_key_value_heads < config.num_attention_heads            # grouped-query attention
    assert config.final_logit_softcapping == 30.0 and config.attn_logit_softcapping == 50.0
    assert config.tie_word_embeddings
    block = codegen.module.model.layers[0]
    for norm in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                 "post_feedforward_layernorm"):
        assert hasattr(block, norm)                                            # pre- and post-norms
    assert {k: config.to_dict()[k] for k in recipe.CONFIG} == recipe.CONFIG


def test_the_tokenizer_round_trips_prompts_and_code(codegen):
    rows = [json.loads(line) for line in (FAMILY / "data" / "test.jsonl").read_text().splitlines()[:50]]
    texts = [recipe.prompt(r) + recipe.target(r) for r in rows]
    for text, ids in zip(texts, codegen.tokenize(texts)):
        assert codegen.tokenizer.decode(ids) == text
        assert recipe.UNK not in ids
    assert codegen.tokenize(["def f(x):"]) == codegen.tokenize(["def f(x):"], add_special_tokens=False)


def test_the_shipped_log_records_a_pass_rate_in_every_stratum(shipped_log):
    held = shipped_log["heldout"]
    assert held["rows"] == 300 and 0.3 <= held["pass_rate"] <= 0.8
    assert set(held["by_stratum"]) == {"0", "1", "2", "3", "4"}
    for stratum in held["by_stratum"].values():
        assert 0.2 <= stratum["pass_rate"] <= 0.85       # solved and failed problems in every stratum


def test_the_sae_is_shipped_in_sae_lens_format_at_its_site(codegen, shipped_log):
    sae = load_sae(SHIPPED / "sae")
    assert sae.cfg.metadata.hook_name == "blocks.2.hook_resid_post"
    assert str(sae_site(codegen, sae)) == recipe.SAE_SITE
    assert sae.cfg.d_sae == recipe.SAE_WIDTH and sae.cfg.d_in == recipe.CONFIG["hidden_size"]
    assert shipped_log["sae"]["explained_variance"] > 0.9 and shipped_log["sae"]["mean_l0"] < 64


REPLAY_STEPS = 50    # one window of the loss curve, inside the warm-up (whose rate does not depend on the step count)


@pytest.mark.slow
def test_the_recipe_replays_the_shipped_runs_first_steps(tmp_path, shipped_log):
    """The recipe rebuilds the shipped model: on the platform that built it, its first
    `REPLAY_STEPS` steps give the shipped run's loss curve bit for bit (a full rebuild is
    ``python fixtures/codegen/recipe.py --build OUT``, about 15 minutes on two threads). Elsewhere
    float reductions may differ in the last bits, so there the curve must match to two decimals."""
    recipe.build(tmp_path, seed=recipe.SEED, train=True, steps=REPLAY_STEPS, evaluate=False, sae=False)
    log = json.loads((tmp_path / "train_log.json").read_text())
    replayed, shipped = log["loss_curve"], shipped_log["loss_curve"][: len(log["loss_curve"])]
    assert len(replayed) == REPLAY_STEPS // 50
    if log["platform"] == shipped_log["platform"]:
        assert replayed == shipped
    else:
        assert replayed == pytest.approx(shipped, abs=0.01)
