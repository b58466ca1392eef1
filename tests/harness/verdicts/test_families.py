"""Families of claims: effect claims judged at the Bonferroni level, bounds uncorrected, and the
family fields of report.json (`harness.verdicts.families`, `Estimate.at_level`, the plugin's counting)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import harness.stats.estimate  # noqa: F401  (imported once, so pytester runs do not re-import it)
import harness.verdicts.expect  # noqa: F401
from harness import stats
from harness.errors import StatsError
from harness.stats.estimate import Estimate
from harness.verdicts.evidence import recording
from harness.verdicts.expect import expect
from harness.verdicts.families import Family, claim_correction, expectation_kind, judging


def test_an_effect_expectation_of_a_family_of_m_is_judged_at_the_bonferroni_level():
    fam = Family("f", size=10, correction="bonferroni")
    assert fam.level_for(0.95, effect=True) == pytest.approx(0.995)
    assert fam.level_for(0.95, effect=False) == 0.95
    assert Family("f", size=1).level_for(0.95, effect=True) == 0.95
    assert Family("f", size=10, correction="none").level_for(0.95, effect=True) == 0.95


@pytest.mark.parametrize("text, kind", [
    ("ci_excludes(0)", "effect"), ("positive()", "effect"), ("negative()", "effect"),
    ("at_least(0.8)", "effect"), ("greater_than(0.5)", "effect"),
    ("greater_than(0.2 [0.1, 0.3])", "effect"), ("exceeds(0.1 [0, 0.2], factor=1.5)", "effect"),
    ("ratio_to(`decoder effect`).above(5)", "effect"), ("within(-0.05, 0.05)", "bound"),
    ("at_most(0.05)", "bound"), ("ci_contains(5.5)", "bound"),
    ("ratio_to(`slope (after)`).below(0.2)", "bound"), ("my own check", "other"),
])
def test_expectations_are_classified_as_effects_or_bounds(text, kind):
    assert expectation_kind(text) == kind


def test_a_family_size_or_correction_that_makes_no_sense_is_refused():
    with pytest.raises(StatsError, match=r"`size` must be a positive integer \(the claims in the family\), got 0"):
        Family("f", size=0)
    with pytest.raises(StatsError, match="`correction` must be one of"):
        Family("f", size=2, correction="holm")


def test_at_level_recomputes_each_statistic_from_the_same_data_and_seed():
    rng = np.random.default_rng(0)
    x, y = rng.normal(1, 1, 60), rng.normal(2, 1, 60)
    made = {
        "mean": stats.bootstrap_mean(x, seed=1, n_resamples=999),
        "paired difference": stats.paired_difference(x, y, seed=1, n_resamples=999),
        "paired ratio": stats.paired_ratio(x + 3, y, seed=1, n_resamples=999),
        "proportion": stats.proportion(30, 60),
        "difference of": stats.difference_of(stats.bootstrap_mean(x, seed=1, n_resamples=999),
                                              stats.bootstrap_mean(y, seed=2, n_resamples=999)),
    }
    for name, est in made.items():
        wide = est.with_context(statistic=name, site="blocks.1.resid_pre").at_level(0.995)
        assert wide.level == 0.995 and wide.value == est.value, name
        assert wide.ci_low < est.ci_low and wide.ci_high > est.ci_high, name
        assert (wide.statistic, wide.site) == (name, "blocks.1.resid_pre"), name
    direct = stats.bootstrap_mean(x, seed=1, n_resamples=999, level=0.995)
    again = made["mean"].at_level(0.995)
    assert (again.ci_low, again.ci_high) == (direct.ci_low, direct.ci_high)


def test_a_hand_built_estimate_cannot_change_level_and_says_how_to_fix_it():
    est = Estimate(value=0.5, ci_low=0.4, ci_high=0.6, level=0.95, n=10, method="by hand")
    assert est.at_level(0.95) is est
    with pytest.raises(StatsError, match="built by hand .* build it with harness.stats"):
        est.at_level(0.99)


def test_expect_judges_effects_at_the_family_level_and_bounds_at_their_own():
    x = np.random.default_rng(3).normal(0, 1, 200)
    x = (x - x.mean()) / x.std() + 2.3 / np.sqrt(200)  # mean 2.3 standard errors above 0
    est = stats.bootstrap_mean(x, seed=0, n_resamples=1999)
    assert est.ci_low > 0  # holds alone at 95%
    with recording() as records, judging(Family("f", size=20)):
        with pytest.raises(AssertionError, match=r"expected the 99.75% CI of `mean` to lie entirely above 0"):
            expect(est).positive()
        expect(est).within(-1, 1)
    assert [r.level for r in records] == [pytest.approx(0.9975), 0.95]
    assert claim_correction(Family("f", size=20), records) == ("bonferroni", pytest.approx(0.9975))
    assert claim_correction(Family("f", size=20), records[1:]) == ("none (intersection-union)", 0.95)
    assert claim_correction(Family("f", size=1), records) == ("none (single claim)", 0.95)


def test_a_control_compared_against_is_judged_at_the_same_level():
    rng = np.random.default_rng(4)
    real = stats.bootstrap_mean(rng.normal(1.0, 1, 80), seed=0, n_resamples=999)
    control = stats.bootstrap_mean(rng.normal(0.0, 1, 80), seed=1, n_resamples=999)
    with recording() as records, judging(Family("f", size=5)):
        expect(real).greater_than(control)
    assert records[0].level == pytest.approx(0.99)
    assert f"{control.at_level(0.99).ci_high:.4g}" in records[0].expectation


# --- the calibration the family-wise error rate rests on --------------------------------------


def _family_passes(rng: np.random.Generator, *, m: int, effect: float, seed: int) -> bool:
    """One replication: m claims `expect(mean).ci_excludes(0)`, each a BCa bootstrap over
    n=500 examples with 9999 resamples (the study's default), judged as one family; True when
    any claim of the family holds. Once one holds the family has passed: the later claims'
    data are still drawn from `rng` (so every replication sees the same data either way), but
    not bootstrapped.

    Both numbers matter at the corrected level (99.5% for m = 10). With 1999 resamples a tail
    of 0.25% holds 5 resamples and the interval runs narrow: 8.1% of 1000 null families of
    n=200 passed. At n=500 and 9999 resamples, 55 of the 1000 families below (5.5%) pass;
    uncorrected, about 40% would."""
    fam = Family("calibration", size=m)
    samples = [rng.normal(effect, 1.0, 500) for _ in range(m)]
    with recording(), judging(fam):
        for i, x in enumerate(samples):
            est = stats.bootstrap_mean(x, seed=seed * m + i, n_resamples=9999)
            try:
                expect(est).ci_excludes(0)
                return True
            except AssertionError:
                pass
    return False


@pytest.mark.slow
def test_a_null_family_of_ten_passes_in_at_most_6_5_percent_of_1000_replications():
    rng = np.random.default_rng(20261129)
    passes = sum(_family_passes(rng, m=10, effect=0.0, seed=s) for s in range(1000))
    # uncorrected, 1 - 0.95**10 = 40% of null families would pass a claim
    assert passes / 1000 <= 0.065, passes


@pytest.mark.slow
def test_a_planted_family_is_still_found_at_the_corrected_level():
    rng = np.random.default_rng(7)
    found = sum(_family_passes(rng, m=10, effect=0.2, seed=s) for s in range(50))
    assert found >= 49, found


# --- the plugin: counting families and reporting them -----------------------------------------

STUDY = '''
import numpy as np
import pytest

from harness import stats
from harness.verdicts.expect import expect


def mean_of(center, seed):
    return stats.bootstrap_mean(np.random.default_rng(seed).normal(center, 1.0, 200), seed=seed,
                                n_resamples=499, method="percentile")


@pytest.mark.claim("The effect is there at each layer")
@pytest.mark.parametrize("layer", [1, 2, 3, 4], ids=lambda l: f"layer{l}")
def test_effect(layer):
    expect(mean_of(0.5, layer)).positive()


@pytest.mark.claim("Controls stay near zero", family="controls")
def test_control_a():
    expect(mean_of(0.0, 11)).within(-0.5, 0.5)


@pytest.mark.claim("Controls stay near zero, too", family="controls")
def test_control_b():
    expect(mean_of(0.0, 12)).within(-0.5, 0.5)


@pytest.mark.claim("A single claim")
def test_single():
    expect(mean_of(0.5, 13)).positive()
'''


def _report(pytester: pytest.Pytester, *args: str) -> dict[str, dict]:
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == 0, result.stdout.str()
    data = json.loads((pytester.path / "reports/latest/report.json").read_text())
    return {c["nodeid"]: c for c in data["claims"]}


def test_report_json_carries_each_claims_family_size_correction_and_level(pytester):
    pytester.makepyfile(test_study=STUDY)
    claims = _report(pytester)
    layer2 = claims["test_study.py::test_effect[layer2]"]
    assert (layer2["family"], layer2["family_size"]) == ("test_study.py::test_effect", 4)
    assert (layer2["correction"], layer2["level"]) == ("bonferroni", pytest.approx(0.9875))
    assert layer2["evidence"][0]["level"] == pytest.approx(0.9875)
    control = claims["test_study.py::test_control_a"]
    assert (control["family"], control["family_size"], control["correction"], control["level"]) == (
        "controls", 2, "none (intersection-union)", 0.95)
    single = claims["test_study.py::test_single"]
    assert (single["family_size"], single["correction"], single["level"]) == (1, "none (single claim)", 0.95)


def test_a_k_slice_judges_a_claim_at_the_level_of_the_full_run(pytester):
    pytester.makepyfile(test_study=STUDY)
    full = _report(pytester)["test_study.py::test_effect[layer3]"]
    sliced = _report(pytester, "-k", "layer3")
    assert list(sliced) == ["test_study.py::test_effect[layer3]"]
    assert sliced["test_study.py::test_effect[layer3]"]["evidence"] == full["evidence"]
    assert sliced["test_study.py::test_effect[layer3]"]["family_size"] == 4


def test_correction_none_judges_every_claim_at_its_own_level(pytester):
    pytester.makepyfile(test_study=STUDY)
    claims = _report(pytester, "--claims-correction", "none")
    layer2 = claims["test_study.py::test_effect[layer2]"]
    assert (layer2["correction"], layer2["level"]) == ("none", 0.95)


def test_an_unknown_correction_is_a_usage_error_that_lists_the_choices(pytester):
    pytester.makepyfile(test_study=STUDY)
    result = pytester.runpytest("-p", "no:cacheprovider", "--claims-correction", "holm")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--claims-correction: invalid choice: 'holm' (choose from *bonferroni*none*"])


def test_a_family_name_that_is_not_a_string_is_a_collection_error(pytester):
    pytester.makepyfile(test_bad='''
import pytest

@pytest.mark.claim("x", family=3)
def test_x():
    pass
''')
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*family must be a non-empty string or None, got int 3*"])
