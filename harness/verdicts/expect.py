"""`expect(...)`: state a finding, judge it, and record it as evidence.

Example::

    expect(curve.slope(near=0)).ci_excludes(0).positive()
    expect(control.slope(near=0)).within(-0.05, 0.05)
    expect(effect).greater_than(control)
    expect(encoder_effect).ratio_to(decoder_effect).below(0.2)
    expect(recovery, name="recovery").equals(1.0, tol=1e-6)    # an exact finding

Every call judges the estimate's confidence interval, records an `Evidence` on the running
test (through `harness.verdicts.evidence.record`; a no-op outside pytest) and, when the finding does not
hold, raises `AssertionError` saying what was expected and what was measured:

    expected the 95% CI of `slope near 0` at encoder.12.resid_post to exclude 0; measured
    0.012, 95% CI [-0.031, 0.055], n=500 (bootstrap BCa over examples, seed 1234)

A degenerate estimate fails every expectation, with its reason in the message. So does, for
the judgement at hand:

- an estimate on fewer examples than the minimum: the claim's own (``expect(est, min_n=30)``),
  else `MIN_BOOTSTRAP_N` (20) for a bootstrap estimate (one that carries its bootstrap
  distribution), below which a bootstrap CI does not reach its nominal coverage;
- an *effect* expectation (ci_excludes, positive, negative, at_least, greater_than, exceeds,
  ratio_to(...).above) on a CI of zero width (`Estimate.zero_width`: narrower than 1e-6 of its
  magnitude, so every resample gave the same value up to rounding). Near-constant data, or a
  statistic that never moves under resampling, says nothing about how uncertain an effect is.
  *Bounds* (within, at_most, ci_contains, ratio_to(...).below) are judged on such a CI as
  written: the interval is the value, so the bound holds iff the value lies in it, the same
  verdict an exact value would get. The evidence stays a bootstrap estimate (kind
  ``"estimate"``), never ``"exact"``: the report says it came from resampling.

An exact finding (a value computed exactly, e.g. patching the only token two prompts differ in
restores the clean run in every pair) is stated as such: ``expect(values).equals(expected,
tol=...)`` takes a number or an array (a torch tensor too), or an `Estimate` computed exactly
(a zero-width CI that rests on no resamples), and records evidence of kind ``"exact"`` (the value
farthest from `expected`, the largest absolute deviation, the tolerance, the number of values).

>>> from harness import expect, stats
>>> est = stats.proportion(45, 50)                    # 0.9, Wilson 95% CI [0.7864, 0.9565]
>>> _ = expect(est).ci_excludes(0.5).at_least(0.7)    # held: returns the chain, quietly
>>> expect(est).at_least(0.85)
Traceback (most recent call last):
...
AssertionError: expected the 95% CI of `proportion` to lie at or above 0.85; measured 0.9, 95% CI [0.7864, 0.9565], n=50 (wilson over trials)
>>> _ = expect([1.0, 1.0, 1.0], name="recovery").equals(1.0, tol=1e-6)

Contents: `expect`, `Expectation` (ci_excludes, ci_contains, positive, negative, within,
at_least, at_most, greater_than, exceeds, ratio_to, equals), `RatioExpectation` (below, above),
`ExactExpectation` (equals), `ExpectationError`, `MIN_BOOTSTRAP_N`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.stats.estimate import Estimate
from harness.verdicts.evidence import ZERO_WIDTH_RTOL, Evidence, record
from harness.verdicts.families import current_family

__all__ = ["expect", "Expectation", "RatioExpectation", "ExactExpectation", "ExpectationError",
           "MIN_BOOTSTRAP_N"]

# The fewest examples a bootstrap estimate is judged on unless the claim states its own minimum.
# A bootstrap CI undercovers on few examples (it resamples the sample's own spread, which is too
# narrow). The 95% BCa interval of a normal mean covered the truth in about 82% of runs at 5
# examples, 89-90% at 10 and 93% at 20 (4,000 replications at 20; percentile intervals and
# exponential data alike), where tests/harness/stats/test_stats_calibration.py pins 93-97% at 100 and
# tests/harness/stats/test_min_n_calibration.py pins these. Below 20 an effect claimed at "95%" is claimed at
# about 90% or less (and a family's Bonferroni level lower still); 20 keeps the worst of it out
# without refusing the small patching experiments that interpretability studies run. A claim
# that accepts fewer says so: expect(est, min_n=10).
MIN_BOOTSTRAP_N = 20


class ExpectationError(HarnessError, ValueError):
    """An expectation asked for with arguments that cannot be judged (e.g. within(2, 1))."""


def expect(subject: Any, *, min_n: int | None = None,
           name: str | None = None) -> "Expectation | ExactExpectation":
    """Start stating a finding about `subject`; chain the expectations it must meet.

    Example::

        expect(est).ci_excludes(0).positive()            # an Estimate: an effect or a bound
        expect(est, min_n=50).positive()                 # the claim's own minimum of examples
        expect(recovery, name="recovery").equals(1.0, tol=1e-6)   # values computed exactly

    `subject` is an `Estimate` (returns an `Expectation`) or the exactly computed values of an
    exact finding, a number or an array (a torch tensor too; returns an `ExactExpectation`,
    whose one expectation is `equals`). `min_n` (an integer >= 2) is the fewest examples (or
    values) the claim accepts; without it a bootstrap estimate needs `MIN_BOOTSTRAP_N`. `name`
    says what was measured (the values' statistic in the report; for an `Estimate` it replaces
    the statistic's name).
    """
    if min_n is not None:
        min_n = _check_min_n(min_n)
    if name is not None and not (isinstance(name, str) and name.strip()):
        raise TypeError(
            f"`name` must be a non-empty string saying what was measured, got "
            f"{type(name).__name__} {_short_repr(name)}; e.g. expect(recovery, name=\"recovery\")"
        )
    if isinstance(subject, Estimate):
        if name is not None:
            subject = subject.with_context(statistic=name)
        return Expectation(subject, min_n=min_n)
    return ExactExpectation(_exact_values(subject), name=name or "", min_n=min_n)


def _check_min_n(min_n: Any) -> int:
    if isinstance(min_n, numbers.Integral) and not isinstance(min_n, bool) and min_n >= 2:
        return int(min_n)
    raise ExpectationError(
        f"`min_n` must be an integer >= 2 (the fewest examples the claim accepts), got "
        f"{_short_repr(min_n)}; e.g. expect(est, min_n=30)"
    )


def _exact_values(subject: Any) -> np.ndarray:
    """`subject` as a float64 array (a number as a 0-d array), or a TypeError saying what expect takes."""
    why = (
        f"expect() takes an Estimate (a statistic from harness.stats, with its CI) or the exactly "
        f"computed values of an exact finding (a number or an array), got "
        f"{type(subject).__name__} {_short_repr(subject)}; compute an Estimate with a statistic "
        "from harness.stats (e.g. a bootstrap mean or slope) so the finding carries its confidence "
        "interval, or pass the numbers and state them with .equals(expected, tol=...)"
    )
    if subject is None or isinstance(subject, (bool, np.bool_, str, bytes, dict)):
        raise TypeError(why)
    if hasattr(subject, "detach") and hasattr(subject, "cpu"):   # a torch tensor, on any device
        subject = subject.detach().cpu().numpy()
    try:
        values = np.array(subject, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(why) from None
    if np.asarray(subject).dtype.kind not in "iuf":
        raise TypeError(why)
    return values


class Expectation:
    """The expectations one `Estimate` can be held to; each method returns `self` to chain.

    `min_n` is the claim's own minimum of examples (None: `MIN_BOOTSTRAP_N` for a bootstrap
    estimate, no minimum for another).
    """

    __slots__ = ("estimate", "min_n", "_levels")

    def __init__(self, estimate: Estimate, *, min_n: int | None = None) -> None:
        self.estimate = estimate
        self.min_n = min_n
        self._levels: dict[float, Estimate] = {}

    def __repr__(self) -> str:
        return f"expect({self.estimate!r})"

    def _judged(self, *, effect: bool) -> Estimate:
        """The estimate at the level this expectation is judged at (see `_family_level`),
        recomputed once per level for a chain of expectations."""
        est = self.estimate
        level = _family_level(est, effect=effect)
        if level not in self._levels:
            self._levels[level] = est.at_level(level)
        return self._levels[level]

    def ci_excludes(self, value: float = 0.0) -> "Expectation":
        """Held iff `value` lies outside the CI (ci_high < value or ci_low > value)."""
        __tracebackhide__ = True
        v = _real("value", value, "ci_excludes(0)")
        est = self._judged(effect=True)
        held = est.ci_low > v or est.ci_high < v
        _judge(est, f"ci_excludes({_num(v)})", f"to exclude {_num(v)}", held, against=(v,),
               effect=True, min_n=self.min_n)
        return self

    def ci_contains(self, value: float) -> "Expectation":
        """Held iff `value` lies inside the CI (ci_low <= value <= ci_high): the estimate
        recovers a known truth. Example: ``expect(slope).ci_contains(exact_derivative)``."""
        __tracebackhide__ = True
        v = _real("value", value, "ci_contains(5.5)")
        est = self._judged(effect=False)
        held = est.ci_low <= v <= est.ci_high
        _judge(est, f"ci_contains({_num(v)})", f"to contain {_num(v)}", held, against=(v,),
               effect=False, min_n=self.min_n)
        return self

    def positive(self) -> "Expectation":
        """Held iff the whole CI lies above 0 (ci_low > 0)."""
        __tracebackhide__ = True
        est = self._judged(effect=True)
        _judge(est, "positive()", "to lie entirely above 0", est.ci_low > 0, against=(0.0,),
               effect=True, min_n=self.min_n)
        return self

    def negative(self) -> "Expectation":
        """Held iff the whole CI lies below 0 (ci_high < 0)."""
        __tracebackhide__ = True
        est = self._judged(effect=True)
        _judge(est, "negative()", "to lie entirely below 0", est.ci_high < 0, against=(0.0,),
               effect=True, min_n=self.min_n)
        return self

    def within(self, low: float, high: float) -> "Expectation":
        """Equivalence: held iff the whole CI lies inside [low, high].

        Example: ``expect(control_slope).within(-0.05, 0.05)``.
        """
        __tracebackhide__ = True
        lo = _real("low", low, "within(-0.05, 0.05)")
        hi = _real("high", high, "within(-0.05, 0.05)")
        if lo > hi:
            raise ExpectationError(
                f"within(low, high) needs low <= high, got low={_num(lo)}, high={_num(hi)}; "
                f"swap them: within({_num(hi)}, {_num(lo)})"
            )
        est = self._judged(effect=False)
        held = lo <= est.ci_low and est.ci_high <= hi
        _judge(est, f"within({_num(lo)}, {_num(hi)})",
               f"to lie entirely within [{_num(lo)}, {_num(hi)}]", held, against=(lo, hi),
               effect=False, min_n=self.min_n)
        return self

    def at_least(self, p: float) -> "Expectation":
        """Held iff the CI's lower bound is >= `p`."""
        __tracebackhide__ = True
        v = _real("p", p, "at_least(0.8)")
        est = self._judged(effect=True)
        _judge(est, f"at_least({_num(v)})", f"to lie at or above {_num(v)}", est.ci_low >= v, against=(v,),
               effect=True, min_n=self.min_n)
        return self

    def at_most(self, p: float) -> "Expectation":
        """Held iff the CI's upper bound is <= `p`."""
        __tracebackhide__ = True
        v = _real("p", p, "at_most(0.05)")
        est = self._judged(effect=False)
        _judge(est, f"at_most({_num(v)})", f"to lie at or below {_num(v)}", est.ci_high <= v, against=(v,),
               effect=False, min_n=self.min_n)
        return self

    def greater_than(self, other: "Estimate | float") -> "Expectation":
        """Held iff this CI lies entirely above `other`.

        `other` is an `Estimate` (the two CIs must not overlap: self.ci_low > other.ci_high)
        or a number (self.ci_low > other).
        """
        __tracebackhide__ = True
        est = self._judged(effect=True)
        if isinstance(other, Estimate):
            other = _at_family_level(other, effect=True)
            name = _name(other)
            predicate = f"to lie entirely above the {_pct(other.level)} CI of {name} (no overlap)"
            expectation = f"greater_than({_ci_label(other)})"
            problem = _control_problem(other, min_n=self.min_n)
            if problem is not None:
                _judge(est, expectation, predicate, False, effect=True, min_n=self.min_n,
                       extra=f"; but {name} is degenerate: {problem}")
                return self
            held = est.ci_low > other.ci_high
            _judge(est, expectation, predicate, held, against=(other.ci_high,), effect=True, min_n=self.min_n,
                   extra=f"; {name} measured {_measured(other, against=(est.ci_low,))}")
            return self
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            v = _real("other", other, "greater_than(0.5)")
            _judge(est, f"greater_than({_num(v)})", f"to lie entirely above {_num(v)}",
                   est.ci_low > v, against=(v,), effect=True, min_n=self.min_n)
            return self
        raise TypeError(
            f"greater_than() takes an Estimate or a number as `other`, got "
            f"{type(other).__name__} {_short_repr(other)}; pass the control's Estimate "
            "(e.g. greater_than(control)) or a threshold (e.g. greater_than(0.5))"
        )

    def exceeds(self, other: Estimate, *, factor: float) -> "Expectation":
        """Held iff this CI lies above `factor` times the largest magnitude `other`'s CI allows.

        ``expect(real).exceeds(control, factor=5)`` states "the real effect is at least five
        times any effect the control's CI admits": ci_low > factor * max(|ci_low|, |ci_high|)
        of the control. Unlike a ratio it stays defined when the control's CI straddles 0.
        """
        __tracebackhide__ = True
        if not isinstance(other, Estimate):
            raise TypeError(
                f"exceeds() takes the control's Estimate as `other`, got {type(other).__name__} "
                f"{_short_repr(other)}; for a fixed number use at_least()"
            )
        k = _real("factor", factor, "exceeds(control, factor=5)")
        if not k > 0:
            raise ExpectationError(f"`factor` must be positive, got {_num(k)}; e.g. exceeds(control, factor=5)")
        est, other = self._judged(effect=True), _at_family_level(other, effect=True)
        name = _name(other)
        bound = k * max(abs(other.ci_low), abs(other.ci_high))
        expectation = f"exceeds({_ci_label(other)}, factor={_num(k)})"
        predicate = f"to lie above {_num(k)} x the largest magnitude in the CI of {name} ({_num(bound)})"
        problem = _control_problem(other, min_n=self.min_n)
        if problem is not None:
            _judge(est, expectation, predicate, False, effect=True, min_n=self.min_n,
                   extra=f"; but {name} is degenerate: {problem}")
            return self
        _judge(est, expectation, predicate, est.ci_low > bound, against=(bound,), effect=True,
               min_n=self.min_n, extra=f"; {name} measured {_measured(other)}")
        return self

    def ratio_to(self, other: Estimate) -> "RatioExpectation":
        """The ratio self / other (from the two bootstrap distributions), to judge with
        `.below(r)` or `.above(r)`.

        Example: ``expect(encoder_effect).ratio_to(decoder_effect).below(0.2)``.
        """
        if not isinstance(other, Estimate):
            raise TypeError(
                f"ratio_to() takes an Estimate as `other`, got {type(other).__name__} "
                f"{_short_repr(other)}; pass the denominator's Estimate, e.g. "
                "ratio_to(decoder_effect)"
            )
        from harness.stats import ratio_of  # lazy: stats pulls in scipy

        num = self.estimate
        ratio = ratio_of(num, other)
        context = {}
        if not ratio.statistic:
            context["statistic"] = f"{num.statistic or 'estimate'} / {other.statistic or 'estimate'}"
        if ratio.site is None and num.site == other.site:
            context["site"] = num.site
        if ratio.fingerprint is None and num.fingerprint == other.fingerprint:
            context["fingerprint"] = num.fingerprint
        if context:
            ratio = ratio.with_context(**context)
        return RatioExpectation(ratio, prefix=f"ratio_to({_name(other)})", min_n=self.min_n)

    def equals(self, expected: float, *, tol: float) -> "Expectation":
        """Held iff the estimate's value lies within `tol` of `expected`: an exact finding.

        Only for an estimate computed exactly: its CI has zero width (`Estimate.zero_width`) and it
        rests on no resamples. An estimate with an interval is judged with ``ci_contains`` or
        ``within``, and a bootstrap whose every resample gave the same value is not exact: values
        computed exactly are passed to ``expect`` themselves (``expect(values).equals(1.0,
        tol=1e-6)``). Records evidence of kind ``"exact"``.
        """
        __tracebackhide__ = True
        tol = _check_tol(tol)
        expected = _real("expected", expected, "equals(1.0, tol=1e-6)")
        if not math.isfinite(expected):
            raise ExpectationError(f"`expected` must be finite, got {_num(expected)}; e.g. equals(1.0, tol=1e-6)")
        est = self.estimate
        if not est.degenerate and est.zero_width and est.bootstrap_distribution is not None:
            raise ExpectationError(
                f"equals() states an exact finding, but the zero-width {_pct(est.level)} CI of {_name(est)} "
                f"comes from resampling (every resample gave {_fmt(est.value)}), which does not make the "
                f"values exact; pass the values themselves: expect(values).equals({_num(expected)}, "
                f"tol={_num(tol)}), or judge a bound such as within(low, high)"
            )
        if not est.degenerate and not est.zero_width:
            raise ExpectationError(
                f"equals() states an exact finding, but {_name(est)} is an estimate with a "
                f"{_pct(est.level)} CI [{_fmt(est.ci_low)}, {_fmt(est.ci_high)}] of nonzero width; "
                f"judge an estimate with ci_contains({_num(expected)}) or within(low, high), or pass "
                f"the exactly computed values: expect(values).equals({_num(expected)}, tol={_num(tol)})"
            )
        expectation = f"equals({_num(expected)}, tol={_num(tol)})"
        deviation = abs(float(est.value) - expected)
        problem = None
        if est.degenerate:
            problem = _degenerate_reason(est)
        elif self.min_n is not None and est.n < self.min_n:
            problem = _too_few(est.n, est.unit or "examples", self.min_n, stated=True)
        held = problem is None and deviation <= tol
        ev = dataclasses.replace(
            Evidence.from_estimate(est, expectation=expectation, held=held), kind="exact",
            expected=expected, tolerance=tol, deviation=deviation if math.isfinite(deviation) else None,
            status="degenerate" if problem else "ok", reason=problem or "",
        )
        subject = f"{_name(est)}{f' at {est.site}' if est.site else ''}"
        _judge_exact(ev, f"expected {subject} to equal {_num(expected)} within {_num(tol)}",
                     problem=problem, measured=f"{_fmt(est.value, (expected,))}, {_fmt(deviation)} from "
                     f"{_num(expected)} (n={est.n}{', ' + _provenance(est) if _provenance(est) else ''})")
        return self


