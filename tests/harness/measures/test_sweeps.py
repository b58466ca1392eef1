"""Sweeps: a sweep's rows equal one-example, one-alpha runs; Curve reads them back; input errors."""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest
import torch

from harness import stats
from harness.measures.directions import Direction, random_direction
from harness.errors import DataError, ShapeError, SiteError
from harness.stats.estimate import Estimate
from harness.interventions import Add, Positions, RmsAdd
from harness.models.loaded import LoadedModel
from harness.measures.scores import logit_diff, logprob_diff
from harness.measures.sweeps import Curve, Scorer, scorer, sweep, symmetric
from tests._support.tiny import ARCHITECTURES, tiny_model

TEXTS = ["the quick brown fox", "hi", "abcdefg"]  # 20, 3 and 8 tokens with </s>
SPANS = [[(0, 3)], [(1, 3)], [(0, 1), (4, 6)]]
ALPHAS = symmetric(1.0, steps=5)
BATCH_SIZES = (1, 2, 7, 15, 64)  # 2 and 7 split an example's 5 alphas across chunks
ATOL = 1e-4


def site_of(arch: str) -> str:
    if arch == "byt5-small":
        return "encoder.6.resid_post"
    return f"blocks.{tiny_model(arch).sites.stacks[0].n_layers // 2}.resid_post"


def score_of(arch: str) -> Scorer:
    """logprob_diff on the encoder-decoder (an encoder site), logit_diff on the decoder-only models."""
    if arch == "byt5-small":
        return scorer(logprob_diff, "ok", "no")
    return scorer(logit_diff, "e", "t")


def direction_of(m: LoadedModel, site: str) -> torch.Tensor:
    v = torch.randn(m.width(m.site(site)), generator=torch.Generator().manual_seed(3))
    return v / v.pow(2).mean().sqrt()  # unit RMS, so RmsAdd's alpha is a fraction of the residual


# variant -> (sweep keyword arguments, the one-example intervention for example i at alpha a)
VARIANTS = {
    "add": ({}, lambda d, i, a: Add(d, alpha=a)),
    "rms_add": ({"rms_scaled": True}, lambda d, i, a: RmsAdd(d, alpha=a)),
    "add_at_spans": ({"positions": Positions.of_spans(SPANS)},
                     lambda d, i, a: Add(d, alpha=a, positions=Positions.of_spans([SPANS[i]]))),
}


@functools.cache
def one_at_a_time(arch: str, variant: str, score_name: str | None = None) -> np.ndarray:
    """``[n, k]``: each example alone, each alpha alone, the alpha a plain float."""
    m = tiny_model(arch)
    site = site_of(arch)
    d = direction_of(m, site)
    score = score_of(arch) if score_name is None else SCORERS[score_name]
    make = VARIANTS[variant][1]
    return np.array([[float(score(m, [text], interventions={site: make(d, i, float(a))})[0]) for a in ALPHAS]
                     for i, text in enumerate(TEXTS)])


SCORERS = {"logprob_diff": scorer(logprob_diff, "ok", "no"), "logit_diff": scorer(logit_diff, "e", "t")}

archs = pytest.mark.parametrize("arch", ARCHITECTURES)


# --------------------------------------------------------------------------- symmetric


def test_symmetric_is_an_odd_evenly_spaced_grid_through_zero():
    grid = symmetric(0.25, steps=11)
    assert grid.shape == (11,)
    assert grid[0] == -0.25 and grid[-1] == 0.25 and grid[5] == 0.0
    assert np.allclose(np.diff(grid), 0.05)
    assert np.allclose(grid, -grid[::-1])


@pytest.mark.parametrize("steps", [4, 10, 1, 2, 0, -3])
def test_symmetric_with_an_even_or_too_small_number_of_steps_is_an_error(steps):
    with pytest.raises(DataError, match=rf"`steps` must be an odd integer >= 3 so the grid contains 0, got {steps}"):
        symmetric(0.25, steps=steps)


@pytest.mark.parametrize("limit", [0, -0.5, float("nan")])
def test_symmetric_with_a_limit_that_is_not_positive_is_an_error(limit):
    with pytest.raises(DataError, match=rf"`limit` must be positive, got {limit}"):
        symmetric(limit, steps=5)


# --------------------------------------------------------------------------- sweep == one example, one alpha


