"""The recall study's constants and its per-model threshold table."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

DEFAULT_MODEL = "fixture:recall"   # the model without --claims-model recall=SPEC
SEED = 0                 # the prompts' order and the tracing noise (what data the study measures);
                         # bootstraps follow --claims-seed
NOISE_FACTOR = 3.0       # noise std = 3 x the std of the prompts' token embeddings (ROME)

ATTRIBUTION_BARS = {"resid": 0.75, "outputs": 0.75}
"""Attribution patching's agreement with activation patching as the literature reports it for GPT-2
small (Nanda 2023; Kramar et al. 2024, AtP*): Pearson r about 0.75 over the residual map, about 0.98
over attention outputs, MLP outputs poor (the layer outputs mix both: the residual's 0.75). The same
bar for Spearman's rho."""
ATTRIBUTION_TOP_K = 3    # a patching budget of three cells, taken in attribution's order, finds the top cell


@dataclass(frozen=True)
class Thresholds:
    """What each claim must show on one model, and how much of it to measure. The run's row
    (`harness.plugin.resolve_row`) is printed in the terminal header."""

    layers: int                      # the model's blocks
    early_layers: tuple[int, ...]    # ROME's early site: the middle layers (harness layers, 1-based)
    late_layers: tuple[int, ...]     # ROME's late site: the upper layers
    n_prompts: int                   # known facts traced (the first n in a seeded order); raise on a GPU
    samples: int                     # noise draws per prompt (ROME: 10)
    min_known: float                 # share of the facts the model must complete (Wilson CI low)
    min_total_effect: float          # noise on the subject lowers P(answer) by at least this share of it
    min_restored: float              # restoring a site recovers at least this share of the total effect
    control_margin: float            # the control's relative drop of P(answer) lies within +- this
    facts: str = "known"             # "known": trace only facts the model completes (ROME); "all": every fact
    # attribution patching against activation patching, per site family (`claims.recall.attribution`):
    # Spearman's rho and Pearson's r of the two mean maps at least this (CI low), and the top cell by
    # patching among the top `attribution_top_k` cells by attribution (CI high)
    min_attribution_agreement: dict[str, float] = field(default_factory=lambda: dict(ATTRIBUTION_BARS))
    attribution_top_k: int = ATTRIBUTION_TOP_K
    # claims measured NOT to hold on this model: test name -> the measured numbers. They still run
    # and report their evidence, as xfail(strict=True).
    refuted: dict[str, str] = field(default_factory=dict)


THRESHOLDS: dict[str, Thresholds] = {
    "fixture:recall": Thresholds(
        layers=6, early_layers=(2, 3), late_layers=(5, 6), n_prompts=200, samples=3, min_known=0.8,
        min_total_effect=0.3, min_restored=0.2, control_margin=0.1,
        refuted={
            "test_mlp_carries_the_early_site_and_attention_the_late_site[late-site]":
                "attn_out - mlp_out restored at the last token over layers 5-6: -0.112 [-0.134, -0.095] (97.5%, "
                "200 prompts): the 6-block fixture moves the subject to the last token by block 2 (restoring "
                "resid_pre there recovers 0.64 of P(answer)) and looks the answer up in the last token's MLPs; "
                "its upper attention carries nothing ROME's late site would need",
            "test_attribution_agrees_with_patching[resid-spearman]":
                "rho 0.89 [0.72, 0.96] (98.75%, 193 pairs): the point value is above the 0.75 bar, the CI reaches "
                "below it (the same pairs' layer outputs: rho 0.94 [0.83, 1.00], held)",
            "test_attribution_agrees_with_patching[resid-pearson]":
                "r 0.62 [0.26, 0.72] (98.75%, 193 pairs): the first-order estimate of P(answer) misjudges the "
                "sizes of the residual cells (the same pairs' layer outputs agree: r 0.96 [0.86, 0.99], held)",
            "test_the_top_cells_by_attribution_contain_the_top_cell_by_patching[resid]":
                "rank 37 [22, 48] (95%, 193 pairs): the top cell by patching (blocks.6.resid_pre at position 17) "
                "is the 37th of 108 by attribution (whose top is blocks.6 at position 13)",
        }),
    # n 100 known facts, 2 noise draws: about 7 minutes each on this 2-core machine (README, "On real models")
    "gguf:smollm2-135m-instruct": Thresholds(
        layers=30, early_layers=tuple(range(8, 16)), late_layers=tuple(range(20, 28)), n_prompts=100, samples=2,
        min_known=0.5, min_total_effect=0.3, min_restored=0.2, control_margin=0.1,
        refuted={
            "test_noise_on_the_lead_moves_little":
                "lead noise lowers P(answer) by 0.19 [0.14, 0.25] of it (100 prompts), past the 0.1 bar; the "
                "subject's noise lowers it by 0.95 [0.92, 0.97], 0.50 [0.44, 0.55] more than the lead's",
            "test_attribution_agrees_with_patching[resid-pearson]":
                "r 0.89 [0.66, 0.94] (98.75%, 89 pairs), CI low under the 0.75 bar (rho 0.89 [0.79, 0.94] held): "
                "the point value is above the literature's 0.75, but over 89 pairs the CI reaches below it",
            "test_attribution_agrees_with_patching[outputs-spearman]":
                "rho 0.76 [0.55, 0.90] (98.75%, 89 pairs): over the 60 attn_out / mlp_out cells (every position "
                "at once) the estimate's order agrees less than its sizes do (r 0.91 [0.75, 0.96], held)",
            "test_the_top_cells_by_attribution_contain_the_top_cell_by_patching[resid]":
                "rank 13 [1, 50] (95%, 89 pairs): the top cell by patching is attribution's 13th of the residual "
                "map's cells; over resamples of the pairs it ranks from 1st to 50th",
        }),
    "gguf:gemma-3-270m": Thresholds(
        layers=18, early_layers=tuple(range(5, 10)), late_layers=tuple(range(12, 17)), n_prompts=100, samples=2,
        min_known=0.5, min_total_effect=0.3, min_restored=0.2, control_margin=0.1,
        refuted={
            "test_noise_on_the_lead_moves_little":
                "lead noise lowers P(answer) by 0.17 [0.13, 0.23] of it (100 prompts), past the 0.1 bar; the "
                "subject's noise lowers it by 0.98 [0.97, 0.98], 0.42 [0.37, 0.47] more than the lead's",
            "test_attribution_agrees_with_patching[resid-pearson]":
                "r 0.43 [0.22, 0.71] (98.75%, 81 pairs), under the 0.75 bar (rho 0.93 [0.82, 0.97] held): "
                "attribution orders the residual cells as patching does but misjudges their sizes",
            "test_the_top_cells_by_attribution_contain_the_top_cell_by_patching[resid]":
                "rank 38 [8, 69] (95%, 81 pairs): the top residual cell by patching is attribution's 38th",
        }),
}
# the untrained twin knows no fact: it is traced on every fact (so its effect claims are measured and
# fail) and held to the trained fixture's bars
THRESHOLDS["fixture:recall-null"] = replace(THRESHOLDS["fixture:recall"], facts="all", refuted={})