class RatioExpectation:
    """Expectations on a ratio estimate (made by `Expectation.ratio_to`); methods chain."""

    __slots__ = ("estimate", "min_n", "_prefix")

    def __init__(self, estimate: Estimate, *, prefix: str = "ratio", min_n: int | None = None) -> None:
        self.estimate = estimate
        self.min_n = min_n
        self._prefix = prefix

    def __repr__(self) -> str:
        return f"RatioExpectation({self.estimate!r})"

    def below(self, r: float) -> "RatioExpectation":
        """Held iff the ratio's CI lies entirely below `r` (ci_high < r)."""
        __tracebackhide__ = True
        v = _real("r", r, "below(0.2)")
        est = _at_family_level(self.estimate, effect=False)
        _judge(est, f"{self._prefix}.below({_num(v)})", f"to lie entirely below {_num(v)}", est.ci_high < v,
               against=(v,), effect=False, min_n=self.min_n)
        return self

    def above(self, r: float) -> "RatioExpectation":
        """Held iff the ratio's CI lies entirely above `r` (ci_low > r)."""
        __tracebackhide__ = True
        v = _real("r", r, "above(5)")
        est = _at_family_level(self.estimate, effect=True)
        _judge(est, f"{self._prefix}.above({_num(v)})", f"to lie entirely above {_num(v)}", est.ci_low > v,
               against=(v,), effect=True, min_n=self.min_n)
        return self


