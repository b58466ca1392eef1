"""`expect(estimate)`: state a finding about an `Estimate`, judge it, and record it as evidence.

Example::

    expect(curve.slope(near=0)).ci_excludes(0).positive()
    expect(control.slope(near=0)).within(-0.05, 0.05)
    expect(effect).greater_than(control)
    expect(encoder_effect).ratio_to(decoder_effect).below(0.2)

Every call judges the estimate's confidence interval, records an `Evidence` on the running
test (through `harness.verdicts.evidence.record`; a no-op outside pytest) and, when the finding does not
hold, raises `AssertionError` saying what was expected and what was measured:

    expected the 95% CI of `slope near 0` at encoder.12.resid_post to exclude 0; measured
    0.012, 95% CI [-0.031, 0.055], n=500 (bootstrap BCa over examples, seed 1234)

A degenerate estimate fails every expectation, with its reason in the message.

>>> from harness import expect, stats
>>> est = stats.proportion(45, 50)                    # 0.9, Wilson 95% CI [0.7864, 0.9565]
>>> _ = expect(est).ci_excludes(0.5).at_least(0.7)    # held: returns the chain, quietly
>>> expect(est).at_least(0.85)
Traceback (most recent call last):
...
AssertionError: expected the 95% CI of `proportion` to lie at or above 0.85; measured 0.9, 95% CI [0.7864, ...

Contents: `expect`, `Expectation` (ci_excludes, ci_contains, positive, negative, within,
at_least, at_most, greater_than, ratio_to), `RatioExpectation` (below, above), `ExpectationError`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from harness.errors import HarnessError
from harness.verdicts.estimate import Estimate
from harness.verdicts.evidence import Evidence, record
from harness.verdicts.families import current_family

__all__ = ["expect", "Expectation", "RatioExpectation", "ExpectationError"]


class ExpectationError(HarnessError, ValueError):
    """An expectation asked for with arguments that cannot be judged (e.g. within(2, 1))."""


def expect(estimate: Estimate) -> "Expectation":
    """Start stating a finding about `estimate`; chain the expectations it must meet.

    Example::

        expect(est).ci_excludes(0).positive()
    """
    if not isinstance(estimate, Estimate):
        raise TypeError(
            f"expect() takes an Estimate, got {type(estimate).__name__} {_short_repr(estimate)}; "
            "compute one with a statistic from harness.stats (e.g. a bootstrap mean or slope) "
            "so the finding carries its confidence interval"
        )
    return Expectation(estimate)


class Expectation:
    """The expectations one `Estimate` can be held to; each method returns `self` to chain."""

    __slots__ = ("estimate", "_levels")

    def __init__(self, estimate: Estimate) -> None:
        self.estimate = estimate
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
        _judge(est, f"ci_excludes({_num(v)})", f"to exclude {_num(v)}", held, against=(v,))
        return self

    def ci_contains(self, value: float) -> "Expectation":
        """Held iff `value` lies inside the CI (ci_low <= value <= ci_high): the estimate
        recovers a known truth. Example: ``expect(slope).ci_contains(exact_derivative)``."""
        __tracebackhide__ = True
        v = _real("value", value, "ci_contains(5.5)")
        est = self._judged(effect=False)
        held = est.ci_low <= v <= est.ci_high
        _judge(est, f"ci_contains({_num(v)})", f"to contain {_num(v)}", held, against=(v,))
        return self

    def positive(self) -> "Expectation":
        """Held iff the whole CI lies above 0 (ci_low > 0)."""
        __tracebackhide__ = True
        est = self._judged(effect=True)
        _judge(est, "positive()", "to lie entirely above 0", est.ci_low > 0, against=(0.0,))
        return self

    def negative(self) -> "Expectation":
        """Held iff the whole CI lies below 0 (ci_high < 0)."""
        __tracebackhide__ = True
        est = self._judged(effect=True)
        _judge(est, "negative()", "to lie entirely below 0", est.ci_high < 0, against=(0.0,))
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
               f"to lie entirely within [{_num(lo)}, {_num(hi)}]", held, against=(lo, hi))
        return self

    def at_least(self, p: float) -> "Expectation":
        """Held iff the CI's lower bound is >= `p`."""
        __tracebackhide__ = True
        v = _real("p", p, "at_least(0.8)")
        est = self._judged(effect=True)
        _judge(est, f"at_least({_num(v)})", f"to lie at or above {_num(v)}", est.ci_low >= v, against=(v,))
        return self

    def at_most(self, p: float) -> "Expectation":
        """Held iff the CI's upper bound is <= `p`."""
        __tracebackhide__ = True
        v = _real("p", p, "at_most(0.05)")
        est = self._judged(effect=False)
        _judge(est, f"at_most({_num(v)})", f"to lie at or below {_num(v)}", est.ci_high <= v, against=(v,))
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
            if other.degenerate:
                _judge(est, expectation, predicate, False,
                       extra=f"; but {name} is degenerate: {other.reason or 'no reason given'}")
                return self
            held = est.ci_low > other.ci_high
            _judge(est, expectation, predicate, held, against=(other.ci_high,),
                   extra=f"; {name} measured {_measured(other, against=(est.ci_low,))}")
            return self
        if isinstance(other, numbers.Real) and not isinstance(other, bool):
            v = _real("other", other, "greater_than(0.5)")
            _judge(est, f"greater_than({_num(v)})", f"to lie entirely above {_num(v)}",
                   est.ci_low > v, against=(v,))
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
        if other.degenerate:
            _judge(est, expectation, predicate, False,
                   extra=f"; but {name} is degenerate: {other.reason or 'no reason given'}")
            return self
        _judge(est, expectation, predicate, est.ci_low > bound, against=(bound,),
               extra=f"; {name} measured {_measured(other)}")
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
        return RatioExpectation(ratio, prefix=f"ratio_to({_name(other)})")


