"""The code-generation steering study's constants and its per-model threshold table."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

DEFAULT_MODEL = "fixture:codegen"   # the model without --claims-model codegen=SPEC
FEATURES = ("correct", "incorrect")  # the correct-preferring and the incorrect-preferring feature
CONTROLS = ("random-direction", "random-feature")
GRID = (1, 3, 10, 30, 100, 300, 1000)   # the source's steering coefficients
FLIP_BAND = (0.2, 0.6)               # the source's selection: a flip rate in this band ...
N_RANDOM_FEATURES = 20               # features drawn at random: the separation claims' control
SEED = 0                             # draws of the random features and directions


@dataclass(frozen=True)
class Thresholds:
    """What each claim must show on one model. The run's row (`harness.plugin.resolve_row`) is
    printed in the terminal header."""

    # the model's prompt and decoding
    shots: int                   # MBPP prompt shots (0: zero-shot, as the fixture was trained)
    max_new_tokens: int          # greedy decoding stops at [DONE] or after this many tokens
    # coefficients: None = the source's grid as given (unit decoder rows on its model);
    # a number N = coefficient c adds a vector of norm c * (mean residual norm at the site) / N,
    # so c = N adds a vector as long as the residual stream (see settings.GRID)
    reference_norm: float | None
    # finding 1: baseline pass rate per complexity stratum, Wilson CI within [low, high]: solved and
    # failed problems both exist in every stratum (the fixture's recipe aims at 0.3-0.8)
    min_pass_rate: float
    max_pass_rate: float
    # finding 2: the SAE and the chosen features
    min_explained_variance: float  # SAE on held-out prompts' tokens
    max_mean_l0: float
    max_dead_fraction: float
    # finding 3: the selection rule (smallest coefficient with flips in FLIP_BAND and syntax errors
    # below `max_syntax_error_rate`), and what it must select on the tuning split
    max_syntax_error_rate: float
    selected: dict[str, int]     # feature -> coefficient; finding 4 runs at these
    # finding 5: divergence from the baseline
    low_coefficient: int         # similarity above `min_low_similarity` here
    min_low_similarity: float
    high_coefficient: int        # similarity below `max_high_similarity` and syntax errors above
    max_high_similarity: float   # `min_high_syntax_error_rate` here
    min_high_syntax_error_rate: float
    # how many problems of each split (selection, tuning, test) are measured: the first n in
    # task-id order (the split's order; no draw), None = all of them. At least 10
    n_problems: int | None = None
    # claims measured NOT to hold on this model: test name (``test_x`` or ``test_x[id]``) -> why.
    # They still run and report their evidence, as xfail(strict=True): one that starts to hold
    # fails the run, so the table must follow the model.
    refuted: dict[str, str] = field(default_factory=dict)


_SOURCE_BANDS = dict(min_low_similarity=0.8, max_high_similarity=0.5, low_coefficient=1, high_coefficient=1000)

THRESHOLDS: dict[str, Thresholds] = {
    "fixture:codegen": Thresholds(
        shots=0, max_new_tokens=400, reference_norm=100.0, min_pass_rate=0.1, max_pass_rate=0.9,
        min_explained_variance=0.7, max_mean_l0=64.0, max_dead_fraction=0.5,
        max_syntax_error_rate=0.1, selected={"correct": 30, "incorrect": 30},
        min_high_syntax_error_rate=0.2, **_SOURCE_BANDS,
        refuted={
            "test_the_chosen_feature_separates_held_out_problems[incorrect]":
                "feature 34 (selection AUROC 0.361 for solved problems) separates failed held-out problems at AUROC "
                "0.573 [0.498, 0.645] (97.5%, 300 problems): the best of 512 features on 300 problems is partly "
                "the winner's curse",
            "test_the_chosen_feature_beats_random_features[correct]":
                "feature 165 (held-out AUROC 0.595) beats the mean of 20 random features by 0.058 [-0.005, 0.120] "
                "(97.5%)",
            "test_the_chosen_feature_beats_random_features[incorrect]":
                "feature 34 beats the mean of 20 random features by 0.036 [-0.035, 0.104] (97.5%)",
            "test_the_rule_selects_the_stated_coefficient[correct]":
                "no coefficient qualifies for feature 165 on the tuning split: flips 0.13 at 30 (syntax errors "
                "0.03), then 0.50 at 100 with syntax errors 0.81; the grid jumps over the band. Finding 4 runs at 30",
            "test_steering_flips_more_than_the_control[correct-coef30-vs-random-direction]":
                "feature 165 at 30 fixes 14 of 144 failing problems, 5 random directions (each on a fifth of the "
                "problems) 16: difference -0.014 [-0.097, 0.076] (98.75%); it breaks 17 passing ones (the random "
                "directions 24). One random direction fixed 13",
            "test_steering_flips_more_than_the_control[correct-coef30-vs-random-feature]":
                "feature 165 at 30 fixes 14 of 144 failing problems, 5 random features (each on a fifth of the "
                "problems) 12: difference 0.014 [-0.063, 0.090] (98.75%). One random feature fixed 6 (0.056 "
                "[-0.014, 0.132])",
            "test_the_extreme_end_corrupts_the_code[incorrect-syntax-errors]":
                "at 1000 the incorrect-preferring feature makes the model write only spaces: no code at all, so 0 "
                "of 60 generations is a syntax error (0 [0, 0.094], 98.75%); all 60 fail, and similarity to the "
                "baseline is 0.078",
        }),
    # Gemma-2 2B with Gemma Scope's layer-12 residual SAE (16k, canonical): the source's setting,
    # its grid as given, its 3-shot prompt and its 500 new tokens; bars from the source's regimes
    "google/gemma-2-2b": Thresholds(
        shots=3, max_new_tokens=500, reference_norm=None, min_pass_rate=0.05, max_pass_rate=0.95,
        min_explained_variance=0.6, max_mean_l0=200.0, max_dead_fraction=0.5,
        max_syntax_error_rate=0.1, selected={"correct": 30, "incorrect": 30},
        min_high_syntax_error_rate=0.2, **_SOURCE_BANDS),
}
# the two small real models, in the source's setting as far as it applies: its 3-shot prompt, the
# google/gemma-2-2b row's bars, 256 new tokens (their greedy code ends well before), the first 60
# problems of each split. Neither ships an SAE, so only the baseline is measured without
# --claims-sae codegen=...; with one, the grid is the source's as given (reference_norm None)
_BASELINE = "test_baseline_pass_rate_per_complexity_stratum"
THRESHOLDS["gguf:smollm2-135m-instruct"] = replace(
    THRESHOLDS["google/gemma-2-2b"], max_new_tokens=256, n_problems=60,
    refuted={
        f"{_BASELINE}[all]":
            "the greedy baseline passes 4 of the first 60 test problems: 0.067 [0.026, 0.159] (95%, Wilson); "
            "the CI reaches below the 0.05 bar",
        f"{_BASELINE}[cc2]": "0 of the 16 problems of complexity 2 pass: 0 [0, 0.194] (95%, Wilson)",
        f"{_BASELINE}[cc3]": "0 of the 8 problems of complexity 3 pass: 0 [0, 0.324] (95%, Wilson)",
        f"{_BASELINE}[cc4-5]": "1 of the 15 problems of complexity 4-5 passes: 0.067 [0.012, 0.298] (95%, Wilson)",
        f"{_BASELINE}[cc6+]": "0 of the 5 problems of complexity 6 or more pass: 0 [0, 0.434] (95%, Wilson)",
    })
THRESHOLDS["gguf:gemma-3-270m"] = replace(
    THRESHOLDS["google/gemma-2-2b"], max_new_tokens=256, n_problems=60,
    refuted={
        f"{_BASELINE}[all]":
            "the greedy baseline passes 2 of the first 60 test problems (tasks 25 and 66): 0.033 [0.009, 0.114] "
            "(95%, Wilson); the CI reaches below the 0.05 bar",
        f"{_BASELINE}[cc1]": "0 of the 16 problems of complexity 1 pass: 0 [0, 0.194] (95%, Wilson)",
        f"{_BASELINE}[cc2]": "0 of the 16 problems of complexity 2 pass: 0 [0, 0.194] (95%, Wilson)",
        f"{_BASELINE}[cc4-5]": "0 of the 15 problems of complexity 4-5 pass: 0 [0, 0.204] (95%, Wilson)",
        f"{_BASELINE}[cc6+]": "0 of the 5 problems of complexity 6 or more pass: 0 [0, 0.434] (95%, Wilson)",
    })
# the untrained twin is held to the trained model's bars (and refutes nothing in advance)
THRESHOLDS["fixture:codegen-null"] = replace(THRESHOLDS["fixture:codegen"], refuted={}, n_problems=60)
# ... on the first 60 problems of each split: it never writes the stop marker, so each of its
# generations runs the full 400 tokens, and 60 problems show it solves none (its build log: 0 of 300)


def thresholds_at_collection(config) -> Thresholds | None:
    """The study's THRESHOLDS row in this session (see `harness.plugin.thresholds_for`), for
    parametrizing at collection, before any model loads; None for a model without a row
    (the plugin then ends the run with the usage error once collection finishes)."""
    import pytest

    from harness.plugin import thresholds_for

    try:
        return thresholds_for(config, "codegen").row
    except pytest.UsageError:
        return None
