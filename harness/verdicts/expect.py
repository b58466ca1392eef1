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

from harness.stats.estimate import Estimate
from harness.verdicts.evidence import Evidence
from harness.verdicts.exact import ExactExpectation, exact_values
from harness.verdicts.judging import (  # noqa: F401 (ExpectationError, MIN_BOOTSTRAP_N: re-exported)
    _at_family_level, _check_min_n, _check_tol, _ci_label, _control_problem, _degenerate_reason, _family_level, _fmt, _judge, _judge_exact, _measured, _name, _num, _pct, _provenance, _real, _short_repr, _too_few, ExpectationError, MIN_BOOTSTRAP_N,
)

__all__ = ["expect", "Expectation", "RatioExpectation", "ExactExpectation", "ExpectationError",
           "MIN_BOOTSTRAP_N"]


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
    return ExactExpectation(exact_values(subject), name=name or "", min_n=min_n)



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