@archs
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_sweep_row_equals_its_one_example_one_alpha_run_for_any_batch_size(arch, variant):
    m = tiny_model(arch)
    site = site_of(arch)
    expected = one_at_a_time(arch, variant)
    assert np.ptp(expected, axis=1).min() > 10 * ATOL, "the direction must move every example's score"
    for batch_size in BATCH_SIZES:
        curve = sweep(m, TEXTS, at=site, direction=direction_of(m, site), alphas=ALPHAS, score=score_of(arch),
                      batch_size=batch_size, **VARIANTS[variant][0])
        assert curve.scores.shape == (3, 5) and curve.scores.dtype == np.float64
        np.testing.assert_allclose(curve.scores, expected, atol=ATOL, rtol=0, err_msg=f"batch_size={batch_size}")


@pytest.mark.parametrize("arch", [a for a in ARCHITECTURES if a != "byt5-small"])
def test_a_logprob_diff_sweep_on_a_decoder_only_model_equals_one_example_runs(arch):
    m = tiny_model(arch)
    site = site_of(arch)
    expected = one_at_a_time(arch, "add", "logprob_diff")
    for batch_size in (2, 7):
        curve = sweep(m, TEXTS, at=site, direction=direction_of(m, site), alphas=ALPHAS,
                      score=SCORERS["logprob_diff"], batch_size=batch_size)
        np.testing.assert_allclose(curve.scores, expected, atol=ATOL, rtol=0)


def test_the_zero_column_of_a_sweep_is_the_unedited_score():
    m = tiny_model("byt5-small")
    curve = sweep(m, TEXTS, at="encoder.6.resid_post", direction=direction_of(m, "encoder.6.resid_post"),
                  alphas=ALPHAS, score=score_of("byt5-small"), batch_size=4)
    np.testing.assert_allclose(curve.at(0.0), logprob_diff(m, TEXTS, "ok", "no").numpy(), atol=ATOL, rtol=0)


def test_a_curve_keeps_its_alphas_site_fingerprint_score_name_and_kind():
    m = tiny_model("gpt2")
    site = site_of("gpt2")
    d = direction_of(m, site)
    curve = sweep(m, TEXTS, at=m.site(site), direction=d, alphas=list(ALPHAS), score=score_of("gpt2"))
    assert np.array_equal(curve.alphas, ALPHAS)
    assert (curve.site, curve.fingerprint, curve.n) == (site, m.fingerprint, 3)
    assert curve.score_name == "logit_diff('e', 't')" and curve.kind == "add"
    rms = sweep(m, TEXTS, at=site, direction=d, alphas=ALPHAS, score=score_of("gpt2"), rms_scaled=True)
    assert rms.kind == "rms_add"


def test_a_direction_object_sweeps_like_its_vector():
    m = tiny_model("gpt2")
    site = site_of("gpt2")
    d = Direction(direction_of(m, site), site, "test")
    by_object = sweep(m, TEXTS, at=site, direction=d, alphas=ALPHAS, score=score_of("gpt2"))
    by_vector = sweep(m, TEXTS, at=site, direction=d.vector, alphas=ALPHAS, score=score_of("gpt2"))
    assert np.array_equal(by_object.scores, by_vector.scores)


def test_a_direction_sweeps_at_its_own_site_when_at_is_omitted():
    m = tiny_model("gpt2")
    site = site_of("gpt2")
    d = Direction(direction_of(m, site), site, "test")
    own = sweep(m, TEXTS, direction=d, alphas=ALPHAS, score=score_of("gpt2"))
    assert own.site == site
    assert np.array_equal(own.scores, sweep(m, TEXTS, at=site, direction=d.vector, alphas=ALPHAS,
                                            score=score_of("gpt2")).scores)


def test_a_direction_swept_at_the_site_it_names_in_another_spelling_is_accepted():
    m = tiny_model("gpt2")
    site = site_of("gpt2")
    d = Direction(direction_of(m, site), f" {site} ", "test")
    assert sweep(m, TEXTS, at=m.site(site), direction=d, alphas=ALPHAS, score=score_of("gpt2")).site == site