_CI_EXPECTATIONS = frozenset({"ci_excludes", "ci_contains", "positive", "negative", "within", "at_least",
                              "at_most", "greater_than", "exceeds", "ratio_to"})


class ExactExpectation:
    """The expectation values computed exactly can be held to: `equals` (chains).

    Made by ``expect(values)`` for a number or an array; the CI expectations of `Expectation`
    are refused with a TypeError that says how to judge an estimate instead.
    """

    __slots__ = ("values", "name", "min_n")

    def __init__(self, values: Any, *, name: str = "", min_n: int | None = None) -> None:
        self.values = np.asarray(values, dtype=np.float64)
        self.name = name
        self.min_n = min_n

    def __repr__(self) -> str:
        return f"expect({_short_repr(self.values)})"

    def __getattr__(self, attr: str) -> Any:
        if attr in _CI_EXPECTATIONS:
            raise TypeError(
                f"{attr}() judges the confidence interval of an Estimate, but expect() was given "
                f"{self._what()}, computed exactly with no interval; state an exact finding with "
                f".equals(expected, tol=...), or compute an Estimate with harness.stats (e.g. "
                f"stats.bootstrap_mean(values)) to judge an effect or a bound"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")

    def _what(self) -> str:
        """`recovery` (60 values), the 60 values, `x`, the value."""
        named = f"`{self.name}`" if self.name else ""
        if self.values.ndim == 0:
            return named or "the value"
        count = f"{self.values.size} value{'s' if self.values.size != 1 else ''}"
        return f"{named} ({count})" if named else f"the {count}"

    def equals(self, expected: Any, *, tol: float) -> "ExactExpectation":
        """Held iff every value lies within `tol` of `expected` (``|value - expected| <= tol``).

        Example::

            expect(recovery, name="recovery").equals(1.0, tol=1e-6)     # every pair restored
            expect(batched).equals(one_by_one, tol=1e-4)                # elementwise

        `expected` is one number or an array of the values' shape; `tol` the largest absolute
        deviation that still counts as equal (finite, >= 0). Records evidence of kind
        ``"exact"``: the value farthest from its expected value, that deviation, `tol` and the
        number of values. No values, or a NaN or inf among them, fail as degenerate.
        """
        __tracebackhide__ = True
        tol = _check_tol(tol)
        values = self.values
        target, label = _check_expected(expected, values.shape)
        n = int(values.size)
        expectation = f"equals({label}, tol={_num(tol)})"
        elementwise = f"the expected {label} elementwise" if target.ndim else label
        wanted = f"expected {self._what()} to equal {elementwise} within {_num(tol)}"
        problem = None
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if n == 0:
            problem = "no values to compare (an empty array)"
        elif bad:
            problem = f"{bad} of {n} values are NaN or inf; drop or fix them before comparing"
        elif self.min_n is not None and n < self.min_n:
            problem = _too_few(n, "values", self.min_n, stated=True)
        if problem is not None:
            first = float(target.flat[0]) if target.size else math.nan
            value, expected_at, deviation, where = math.nan, first, None, None
        else:
            deviations = np.abs(values - target)
            worst = int(np.argmax(deviations))
            value = float(values.flat[worst])
            expected_at = float(np.broadcast_to(target, values.shape).flat[worst])
            deviation = float(deviations.flat[worst])
            where = None if values.ndim == 0 else np.unravel_index(worst, values.shape)
        held = problem is None and deviation is not None and deviation <= tol
        finite = value if math.isfinite(value) else None
        ev = Evidence(
            statistic=self.name, value=finite, ci_low=finite, ci_high=finite, level=1.0, n=n,
            method="exact", unit="values", site=None, seed=None, fingerprint=None,
            expectation=expectation, held=held, status="degenerate" if problem else "ok",
            reason=problem or "", resamples=None, kind="exact",
            expected=expected_at if math.isfinite(expected_at) else None, tolerance=tol, deviation=deviation,
        )
        measured = ""
        if problem is None:
            at = "" if where is None else f" at index {where[0] if len(where) == 1 else tuple(int(i) for i in where)}"
            measured = f"{_fmt(value, (expected_at,))}{at}, {_fmt(deviation)} from {_num(expected_at)}"
            if values.ndim:
                over = int(np.count_nonzero(np.abs(values - target) > tol))
                measured += f" (the largest deviation; {over} of {n} values deviate by more than {_num(tol)})"
        _judge_exact(ev, wanted, problem=problem, measured=measured)
        return self


def _check_tol(tol: Any) -> float:
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise TypeError(
            f"`tol` must be a real number, got {type(tol).__name__} {_short_repr(tol)}; "
            "e.g. equals(1.0, tol=1e-6)"
        )
    t = float(tol)
    if not (math.isfinite(t) and t >= 0):
        raise ExpectationError(
            f"`tol` must be a finite number >= 0 (the largest absolute deviation that still counts "
            f"as equal), got {_num(t)}; e.g. equals(1.0, tol=1e-6)"
        )
    return t


def _check_expected(expected: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, str]:
    """`expected` as an array that broadcasts to `shape` (one number, or an array of `shape`),
    and how the expectation names it (``1`` or ``array of shape (60,)``)."""
    fix = "e.g. equals(1.0, tol=1e-6), or equals(reference, tol=1e-4) with one expected value per value"
    if isinstance(expected, numbers.Real) and not isinstance(expected, bool):
        e = float(expected)
        if not math.isfinite(e):
            raise ExpectationError(f"`expected` must be finite, got {_num(e)}; {fix}")
        return np.asarray(e), _num(e)
    if hasattr(expected, "detach") and hasattr(expected, "cpu"):
        expected = expected.detach().cpu().numpy()
    arr = None
    if not isinstance(expected, (bool, str, bytes, dict)) and expected is not None:
        try:
            arr = np.array(expected, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is not None and np.asarray(expected).dtype.kind not in "iuf":
            arr = None
    if arr is None:
        raise TypeError(
            f"`expected` must be a real number or an array of numbers, got "
            f"{type(expected).__name__} {_short_repr(expected)}; {fix}"
        )
    if arr.shape != tuple(shape):
        raise ExpectationError(
            f"`expected` must be one number or an array of the values' shape {tuple(shape)}, got an "
            f"array of shape {arr.shape}; {fix}"
        )
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise ExpectationError(f"`expected` must be finite, got {bad} NaN or inf of {arr.size}; {fix}")
    return arr, f"array of shape {arr.shape}"


# ---------------------------------------------------------------------------------------------
# Judging, recording and the failure message.


def _family_level(est: Estimate, *, effect: bool) -> float:
    """The level to judge `est` at: its own, or for an effect expectation in a corrected
    family of m claims the Bonferroni level ``1 - (1 - est.level) / m`` (`harness.verdicts.families`)."""
    family = current_family()
    return est.level if family is None else family.level_for(est.level, effect=effect)


def _at_family_level(est: Estimate, *, effect: bool) -> Estimate:
    return est.at_level(_family_level(est, effect=effect))


def _judge(
    est: Estimate,
    expectation: str,
    predicate: str,
    held: bool,
    *,
    effect: bool,
    min_n: int | None,
    against: tuple[float, ...] = (),
    extra: str = "",
) -> None:
    """Record the verdict on `est` and raise AssertionError when it did not hold. The judgement
    is degenerate (never held) for a degenerate estimate, too few examples, or an effect
    expectation on a zero-width CI (`_judgement_problem`)."""
    __tracebackhide__ = True
    problem = _judgement_problem(est, effect=effect, min_n=min_n)
    held = bool(held) and problem is None
    ev = Evidence.from_estimate(est, expectation=expectation, held=held)
    if problem is not None:
        ev = dataclasses.replace(ev, status="degenerate", reason=problem)
    record(ev)
    if held:
        return
    wanted = f"expected {_subject(est)} {predicate}"
    if problem is not None:
        prov = _provenance(est)
        raise AssertionError(
            f"{wanted}; the estimate is degenerate: {problem} "
            f"(n={est.n}" + (f", {prov})" if prov else ")")
        )
    raise AssertionError(f"{wanted}; measured {_measured(est, against=against)}{extra}")


def _judge_exact(ev: Evidence, wanted: str, *, problem: str | None, measured: str) -> None:
    """Record the evidence of an exact comparison and raise AssertionError when it did not hold."""
    __tracebackhide__ = True
    record(ev)
    if ev.held:
        return
    if problem is not None:
        raise AssertionError(f"{wanted}; {problem}")
    raise AssertionError(f"{wanted}; measured {measured}")


def _minimum(est: Estimate, min_n: int | None) -> tuple[int | None, bool]:
    """(the fewest examples `est` may rest on, whether the claim stated it): the claim's
    `min_n`, else `MIN_BOOTSTRAP_N` for a bootstrap estimate, else none."""
    if min_n is not None:
        return min_n, True
    if est.bootstrap_distribution is not None:
        return MIN_BOOTSTRAP_N, False
    return None, False


def _too_few(n: int, unit: str, floor: int, *, stated: bool) -> str:
    if stated:
        return (f"{n} {unit}, fewer than the claim's minimum of {floor} (expect(..., min_n={floor})); "
                "measure more, or state a lower minimum")
    return (f"{n} {unit}, fewer than the {floor} a bootstrap CI is judged on (a 95% bootstrap CI covers "
            "the truth about 80% of the time at 5, 90% at 10); measure more, or state the claim's own "
            "minimum: expect(est, min_n=...)")


def _degenerate_reason(est: Estimate) -> str:
    """A degenerate estimate's reason; for constant data, with the way to state an exact finding."""
    reason = est.reason or "no reason given"
    if reason.startswith("constant data"):
        reason += (f"; if every example gives {_fmt(est.value)} exactly, that is an exact finding: "
                   f"state it with expect(values).equals({_fmt(est.value)}, tol=...)")
    return reason


def _judgement_problem(est: Estimate, *, effect: bool, min_n: int | None) -> str | None:
    """Why `est` cannot carry this judgement (None when it can): degenerate, on fewer examples
    than the minimum, or (for an effect) a CI of zero width."""
    if est.degenerate:
        return _degenerate_reason(est)
    floor, stated = _minimum(est, min_n)
    if floor is not None and est.n < floor:
        return _too_few(est.n, est.unit or "examples", floor, stated=stated)
    if effect and est.zero_width:
        width = est.ci_high - est.ci_low
        return (
            f"its {_pct(est.level)} CI [{_fmt(est.ci_low)}, {_fmt(est.ci_high)}] has zero width "
            f"({_fmt(width)}, under {ZERO_WIDTH_RTOL:g} of its magnitude): every resample gave the "
            "same value up to rounding, which says nothing about an effect's uncertainty; state an "
            f"exact value with expect(values).equals({_fmt(est.value)}, tol=...), or judge a bound "
            "(within, at_most)"
        )
    return None


def _control_problem(other: Estimate, *, min_n: int | None) -> str | None:
    """Why a control (`greater_than`, `exceeds`) cannot be compared with: degenerate or on too
    few examples. A zero-width control is fine (a control that is exactly 0 is a good control)."""
    if other.degenerate:
        return other.reason or "no reason given"
    floor, stated = _minimum(other, min_n)
    if floor is not None and other.n < floor:
        return _too_few(other.n, other.unit or "examples", floor, stated=stated)
    return None


def _ci_label(est: Estimate) -> str:
    """'0.2781 [0.2707, 0.2837]': another estimate, compactly, for an expectation's label."""
    return f"{est.value:.4g} [{est.ci_low:.4g}, {est.ci_high:.4g}]"


def _subject(est: Estimate) -> str:
    where = f" at {est.site}" if est.site else ""
    return f"the {_pct(est.level)} CI of {_name(est)}{where}"


def _name(est: Estimate) -> str:
    return f"`{est.statistic}`" if est.statistic else "the estimate"


def _measured(est: Estimate, *, against: tuple[float, ...] = ()) -> str:
    """'0.012, 95% CI [-0.031, 0.055], n=500 (bootstrap BCa over examples, seed 1234)'."""
    prov = _provenance(est)
    return (
        f"{_fmt(est.value)}, {_pct(est.level)} CI [{_fmt(est.ci_low, against)}, "
        f"{_fmt(est.ci_high, against)}], n={est.n}" + (f" ({prov})" if prov else "")
    )


def _provenance(est: Estimate) -> str:
    """'bootstrap BCa over examples, seed 1234' (the parts that are known)."""
    text = " ".join(p for p in (est.method, f"over {est.unit}" if est.unit else "") if p)
    if est.seed is not None:
        text = f"{text}, seed {est.seed}" if text else f"seed {est.seed}"
    return text


def _pct(level: float) -> str:
    pct = level * 100 if level <= 1 else level
    return f"{pct:.4g}%"


def _num(x: float) -> str:
    """A threshold as the user wrote it: 0, 0.05, -0.1, 1e-06."""
    return f"{x:.6g}"


def _fmt(x: float | None, against: tuple[float, ...] = ()) -> str:
    """A measured number with 4 significant digits, or more where it would otherwise print
    the same as a threshold it differs from (0.79996 vs at_least(0.8))."""
    if x is None:
        return "None"
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    for digits in range(4, 18):
        s = f"{x:.{digits}g}"
        if all(x == a or float(s) != a for a in against):
            return s
    return repr(x)


def _real(arg: str, value: Any, example: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{arg}` must be a real number, got {type(value).__name__} {_short_repr(value)}; "
            f"e.g. {example}"
        )
    v = float(value)
    if math.isnan(v):
        raise ExpectationError(f"`{arg}` must be a number, got nan; e.g. {example}")
    return v


def _short_repr(x: Any, limit: int = 60) -> str:
    r = repr(x)
    return r if len(r) <= limit else r[: limit - 3] + "..."
