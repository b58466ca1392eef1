"""The recall study: ROME's causal tracing of factual recall (Meng et al. 2022, "Locating and
Editing Factual Associations in GPT", Sec. 2) on facts the model completes.

Noise of 3x the embeddings' std on the subject's tokens (the corrupted run), then one clean state
restored at a time; P(answer) is the metric, every CI is a bootstrap over prompts. The early site
is the last subject token at the row's middle layers, the late site the last token at its upper
layers (`settings.Thresholds.early_layers` / `late_layers`).
"""

from __future__ import annotations

import numpy as np
import pytest

from harness import expect, map_agreement, stats

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