def test_the_same_seeded_direction_gives_identical_curves_on_two_runs():
    m = tiny_model("qwen2.5-0.5b")
    site = site_of("qwen2.5-0.5b")
    like = Direction(direction_of(m, site), site, "test")

    def run(seed: int) -> Curve:
        return sweep(m, TEXTS, at=site, direction=random_direction(like, seed=seed).vector, alphas=ALPHAS,
                     score=score_of("qwen2.5-0.5b"), batch_size=4)

    first, second = run(11), run(11)
    assert np.array_equal(first.scores, second.scores)
    assert not np.allclose(first.scores, run(12).scores)
    assert first.slope(seed=5, n_resamples=999) == second.slope(seed=5, n_resamples=999)


def test_a_scorer_passes_its_bound_arguments_and_is_named_by_them():
    m = tiny_model("gpt2")
    bound = scorer(logprob_diff, "ok", "no", max_length=4)
    assert bound.name == "logprob_diff('ok', 'no')"
    assert torch.equal(bound(m, TEXTS), logprob_diff(m, TEXTS, "ok", "no", max_length=4))
    assert not torch.equal(bound(m, TEXTS), logprob_diff(m, TEXTS, "ok", "no"))


# --------------------------------------------------------------------------- Curve


def linear_curve(slopes=(1.0, 2.0, 3.0, 2.5), outside: float = 50.0) -> Curve:
    """Scores linear in alpha with per-example `slopes` for |alpha| <= 0.5, and `outside` beyond."""
    alphas = symmetric(1.0, steps=9)
    scores = np.array([[s * a if abs(a) <= 0.5 else outside for a in alphas] for s in slopes])
    return Curve(alphas=alphas, scores=scores, site="blocks.3.resid_post", fingerprint="f" * 64,
                 score_name="logit_diff('A', 'B')")


def test_curve_at_returns_every_examples_score_at_that_alpha():
    curve = linear_curve()
    assert np.array_equal(curve.at(0.5), curve.scores[:, 6])
    assert np.array_equal(curve.at(-1.0), curve.scores[:, 0])
    assert np.array_equal(curve.at(0.25 + 1e-12), curve.scores[:, 5])  # a float that is on the grid


def test_curve_at_an_alpha_off_the_grid_is_an_error():
    with pytest.raises(DataError, match=r"`alpha` 0.3 is not on the grid \[-1.0, -0.75, .*, 1.0\]"):
        linear_curve().at(0.3)


def test_curve_slope_is_slope_near_zero_on_the_same_arrays_with_its_context_filled():
    rng = np.random.default_rng(0)
    curve = linear_curve()
    curve = Curve(curve.alphas, curve.scores + rng.normal(0, 0.1, curve.scores.shape), curve.site,
                  curve.fingerprint, curve.score_name)
    est = curve.slope(near=0.5, seed=7, n_resamples=999)
    ref = stats.slope_near_zero(curve.alphas, curve.scores, near=0.5, seed=7, n_resamples=999)
    assert isinstance(est, Estimate)
    assert (est.value, est.ci_low, est.ci_high, est.n, est.seed) == (ref.value, ref.ci_low, ref.ci_high, ref.n, 7)
    assert est.statistic == "slope vs alpha, |alpha| <= 0.5"
    assert (est.site, est.fingerprint) == ("blocks.3.resid_post", "f" * 64)


def test_curve_slope_near_keeps_only_the_alphas_within_near():
    curve = linear_curve()
    near = curve.slope(near=0.5, seed=0, n_resamples=999)
    assert near.value == pytest.approx(2.125)  # the mean of the examples' slopes 1, 2, 3, 2.5
    assert not near.degenerate
    whole = curve.slope(seed=0, n_resamples=999)
    assert whole.statistic == "slope vs alpha"
    assert abs(whole.value - 2.125) > 1.0  # the constant 50 outside |alpha| <= 0.5 pulls the fit away


# --------------------------------------------------------------------------- errors


def call_sweep(m: LoadedModel | None = None, **changes):
    m = m or tiny_model("gpt2")
    site = site_of("gpt2")
    kwargs = {"at": site, "direction": direction_of(m, site), "alphas": ALPHAS, "score": score_of("gpt2")}
    kwargs.update(changes)
    inputs = kwargs.pop("inputs", TEXTS)
    return sweep(m, inputs, **kwargs)


def test_a_sweep_of_no_inputs_is_an_error():
    with pytest.raises(DataError, match=r"`inputs` is empty; a sweep needs at least one example"):
        call_sweep(inputs=[])


def test_a_sweep_of_a_bare_string_is_an_error():
    with pytest.raises(DataError, match=r"`inputs` must be a list of strings, got a single str; wrap it in a list"):
        call_sweep(inputs="the quick brown fox")