class RatioExpectation:
    """Expectations on a ratio estimate (made by `Expectation.ratio_to`); methods chain."""

    __slots__ = ("estimate", "_prefix")

    def __init__(self, estimate: Estimate, *, prefix: str = "ratio") -> None:
        self.estimate = estimate
        self._prefix = prefix

    def __repr__(self) -> str:
        return f"RatioExpectation({self.estimate!r})"

    def below(self, r: float) -> "RatioExpectation":
        """Held iff the ratio's CI lies entirely below `r` (ci_high < r)."""
        __tracebackhide__ = True
        v = _real("r", r, "below(0.2)")
        est = _at_family_level(self.estimate, effect=False)
        _judge(est, f"{self._prefix}.below({_num(v)})", f"to lie entirely below {_num(v)}", est.ci_high < v,
               against=(v,))
        return self

    def above(self, r: float) -> "RatioExpectation":
        """Held iff the ratio's CI lies entirely above `r` (ci_low > r)."""
        __tracebackhide__ = True
        v = _real("r", r, "above(5)")
        est = _at_family_level(self.estimate, effect=True)
        _judge(est, f"{self._prefix}.above({_num(v)})", f"to lie entirely above {_num(v)}", est.ci_low > v,
               against=(v,))
        return self


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
    against: tuple[float, ...] = (),
    extra: str = "",
) -> None:
    """Record the verdict on `est` and raise AssertionError when it did not hold."""
    __tracebackhide__ = True
    held = bool(held) and not est.degenerate
    record(Evidence.from_estimate(est, expectation=expectation, held=held))
    if held:
        return
    wanted = f"expected {_subject(est)} {predicate}"
    if est.degenerate:
        prov = _provenance(est)
        raise AssertionError(
            f"{wanted}; the estimate is degenerate: {est.reason or 'no reason given'} "
            f"(n={est.n}" + (f", {prov})" if prov else ")")
        )
    raise AssertionError(f"{wanted}; measured {_measured(est, against=against)}{extra}")


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
