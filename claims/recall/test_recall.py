"""The recall study: ROME's causal tracing of factual recall (Meng et al. 2022, "Locating and
Editing Factual Associations in GPT", Sec. 2) on facts the model completes.

Noise of 3x the embeddings' std on the subject's tokens (the corrupted run), then one clean state
restored at a time; P(answer) is the metric, every CI is a bootstrap over prompts. The early site
is the last subject token at the row's middle layers, the late site the last token at its upper
layers (`settings.Thresholds.early_layers` / `late_layers`). Last, attribution patching (one
backward pass per batch of pairs) against the activation patching of another subject's prompt,
per site family (`claims.recall.attribution`).
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import expect, map_agreement, patch_effects, stats, top_cell_rank

from claims.recall.attribution import FAMILIES
from claims.recall.prompts import CATEGORIES

SOURCE = "Meng et al. 2022 (ROME), Sec. 2.1-2.2: causal tracing of factual associations"


def _band(effects: dict, layers, category: str) -> np.ndarray:
    """The indirect effect at `category`, averaged over harness `layers` (1-based), ``[n]``."""
    return effects["by_category"][:, [L - 1 for L in layers], CATEGORIES.index(category)].mean(1)


@pytest.mark.claim("The model completes most facts under greedy decoding (the others are excluded and listed in "
                   "recall/facts.jsonl)", source="ROME keeps the facts a model knows (Sec. 2.1)")
def test_the_model_knows_most_facts(knows, thresholds):
    expect(stats.proportion(int(knows.sum()), int(knows.size)).with_context(
        statistic=f"facts whose greedy next token is the answer's first token ({int(knows.sum())} of {knows.size}; "
                  f"{int(knows.size - knows.sum())} excluded)")).at_least(thresholds.min_known)


@pytest.mark.claim("Noise on the subject's tokens lowers P(answer) (ROME's total effect), by a share of it",
                   source=SOURCE)
def test_noise_on_the_subject_lowers_the_answer_probability(effects, thresholds):
    expect(stats.paired_ratio(effects["total"], effects["clean"]).with_context(
        statistic=f"mean(P clean - P noised) / mean(P clean) ({len(effects['total'])} prompts)")
    ).at_least(thresholds.min_total_effect)


@pytest.mark.claim("Restoring the clean residual at the site recovers much of the total effect: the last subject "
                   "token in the middle layers (early site), the last token in the upper layers (late site)",
                   source=SOURCE)
def test_restoring_the_site_recovers_much_of_the_effect(effects, thresholds, site):
    layers, where = ((thresholds.early_layers, "last_subject") if site == "early"
                     else (thresholds.late_layers, "last"))
    expect(stats.paired_ratio(_band(effects, layers, where), effects["total"]).with_context(
        statistic=f"indirect effect / total effect, resid_pre at the {where} token, mean over layers "
                  f"{layers[0]}-{layers[-1]}")).at_least(thresholds.min_restored)


@pytest.mark.claim("In the middle layers the last subject token carries more of the effect than the further "
                   "tokens between the subject and the last token", source=SOURCE + ", Fig. 1e")
def test_the_last_subject_token_beats_the_further_tokens(effects, thresholds):
    a = _band(effects, thresholds.early_layers, "last_subject")
    b = _band(effects, thresholds.early_layers, "further")
    keep = np.isfinite(b)
    expect(stats.paired_difference(a[keep], b[keep]).with_context(
        statistic=f"indirect effect: last subject token - further tokens, layers {thresholds.early_layers[0]}-"
                  f"{thresholds.early_layers[-1]} ({int(keep.sum())} prompts with further tokens)")).positive()


@pytest.mark.claim("MLP outputs carry the early site more than attention outputs; attention outputs carry the "
                   "late site more than MLP outputs (restoring the band's clean outputs at the site's token)",
                   source=SOURCE + ", Fig. 1f-g and Sec. 2.2")
def test_mlp_carries_the_early_site_and_attention_the_late_site(outputs, effects, thresholds, site):
    mlp, attn = outputs["mlp_out", site], outputs["attn_out", site]
    first, second = (mlp, attn) if site == "early" else (attn, mlp)
    layers = thresholds.early_layers if site == "early" else thresholds.late_layers
    names = ("mlp_out", "attn_out") if site == "early" else ("attn_out", "mlp_out")
    expect(stats.paired_difference(first, second).with_context(
        statistic=f"P(answer) restored: {names[0]} - {names[1]} of layers {layers[0]}-{layers[-1]} at the "
                  f"{'last subject' if site == 'early' else 'last'} token ({len(first)} prompts)")).positive()


@pytest.mark.claim("Patching the residual of a prompt with another subject into the last subject token, in the "
                   "middle layers, moves P(answer) toward the clean prompt's", source=SOURCE)
def test_patching_the_last_subject_token_recovers_the_answer(patched, thresholds):
    layers = [L - 1 for L in thresholds.early_layers]
    pm = patched["map"]
    cat = CATEGORIES.index("last_subject")
    values = patched["recovery"][:, layers, cat].mean(1)
    patched_p = values * (pm.clean - pm.corrupt).numpy() + pm.corrupt.numpy()
    expect(stats.paired_ratio(patched_p - pm.corrupt.numpy(), (pm.clean - pm.corrupt).numpy()).with_context(
        statistic=f"(P patched - P other subject) / (P clean - P other subject), last subject token, layers "
                  f"{thresholds.early_layers[0]}-{thresholds.early_layers[-1]} ({pm.n} pairs)")).positive()


@pytest.mark.claim("Patching and tracing agree on where the effect lives: Spearman's rho of their layer x position-"
                   "category mean maps over the same prompts has a CI above 0", source=SOURCE)
def test_patching_and_tracing_agree(patched, effects):
    rows = patched["rows"]
    expect(map_agreement(patched["recovery"], effects["by_category"][rows], name=(
        f"Spearman rho: patching recovery vs tracing indirect effect over layer x category cells "
        f"({len(rows)} prompts)"))).positive()


@pytest.mark.claim("Control: noise on as many tokens of the neutral lead, just before the fact, moves P(answer) "
                   "little", source="control for the subject's noise")
def test_noise_on_the_lead_moves_little(control, effects, thresholds):
    rows = control["rows"]
    clean = effects["clean"][rows]
    expect(stats.paired_ratio(clean - control["noised"], clean).with_context(
        statistic=f"mean(P clean - P lead noised) / mean(P clean) ({len(rows)} prompts)")
    ).within(-thresholds.control_margin, thresholds.control_margin)


@pytest.mark.claim("Noise on the subject lowers P(answer) more than noise on as many lead tokens",
                   source="control for the subject's noise")
def test_subject_noise_exceeds_lead_noise(control, effects):
    rows = control["rows"]
    expect(stats.paired_difference(effects["total"][rows], effects["clean"][rows] - control["noised"]).with_context(
        statistic=f"P drop: subject noise - lead noise ({len(rows)} prompts)")).positive()


ATTRIBUTION = "Nanda 2023, attribution patching; Kramar et al. 2024 (AtP*): on GPT-2 small Pearson r about 0.75 " \
              "(residual), 0.98 (attention outputs), MLP outputs poor"
MAPS = {"resid": ("patched", "resid_attribution"), "outputs": ("output_patch", "output_attribution")}
CASES = [(family, method) for family in FAMILIES for method in ("spearman", "pearson")]


@pytest.fixture
def attribution_maps(request, family) -> tuple:
    """``(measured, estimate)`` `PatchMap`s of `family` over `patched`'s pairs."""
    measured, estimate = (request.getfixturevalue(name) for name in MAPS[family])
    return (measured["map"] if family == "resid" else measured), estimate


