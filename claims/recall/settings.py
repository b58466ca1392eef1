"""The recall study's constants and its per-model threshold table."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

DEFAULT_MODEL = "fixture:recall"   # the model without --claims-model recall=SPEC
SEED = 0                 # the prompts' order and the tracing noise (what data the study measures);
                         # bootstraps follow --claims-seed
NOISE_FACTOR = 3.0       # noise std = 3 x the std of the prompts' token embeddings (ROME)


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
        }),
    # n 100 known facts, 2 noise draws: about 7 minutes each on this 2-core machine (README, "On real models")
    "gguf:smollm2-135m-instruct": Thresholds(
        layers=30, early_layers=tuple(range(8, 16)), late_layers=tuple(range(20, 28)), n_prompts=100, samples=2,
        min_known=0.5, min_total_effect=0.3, min_restored=0.2, control_margin=0.1,
        refuted={
            "test_noise_on_the_lead_moves_little":
                "lead noise lowers P(answer) by 0.19 [0.14, 0.25] of it (100 prompts), past the 0.1 bar; the "
                "subject's noise lowers it by 0.95 [0.92, 0.97], 0.50 [0.44, 0.55] more than the lead's",
        }),
    "gguf:gemma-3-270m": Thresholds(
        layers=18, early_layers=tuple(range(5, 10)), late_layers=tuple(range(12, 17)), n_prompts=100, samples=2,
        min_known=0.5, min_total_effect=0.3, min_restored=0.2, control_margin=0.1,
        refuted={
            "test_noise_on_the_lead_moves_little":
                "lead noise lowers P(answer) by 0.17 [0.13, 0.23] of it (100 prompts), past the 0.1 bar; the "
                "subject's noise lowers it by 0.98 [0.97, 0.98], 0.42 [0.37, 0.47] more than the lead's",
        }),
}
# the untrained twin knows no fact: it is traced on every fact (so its effect claims are measured and
# fail) and held to the trained fixture's bars
THRESHOLDS["fixture:recall-null"] = replace(THRESHOLDS["fixture:recall"], facts="all", refuted={})
