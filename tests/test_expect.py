"""Tests for `harness.verdicts.expect`: each expectation holds or fails as stated, says why, and records."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.verdicts.estimate import Estimate
from harness.verdicts.evidence import recording
from harness.verdicts.expect import Expectation, ExpectationError, RatioExpectation, expect


def estimate(low: float, high: float, **changes) -> Estimate:
    fields = dict(value=(low + high) / 2, ci_low=low, ci_high=high, level=0.95, n=500,
                  method="bootstrap BCa", seed=1234, statistic="slope near 0")
    fields.update(changes)
    return Estimate(**fields)


def degenerate() -> Estimate:
    return estimate(0.5, 0.5, n=1, status="degenerate", reason="fewer than 2 examples")


# --- every expectation, held and not held ------------------------------------------------------

CASES = [
    # (what, CI low, CI high, holds)
    (lambda e: e.ci_excludes(0), 0.1, 0.3, True),
    (lambda e: e.ci_excludes(0), -0.3, -0.1, True),
    (lambda e: e.ci_excludes(0), -0.1, 0.3, False),
    (lambda e: e.ci_excludes(0), 0.0, 0.3, False),
    (lambda e: e.ci_excludes(1.0), -0.1, 0.3, True),
    (lambda e: e.ci_contains(0.25), 0.1, 0.3, True),
    (lambda e: e.ci_contains(0.3), 0.1, 0.3, True),
    (lambda e: e.ci_contains(0.31), 0.1, 0.3, False),
    (lambda e: e.positive(), 0.01, 0.3, True),
    (lambda e: e.positive(), 0.0, 0.3, False),
    (lambda e: e.negative(), -0.3, -0.01, True),
    (lambda e: e.negative(), -0.3, 0.0, False),
    (lambda e: e.within(-0.05, 0.05), -0.05, 0.05, True),
    (lambda e: e.within(-0.05, 0.05), -0.04, 0.06, False),
    (lambda e: e.within(-0.05, 0.05), -0.06, 0.04, False),
    (lambda e: e.at_least(0.8), 0.8, 0.9, True),
    (lambda e: e.at_least(0.8), 0.79, 0.9, False),
    (lambda e: e.at_most(0.05), 0.0, 0.05, True),
    (lambda e: e.at_most(0.05), 0.0, 0.051, False),
    (lambda e: e.greater_than(0.5), 0.51, 0.9, True),
    (lambda e: e.greater_than(0.5), 0.5, 0.9, False),
    (lambda e: e.greater_than(estimate(0.1, 0.4)), 0.41, 0.9, True),
    (lambda e: e.greater_than(estimate(0.1, 0.4)), 0.4, 0.9, False),
]
IDS = ["excludes-0-above", "excludes-0-below", "excludes-0-straddles", "excludes-0-touches",
       "excludes-1", "contains", "contains-at-the-bound", "contains-outside", "positive", "positive-touches-0", "negative", "negative-touches-0",
       "within-exactly", "within-over-high", "within-under-low", "at-least", "at-least-below",
       "at-most", "at-most-above", "greater-than-number", "greater-than-number-touches",
       "greater-than-estimate", "greater-than-estimate-overlaps"]


@pytest.mark.parametrize(("judge", "low", "high", "holds"), CASES, ids=IDS)
def test_each_expectation_holds_exactly_when_its_ci_condition_does(judge, low, high, holds):
    with recording() as records:
        if holds:
            judge(expect(estimate(low, high)))
        else:
            with pytest.raises(AssertionError, match=r"^expected the 95% CI of `slope near 0`"):
                judge(expect(estimate(low, high)))
    assert [ev.held for ev in records] == [holds]


@pytest.mark.parametrize(("judge", "low", "high", "holds"), CASES, ids=IDS)
def test_a_degenerate_estimate_fails_every_expectation_with_its_reason(judge, low, high, holds):
    with recording() as records:
        with pytest.raises(AssertionError, match=r"the estimate is degenerate: fewer than 2 examples \(n=1, bootstrap BCa over examples, seed 1234\)"):
            judge(expect(degenerate()))
    assert [(ev.held, ev.status, ev.reason) for ev in records] == [(False, "degenerate", "fewer than 2 examples")]


# --- the failure message -----------------------------------------------------------------------


def test_the_failure_message_says_what_was_expected_and_what_was_measured():
    est = Estimate(value=0.012, ci_low=-0.031, ci_high=0.055, level=0.95, n=500,
                   method="bootstrap BCa", seed=1234, statistic="slope near 0",
                   site="encoder.12.resid_post")
    with pytest.raises(AssertionError) as info:
        expect(est).ci_excludes(0)
    assert str(info.value) == (
        "expected the 95% CI of `slope near 0` at encoder.12.resid_post to exclude 0; "
        "measured 0.012, 95% CI [-0.031, 0.055], n=500 (bootstrap BCa over examples, seed 1234)"
    )


@pytest.mark.parametrize(
    ("judge", "says"),
    [
        (lambda e: e.ci_contains(0.1), "to contain 0.1; measured"),
        (lambda e: e.positive(), "to lie entirely above 0; measured"),
        (lambda e: e.negative(), "to lie entirely below 0; measured"),
        (lambda e: e.within(-0.01, 0.01), "to lie entirely within [-0.01, 0.01]; measured"),
        (lambda e: e.at_least(0.8), "to lie at or above 0.8; measured"),
        (lambda e: e.at_most(-0.5), "to lie at or below -0.5; measured"),
        (lambda e: e.greater_than(0.25), "to lie entirely above 0.25; measured"),
    ],
    ids=["ci_contains", "positive", "negative", "within", "at_least", "at_most", "greater_than"],
)
def test_each_failure_message_names_the_expectation(judge, says):
    with pytest.raises(AssertionError, match=re.escape(says) + r" 0\.012, 95% CI \[-0\.031, 0\.055\], n=500"):
        judge(expect(estimate(-0.031, 0.055, value=0.012)))


def test_an_estimate_without_a_name_or_seed_is_described_plainly():
    est = Estimate(value=1.0, ci_low=-1.0, ci_high=3.0, level=0.9, n=10, method="wilson", unit="trials")
    with pytest.raises(AssertionError, match=re.escape(
        "expected the 90% CI of the estimate to lie entirely above 0; "
        "measured 1, 90% CI [-1, 3], n=10 (wilson over trials)"
    )):
        expect(est).positive()


def test_a_bound_that_rounds_to_the_threshold_is_printed_with_enough_digits():
    with pytest.raises(AssertionError, match=r"to lie at or above 0\.8; measured .*CI \[0\.79996, "):
        expect(estimate(0.79996, 0.9)).at_least(0.8)


def test_greater_than_an_estimate_reports_both_estimates():
    control = estimate(0.1, 0.5, statistic="random-direction slope")
    with pytest.raises(AssertionError, match=re.escape(
        "to lie entirely above the 95% CI of `random-direction slope` (no overlap); "
        "measured 0.7, 95% CI [0.4, 1], n=500 (bootstrap BCa over examples, seed 1234); "
        "`random-direction slope` measured 0.3, 95% CI [0.1, 0.5]"
    )):
        expect(estimate(0.4, 1.0)).greater_than(control)


def test_greater_than_a_degenerate_estimate_fails_with_its_reason():
    control = estimate(0.0, 0.0, statistic="control", status="degenerate", reason="constant data")
    with pytest.raises(AssertionError, match=r"but `control` is degenerate: constant data"):
        expect(estimate(0.4, 1.0)).greater_than(control)


def test_the_traceback_hides_the_expectation_internals():
    with pytest.raises(AssertionError) as info:
        expect(estimate(-1.0, 1.0)).positive()
    import harness.verdicts.expect as module

    inside = [entry for entry in info.traceback if str(entry.path) == module.__file__]
    assert inside, "the assertion is raised inside harness.verdicts.expect"
    shown = [entry for entry in info.traceback.filter(info) if str(entry.path) == module.__file__]
    assert shown == []


# --- chaining and recording --------------------------------------------------------------------


def test_expectations_chain_and_each_records_evidence():
    with recording() as records:
        result = expect(estimate(0.1, 0.3)).ci_excludes(0).positive().within(0, 1)
    assert isinstance(result, Expectation)
    assert [ev.expectation for ev in records] == ["ci_excludes(0)", "positive()", "within(0, 1)"]
    assert all(ev.held for ev in records)


def test_the_evidence_carries_the_estimate_numbers():
    with recording() as records:
        expect(estimate(0.1, 0.3, site="encoder.12.resid_post", fingerprint="abc")).positive()
    (ev,) = records
    assert (ev.statistic, ev.value, ev.ci_low, ev.ci_high, ev.n, ev.seed, ev.site, ev.fingerprint) == (
        "slope near 0", 0.2, 0.1, 0.3, 500, 1234, "encoder.12.resid_post", "abc")


def test_a_failed_expectation_is_recorded_before_it_raises():
    with recording() as records:
        with pytest.raises(AssertionError):
            expect(estimate(-0.1, 0.3)).ci_excludes(0).positive()
    assert [(ev.expectation, ev.held) for ev in records] == [("ci_excludes(0)", False)]


def test_expectation_strings_name_the_arguments():
    with recording() as records:
        e = expect(estimate(0.6, 0.7))
        e.at_least(0.5).at_most(0.75).greater_than(0.55).greater_than(estimate(0.1, 0.2, statistic="control"))
    assert [ev.expectation for ev in records] == [
        "at_least(0.5)", "at_most(0.75)", "greater_than(0.55)", "greater_than(0.15 [0.1, 0.2])"]


# --- ratio_to ----------------------------------------------------------------------------------


def bootstrapped(center: float, spread: float, *, statistic: str, seed: int) -> Estimate:
    dist = np.random.default_rng(seed).normal(center, spread, size=999)
    low, high = np.quantile(dist, [0.025, 0.975])
    return Estimate(value=center, ci_low=float(low), ci_high=float(high), level=0.95, n=200,
                    method="bootstrap percentile", seed=7, statistic=statistic,
                    bootstrap_distribution=dist)


def test_ratio_to_judges_the_ratio_of_the_two_estimates():
    encoder = bootstrapped(1.0, 0.05, statistic="encoder effect", seed=1)
    decoder = bootstrapped(10.0, 0.1, statistic="decoder effect", seed=2)
    with recording() as records:
        ratio = expect(encoder).ratio_to(decoder)
        assert isinstance(ratio, RatioExpectation)
        ratio.below(0.2).above(0.05)
    assert [ev.expectation for ev in records] == [
        "ratio_to(`decoder effect`).below(0.2)", "ratio_to(`decoder effect`).above(0.05)"]
    assert records[0].statistic == "encoder effect / decoder effect"
    assert records[0].fingerprint is None and records[0].site is None
    assert 0.08 < records[0].value < 0.12


def test_a_ratio_of_two_estimates_from_one_model_and_site_keeps_them():
    encoder = bootstrapped(1.0, 0.05, statistic="a", seed=1).with_context(site="s", fingerprint="f")
    decoder = bootstrapped(10.0, 0.1, statistic="b", seed=2).with_context(site="s", fingerprint="f")
    with recording() as records:
        expect(encoder).ratio_to(decoder).below(1)
    assert (records[0].site, records[0].fingerprint) == ("s", "f")


def test_a_ratio_that_is_not_below_the_bound_fails_with_numbers():
    encoder = bootstrapped(1.0, 0.05, statistic="encoder effect", seed=1)
    decoder = bootstrapped(10.0, 0.1, statistic="decoder effect", seed=2)
    with pytest.raises(AssertionError, match=r"expected the 95% CI of `encoder effect / decoder effect` to lie entirely below 0\.05; measured 0\.1, 95% CI \[0\.0[89]\d*, 0\.1\d*\], n=200"):
        expect(encoder).ratio_to(decoder).below(0.05)
    with pytest.raises(AssertionError, match=r"to lie entirely above 0\.5; measured"):
        expect(encoder).ratio_to(decoder).above(0.5)


def test_a_ratio_over_a_denominator_that_straddles_zero_fails_as_degenerate():
    encoder = bootstrapped(1.0, 0.05, statistic="encoder effect", seed=1)
    decoder = bootstrapped(0.0, 1.0, statistic="decoder effect", seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with recording() as records:
            with pytest.raises(AssertionError, match=r"to lie entirely below 0\.2; the estimate is degenerate: "):
                expect(encoder).ratio_to(decoder).below(0.2)
    assert records[0].status == "degenerate" and not records[0].held


def test_ratio_to_takes_an_estimate():
    with pytest.raises(TypeError, match=r"ratio_to\(\) takes an Estimate as `other`, got float 2\.0; pass the denominator's Estimate"):
        expect(estimate(0.1, 0.2)).ratio_to(2.0)  # type: ignore[arg-type]


# --- bad arguments -----------------------------------------------------------------------------


def test_expect_takes_an_estimate():
    with pytest.raises(TypeError, match=r"expect\(\) takes an Estimate, got float 0\.3; compute one with a statistic from harness\.stats"):
        expect(0.3)  # type: ignore[arg-type]


def test_within_needs_low_at_most_high():
    with pytest.raises(ExpectationError, match=r"within\(low, high\) needs low <= high, got low=2, high=1; swap them: within\(1, 2\)"):
        expect(estimate(0.1, 0.2)).within(2, 1)


def test_an_expectation_error_is_a_harness_error():
    assert issubclass(ExpectationError, HarnessError)


@pytest.mark.parametrize(
    ("judge", "message"),
    [
        (lambda e: e.ci_excludes("0"), r"`value` must be a real number, got str '0'; e\.g\. ci_excludes\(0\)"),
        (lambda e: e.at_least(None), r"`p` must be a real number, got NoneType None; e\.g\. at_least\(0\.8\)"),
        (lambda e: e.at_most(True), r"`p` must be a real number, got bool True; e\.g\. at_most\(0\.05\)"),
        (lambda e: e.within("a", 1), r"`low` must be a real number, got str 'a'"),
        (lambda e: e.greater_than("x"), r"greater_than\(\) takes an Estimate or a number as `other`, got str 'x'"),
    ],
    ids=["ci_excludes-str", "at_least-none", "at_most-bool", "within-str", "greater_than-str"],
)
def test_a_non_number_argument_is_a_type_error_naming_it(judge, message):
    with pytest.raises(TypeError, match=message):
        judge(expect(estimate(0.1, 0.2)))


def test_a_nan_threshold_is_an_expectation_error():
    with pytest.raises(ExpectationError, match=r"`p` must be a number, got nan; e\.g\. at_least\(0\.8\)"):
        expect(estimate(0.1, 0.2)).at_least(float("nan"))


def test_bad_arguments_record_no_evidence():
    with recording() as records:
        with pytest.raises(ExpectationError):
            expect(estimate(0.1, 0.2)).within(2, 1)
    assert records == []


def test_a_nan_bound_in_an_ok_estimate_never_holds():
    with pytest.raises(AssertionError, match=r"95% CI \[nan, 0\.2\]"):
        expect(estimate(float("nan"), 0.2)).ci_excludes(0)


def test_exceeds_holds_when_the_ci_clears_factor_times_the_controls_largest_magnitude():
    control = estimate(-0.1, 0.2, statistic="control")
    with recording() as records:
        expect(estimate(1.01, 2.0)).exceeds(control, factor=5)
    assert records[0].held and records[0].expectation.startswith("exceeds(")


def test_exceeds_fails_with_the_bound_in_the_message():
    control = estimate(-0.3, 0.1, statistic="control")
    with pytest.raises(AssertionError, match=r"to lie above 5 x the largest magnitude in the CI of `control` \(1.5\)"):
        expect(estimate(1.2, 2.0)).exceeds(control, factor=5)


def test_exceeds_rejects_a_non_positive_factor_and_a_number_as_control():
    with pytest.raises(ExpectationError, match="`factor` must be positive, got 0"):
        expect(estimate(1.0, 2.0)).exceeds(estimate(0.0, 0.1), factor=0)
    with pytest.raises(TypeError, match="exceeds\\(\\) takes the control's Estimate"):
        expect(estimate(1.0, 2.0)).exceeds(0.5, factor=2)  # type: ignore[arg-type]