@pytest.mark.parametrize("alphas", [[0.5], [], np.zeros((2, 3))], ids=["one", "none", "2-d"])
def test_alphas_that_are_not_a_1d_grid_of_at_least_two_values_are_an_error(alphas):
    shape = np.asarray(alphas).shape
    with pytest.raises(DataError, match=rf"`alphas` must be a 1-D grid of at least 2 values, got shape "
                                        rf"{re.escape(str(shape))}"):
        call_sweep(alphas=alphas)


@pytest.mark.parametrize("shape", [(47,), (49,), (2, 48)])
def test_a_direction_of_the_wrong_shape_is_an_error_naming_the_site(shape):
    with pytest.raises(ShapeError, match=rf"`direction` must have shape \[48\] for site blocks.6.resid_post, "
                                         rf"got {re.escape(str(shape))}"):
        call_sweep(direction=torch.ones(shape))


def test_a_direction_of_the_wrong_width_for_a_t5_encoder_site_names_that_site():
    with pytest.raises(ShapeError, match=r"`direction` must have shape \[32\] for site encoder.6.resid_post"):
        sweep(tiny_model("byt5-small"), TEXTS, at="encoder.6.resid_post", direction=torch.ones(48),
              alphas=ALPHAS, score=score_of("byt5-small"))


def test_spans_for_a_different_number_of_examples_is_an_error():
    with pytest.raises(ShapeError, match=r"`positions` has spans for 2 examples but `inputs` has 3"):
        call_sweep(positions=Positions.of_spans(SPANS[:2]))


def test_positions_given_as_a_mask_are_an_error():
    mask = Positions.of_mask(torch.ones(3, 20, dtype=torch.bool))
    with pytest.raises(DataError, match=r"`positions` given as a mask cannot be split across sweep rows; "
                                        r"give token spans \(Positions.of_spans\) or Positions.all\(\)/last\(\)"):
        call_sweep(positions=mask)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_a_batch_size_below_one_is_an_error(batch_size):
    with pytest.raises(DataError, match=rf"`batch_size` must be a positive integer, got {batch_size}"):
        call_sweep(batch_size=batch_size)



def test_a_direction_computed_at_another_site_is_an_error_naming_both_sites():
    m = tiny_model("byt5-small")
    d = Direction(torch.ones(32), "encoder.5.resid_post", "class-mean")
    with pytest.raises(DataError, match=re.escape(
            "`direction` was computed at encoder.5.resid_post (class-mean) but `at` is encoder.6.resid_post; "
            "sweep it at encoder.5.resid_post (or omit `at`), or pass `direction.vector` to sweep it at "
            "encoder.6.resid_post on purpose")):
        sweep(m, TEXTS, at="encoder.6.resid_post", direction=d, alphas=ALPHAS, score=score_of("byt5-small"))


def test_a_tensor_direction_without_at_is_an_error():
    with pytest.raises(DataError, match=re.escape(
            "`at` is required when `direction` is a tensor (only a Direction carries its site); "
            "pass at='STACK.LAYER.POINT'")):
        call_sweep(at=None)


def test_a_direction_without_a_site_needs_at():
    m = tiny_model("gpt2")
    d = Direction(direction_of(m, site_of("gpt2")), "", "loaded")
    with pytest.raises(DataError, match=re.escape(
            "`direction` is a Direction (loaded) without a site and `at` is not given; pass at='STACK.LAYER.POINT'")):
        call_sweep(m, at=None, direction=d)
    assert call_sweep(m, direction=d).site == site_of("gpt2")


def test_a_direction_at_a_site_the_model_lacks_is_a_site_error():
    with pytest.raises(SiteError, match=r"`layer` must be in"):
        call_sweep(at=None, direction=Direction(torch.ones(48), "blocks.60.resid_post", "test"))


@pytest.mark.parametrize("value, shown", [([1.0] * 48, "list [1.0, 1.0"), (np.ones(48), "ndarray array(")],
                         ids=["list", "ndarray"])
def test_a_direction_that_is_neither_a_tensor_nor_a_direction_is_an_error(value, shown):
    with pytest.raises(DataError, match=re.escape(
            f"`direction` must be a torch.Tensor [d] or a Direction, got {shown}")):
        call_sweep(direction=value)