def _what(family: str, measured) -> str:
    return f"{FAMILIES[family]}, another subject's prompt patched from the clean one ({measured.n} pairs, P(answer))"


@pytest.mark.claim("Attribution patching agrees with activation patching on this model: the correlation over cells "
                   "of the two mean maps (same pairs, same metric) has a CI at least the row's bar", source=ATTRIBUTION)
@pytest.mark.parametrize(("family", "method"), CASES, ids=[f"{f}-{m}" for f, m in CASES])
def test_attribution_agrees_with_patching(attribution_maps, family, method, thresholds, claim_seed, claims_settings):
    measured, estimate = attribution_maps
    name = "Spearman rho" if method == "spearman" else "Pearson r"
    expect(map_agreement(patch_effects(estimate), patch_effects(measured), method=method, seed=claim_seed,
                         n_resamples=claims_settings.resamples,
                         name=f"{name} between the mean attribution and patching maps: {_what(family, measured)}")
           ).at_least(thresholds.min_attribution_agreement[family])


@pytest.mark.claim("The top-k cells by attribution contain the top cell by patching (k: the row's "
                   "attribution_top_k)", source=ATTRIBUTION)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_top_cells_by_attribution_contain_the_top_cell_by_patching(attribution_maps, family, thresholds,
                                                                        claim_seed, claims_settings):
    measured, estimate = attribution_maps
    expect(top_cell_rank(patch_effects(estimate), patch_effects(measured), seed=claim_seed,
                         n_resamples=claims_settings.resamples,
                         name=f"rank, by attribution, of the top cell by patching: {_what(family, measured)}")
           ).at_most(thresholds.attribution_top_k)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_attribution_and_patching_share_pairs_and_metric(attribution_maps, family):
    """The estimate's clean and corrupt metrics are the patching map's (the same prompts, the same
    metric), within 1e-4 of P(answer), and the maps have one shape."""
    measured, estimate = attribution_maps
    assert estimate.values.shape == measured.values.shape
    np.testing.assert_allclose(estimate.clean.numpy(), measured.clean.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(estimate.corrupt.numpy(), measured.corrupt.numpy(), atol=1e-4, rtol=0)
