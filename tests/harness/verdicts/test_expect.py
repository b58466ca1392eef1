"""Tests for `harness.verdicts.expect`: each expectation holds or fails as stated, says why, and records."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.stats.estimate import Estimate
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
    import harness.verdicts.judging as judging

    inside = [entry for entry in info.traceback if str(entry.path) == module.__file__]
    assert inside, "the assertion is raised inside harness.verdicts.expect"
    internals = (module.__file__, judging.__file__)
    shown = [entry for entry in info.traceback.filter(info) if str(entry.path) in internals]
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


@pytest.mark.parametrize(("subject", "shown"), [("0.3", "str '0.3'"), (None, "NoneType None"), (True, "bool True"),
                                                ({"a": 1}, "dict {'a': 1}"), (["a", "b"], "list ['a', 'b']")])
def test_expect_takes_an_estimate_or_numbers(subject, shown):
    with pytest.raises(TypeError, match=re.escape(
            f"expect() takes an Estimate (a statistic from harness.stats, with its CI) or the exactly computed "
            f"values of an exact finding (a number or an array), got {shown}; compute an Estimate with a "
            "statistic from harness.stats")):
        expect(subject)


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


# --- exact findings: equals ---------------------------------------------------------------------

from harness import stats  # noqa: E402
from harness.verdicts.expect import MIN_BOOTSTRAP_N, ExactExpectation  # noqa: E402


def quietly(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def test_values_computed_exactly_are_stated_with_equals_and_recorded_as_exact():
    with recording() as records:
        chain = expect(np.ones(60), name="recovery").equals(1.0, tol=1e-6)
    assert isinstance(chain, ExactExpectation)
    (ev,) = records
    assert (ev.kind, ev.statistic, ev.value, ev.ci_low, ev.ci_high, ev.level, ev.n, ev.method, ev.unit) == (
        "exact", "recovery", 1.0, 1.0, 1.0, 1.0, 60, "exact", "values")
    assert (ev.expected, ev.tolerance, ev.deviation, ev.held, ev.status, ev.expectation) == (
        1.0, 1e-6, 0.0, True, "ok", "equals(1, tol=1e-06)")
    assert ev.exact and ev.seed is None and ev.resamples is None


def test_equals_takes_a_number_a_list_a_tensor_and_an_expected_array():
    torch = pytest.importorskip("torch")
    with recording() as records:
        expect(0.5).equals(0.5, tol=0)
        expect([1.0, 1.0 + 1e-9]).equals(1, tol=1e-6)
        expect(torch.full((3, 4), 2.0)).equals(2.0, tol=1e-6)
        expect(np.arange(4.0)).equals(np.arange(4.0) + 1e-5, tol=1e-4)
    assert [ev.n for ev in records] == [1, 2, 12, 4]
    assert records[1].deviation == pytest.approx(1e-9) and records[1].value == pytest.approx(1 + 1e-9)
    assert records[3].expectation == "equals(array of shape (4,), tol=0.0001)"
    assert all(ev.held for ev in records)


def test_equals_that_does_not_hold_names_the_worst_value_and_how_many_deviate():
    x = np.ones(60)
    x[17], x[3] = 0.93, 0.99
    with recording() as records:
        with pytest.raises(AssertionError) as info:
            expect(x, name="recovery").equals(1.0, tol=1e-6)
    assert str(info.value) == (
        "expected `recovery` (60 values) to equal 1 within 1e-06; measured 0.93 at index 17, 0.07 from 1 "
        "(the largest deviation; 2 of 60 values deviate by more than 1e-06)")
    (ev,) = records
    assert (ev.held, ev.value, ev.expected, ev.deviation) == (False, 0.93, 1.0, pytest.approx(0.07))


def test_equals_on_a_number_and_on_a_matrix_say_where():
    with pytest.raises(AssertionError, match=re.escape("expected the value to equal 1 within 1e-06; measured 1.5, 0.5 from 1")):
        expect(1.5).equals(1, tol=1e-6)
    with pytest.raises(AssertionError, match=re.escape(
            "expected the 6 values to equal the expected array of shape (2, 3) elementwise within 0.001; "
            "measured 0 at index (0, 0), 1 from 1 (the largest deviation; 2 of 6 values deviate by more than 0.001)")):
        expect(np.zeros((2, 3))).equals(np.eye(2, 3), tol=1e-3)


@pytest.mark.parametrize(
    ("values", "reason"),
    [(np.array([]), "no values to compare (an empty array)"),
     (np.array([1.0, np.nan, np.inf]), "2 of 3 values are NaN or inf; drop or fix them before comparing")],
    ids=["empty", "nan"],
)
def test_equals_on_no_values_or_non_finite_values_fails_as_degenerate(values, reason):
    with recording() as records:
        with pytest.raises(AssertionError, match=re.escape(f"expected the {values.size} values to equal 1 within 0.1; {reason}")):
            expect(values).equals(1, tol=0.1)
    (ev,) = records
    assert (ev.held, ev.status, ev.reason, ev.kind, ev.value, ev.deviation) == (False, "degenerate", reason, "exact", None, None)


def test_equals_on_fewer_values_than_the_claims_minimum_fails():
    with pytest.raises(AssertionError, match=re.escape(
            "3 values, fewer than the claim's minimum of 10 (expect(..., min_n=10)); measure more, or state a lower minimum")):
        expect(np.ones(3), min_n=10).equals(1, tol=0)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda e: e.equals(1.0, tol=-1e-6), ExpectationError,
         "`tol` must be a finite number >= 0 (the largest absolute deviation that still counts as equal), got -1e-06; "
         "e.g. equals(1.0, tol=1e-6)"),
        (lambda e: e.equals(1.0, tol=float("nan")), ExpectationError, "`tol` must be a finite number >= 0 (the largest "
         "absolute deviation that still counts as equal), got nan"),
        (lambda e: e.equals(1.0, tol=float("inf")), ExpectationError, "`tol` must be a finite number >= 0 (the largest "
         "absolute deviation that still counts as equal), got inf"),
        (lambda e: e.equals(1.0, tol="1e-6"), TypeError, "`tol` must be a real number, got str '1e-6'; e.g. equals(1.0, tol=1e-6)"),
        (lambda e: e.equals(1.0, tol=True), TypeError, "`tol` must be a real number, got bool True"),
        (lambda e: e.equals(float("nan"), tol=0.1), ExpectationError, "`expected` must be finite, got nan; e.g. equals(1.0, tol=1e-6)"),
        (lambda e: e.equals("1", tol=0.1), TypeError, "`expected` must be a real number or an array of numbers, got str '1'; "
         "e.g. equals(1.0, tol=1e-6), or equals(reference, tol=1e-4) with one expected value per value"),
        (lambda e: e.equals([1.0, 2.0], tol=0.1), ExpectationError, "`expected` must be one number or an array of the values' "
         "shape (3,), got an array of shape (2,); e.g. equals(1.0, tol=1e-6)"),
        (lambda e: e.equals([1.0, np.nan, 1.0], tol=0.1), ExpectationError, "`expected` must be finite, got 1 NaN or inf of 3; "
         "e.g. equals(1.0, tol=1e-6)"),
    ],
    ids=["tol-negative", "tol-nan", "tol-inf", "tol-str", "tol-bool", "expected-nan", "expected-str", "expected-shape",
         "expected-array-nan"],
)
def test_equals_checks_its_arguments_and_records_nothing_when_they_are_bad(call, error, message):
    with recording() as records:
        with pytest.raises(error, match=re.escape(message)):
            call(expect(np.ones(3)))
    assert records == []


@pytest.mark.parametrize("method", ["ci_excludes", "positive", "within", "at_least", "greater_than", "ratio_to"])
def test_values_computed_exactly_have_no_interval_to_judge(method):
    with pytest.raises(TypeError, match=re.escape(
            f"{method}() judges the confidence interval of an Estimate, but expect() was given `recovery` (3 values), "
            "computed exactly with no interval; state an exact finding with .equals(expected, tol=...), or compute an "
            "Estimate with harness.stats (e.g. stats.bootstrap_mean(values)) to judge an effect or a bound")):
        getattr(expect(np.ones(3), name="recovery"), method)
    with pytest.raises(AttributeError):
        expect(np.ones(3)).no_such_expectation  # noqa: B018


def test_an_estimate_whose_ci_has_zero_width_can_be_stated_exactly():
    exact = Estimate(value=2.0, ci_low=2.0, ci_high=2.0, level=0.95, n=1, method="exact", statistic="layer")
    with recording() as records:
        expect(exact).equals(2, tol=0)
        with pytest.raises(AssertionError, match=re.escape("expected `layer` to equal 3 within 0.5; measured 2, 1 from 3 (n=1, exact over examples)")):
            expect(exact).equals(3, tol=0.5)
    assert [(ev.kind, ev.held, ev.deviation, ev.method) for ev in records] == [
        ("exact", True, 0.0, "exact"), ("exact", False, 1.0, "exact")]


def test_equals_refuses_an_estimate_with_an_interval():
    with pytest.raises(ExpectationError, match=re.escape(
            "equals() states an exact finding, but `slope near 0` is an estimate with a 95% CI [0.1, 0.3] of nonzero "
            "width; judge an estimate with ci_contains(0.2) or within(low, high), or pass the exactly computed values: "
            "expect(values).equals(0.2, tol=0.01)")):
        expect(estimate(0.1, 0.3)).equals(0.2, tol=0.01)


def test_equals_refuses_a_bootstrap_whose_every_resample_agreed():
    est = stats.bootstrap_mean(near_constant(), seed=0, n_resamples=999)
    with pytest.raises(ExpectationError, match=re.escape(
            "equals() states an exact finding, but the zero-width 95% CI of `mean` comes from resampling (every "
            "resample gave 3.92), which does not make the values exact; pass the values themselves: "
            "expect(values).equals(3.92, tol=1e-06), or judge a bound such as within(low, high)")):
        expect(est).equals(3.92, tol=1e-6)


def test_equals_on_a_degenerate_estimate_fails_with_its_reason():
    with recording() as records:
        with pytest.raises(AssertionError, match=r"to equal 0\.5 within 0\.1; fewer than 2 examples"):
            expect(degenerate()).equals(0.5, tol=0.1)
    assert (records[0].kind, records[0].status, records[0].held) == ("exact", "degenerate", False)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"min_n": 1}, ExpectationError, "`min_n` must be an integer >= 2 (the fewest examples the claim accepts), got 1; "
                                         "e.g. expect(est, min_n=30)"),
        ({"min_n": 20.0}, ExpectationError, "`min_n` must be an integer >= 2 (the fewest examples the claim accepts), got 20.0"),
        ({"min_n": True}, ExpectationError, "`min_n` must be an integer >= 2 (the fewest examples the claim accepts), got True"),
        ({"name": ""}, TypeError, "`name` must be a non-empty string saying what was measured, got str ''; "
                                  "e.g. expect(recovery, name=\"recovery\")"),
        ({"name": 3}, TypeError, "`name` must be a non-empty string saying what was measured, got int 3"),
    ],
    ids=["min_n-one", "min_n-float", "min_n-bool", "name-empty", "name-int"],
)
def test_expect_checks_min_n_and_name(kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        expect(estimate(0.1, 0.3), **kwargs)


def test_a_name_renames_an_estimate():
    with recording() as records:
        expect(estimate(0.1, 0.3), name="recovery").positive()
    assert records[0].statistic == "recovery"


# --- degenerate judgements: constant data, zero-width CIs, too few examples ---------------------


def test_constant_data_fails_an_effect_and_points_to_equals_for_an_exact_finding():
    # patching the only differing token: recovery exactly 1 for 60 of 60 pairs
    est = quietly(stats.bootstrap_mean, np.ones(60), seed=0)
    with recording() as records:
        with pytest.raises(AssertionError, match=re.escape(
                "the estimate is degenerate: constant data: all 60 values equal 1; a bootstrap CI is not informative; "
                "if every example gives 1 exactly, that is an exact finding: state it with "
                "expect(values).equals(1, tol=...) (n=60, bootstrap BCa over examples, seed 0)")):
            expect(est).at_least(0.9)
    assert records[0].reason.endswith("state it with expect(values).equals(1, tol=...)")


def near_constant(n: int = 60) -> np.ndarray:
    """3.92 in float32 with noise of 1e-6: a 97.5% bootstrap CI printed as [3.92, 3.92]."""
    noise = np.random.default_rng(0).normal(0, 1, n).astype(np.float32) * np.float32(1e-6)
    return (np.float32(3.92) + noise).astype(np.float64)


def test_an_effect_on_a_zero_width_ci_fails_with_the_reason():
    est = stats.bootstrap_mean(near_constant(), seed=0, n_resamples=999)
    assert est.status == "ok" and est.zero_width and est.ci_low < est.ci_high
    for judge in (lambda e: e.positive(), lambda e: e.ci_excludes(0), lambda e: e.at_least(1),
                  lambda e: e.greater_than(0), lambda e: e.exceeds(estimate(-0.1, 0.1), factor=2)):
        with recording() as records:
            with pytest.raises(AssertionError, match=re.escape(
                    "the estimate is degenerate: its 95% CI [3.92, 3.92] has zero width (") + r"[0-9.e-]+" + re.escape(
                    ", under 1e-06 of its magnitude): every resample gave the same value up to rounding, which says "
                    "nothing about an effect's uncertainty; state an exact value with "
                    "expect(values).equals(3.92, tol=...), or judge a bound (within, at_most) (n=60")):
                judge(expect(est))
        assert [(ev.held, ev.status) for ev in records] == [(False, "degenerate")]
        assert records[0].reason.startswith("its 95% CI [3.92, 3.92] has zero width")


def test_a_bound_on_a_zero_width_ci_is_judged_as_written():
    est = stats.bootstrap_mean(near_constant(), seed=0, n_resamples=999)
    with recording() as records:
        expect(est).within(3, 5).at_most(4).ci_contains(est.value)
        with pytest.raises(AssertionError, match=r"to lie entirely within \[4, 5\]; measured 3\.92"):
            expect(est).within(4, 5)
    assert [(ev.held, ev.status, ev.kind) for ev in records] == [
        (True, "ok", "estimate"), (True, "ok", "estimate"), (True, "ok", "estimate"), (False, "ok", "estimate")]


def test_an_exactly_zero_control_may_be_compared_with():
    control = Estimate(value=0.0, ci_low=0.0, ci_high=0.0, level=0.95, n=500, method="exact", statistic="control")
    with recording() as records:
        expect(estimate(0.1, 0.3)).greater_than(control).exceeds(control, factor=5)
    assert all(ev.held for ev in records)


def test_a_bootstrap_of_two_examples_is_too_few_for_any_judgement():
    est = stats.bootstrap_mean([1, 2], seed=0, n_resamples=999)
    assert (est.status, est.ci_low, est.ci_high) == ("ok", 1.0, 2.0)   # a "95% [1, 2]" that covers far less
    message = ("2 examples, fewer than the 20 a bootstrap CI is judged on (a 95% bootstrap CI covers the truth about "
               "80% of the time at 5, 90% at 10); measure more, or state the claim's own minimum: expect(est, min_n=...)")
    for judge in (lambda e: e.positive(), lambda e: e.within(-5, 5)):
        with recording() as records:
            with pytest.raises(AssertionError, match=re.escape(f"the estimate is degenerate: {message} (n=2, bootstrap BCa")):
                judge(expect(est))
        assert (records[0].status, records[0].reason) == ("degenerate", message)


def test_the_default_minimum_is_twenty_examples_and_a_claim_may_state_its_own():
    assert MIN_BOOTSTRAP_N == 20
    x = np.random.default_rng(1).normal(3.0, 1.0, 20)
    expect(stats.bootstrap_mean(x, seed=0, n_resamples=999)).positive()
    with pytest.raises(AssertionError, match="19 examples, fewer than the 20 a bootstrap CI is judged on"):
        expect(stats.bootstrap_mean(x[:19], seed=0, n_resamples=999)).positive()
    expect(stats.bootstrap_mean(x[:10], seed=0, n_resamples=999), min_n=10).positive()
    with pytest.raises(AssertionError, match=re.escape("20 examples, fewer than the claim's minimum of 50 (expect(..., min_n=50))")):
        expect(stats.bootstrap_mean(x, seed=0, n_resamples=999), min_n=50).positive()


def test_the_default_minimum_is_for_bootstrap_estimates_a_stated_one_for_any():
    wilson = stats.proportion(9, 10)
    expect(wilson).at_least(0.5)                        # Wilson: calibrated on few trials
    hand_built = Estimate(value=0.5, ci_low=0.4, ci_high=0.6, level=0.95, n=5, method="bootstrap BCa")
    expect(hand_built).positive()                       # carries no bootstrap distribution: not checked
    with pytest.raises(AssertionError, match=re.escape("10 trials, fewer than the claim's minimum of 30")):
        expect(wilson, min_n=30).at_least(0.5)


def test_a_control_on_too_few_examples_cannot_be_compared_with():
    control = stats.bootstrap_mean([0.0, 0.1, -0.1, 0.05, -0.05], seed=0, n_resamples=999).with_context(statistic="control")
    with pytest.raises(AssertionError, match=re.escape(
            "; but `control` is degenerate: 5 examples, fewer than the 20 a bootstrap CI is judged on")):
        expect(estimate(0.4, 1.0)).greater_than(control)
    with pytest.raises(AssertionError, match=re.escape("; but `control` is degenerate: 5 examples")):
        expect(estimate(0.4, 1.0)).exceeds(control, factor=2)


def test_a_ratio_keeps_the_claims_minimum():
    encoder = bootstrapped(1.0, 0.05, statistic="encoder effect", seed=1)
    decoder = bootstrapped(10.0, 0.1, statistic="decoder effect", seed=2)
    with pytest.raises(AssertionError, match=re.escape("200 examples, fewer than the claim's minimum of 500")):
        expect(encoder, min_n=500).ratio_to(decoder).below(0.2)
