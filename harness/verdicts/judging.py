"""How `expect` judges an estimate and says what it found: the family's level, the minimum of
examples, degenerate and zero-width estimates, the verdict recorded as evidence and raised as an
`AssertionError`, and the numbers in its message.

Contents: `MIN_BOOTSTRAP_N`, `ExpectationError`; `_judge` (an estimate against a predicate) and
`_judge_exact` (an exact finding); `_judgement_problem` / `_control_problem` (why an estimate
cannot be judged); argument checks (`_check_min_n`, `_check_tol`, `_real`) and the message's
formatting (`_measured`, `_fmt`, `_num`, `_pct`, ...). The public surface is `harness.verdicts.expect`.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

from harness.errors import HarnessError
from harness.stats.estimate import Estimate
from harness.verdicts.evidence import ZERO_WIDTH_RTOL, Evidence, record
from harness.verdicts.families import current_family

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



def _check_min_n(min_n: Any) -> int:
    if isinstance(min_n, numbers.Integral) and not isinstance(min_n, bool) and min_n >= 2:
        return int(min_n)
    raise ExpectationError(
        f"`min_n` must be an integer >= 2 (the fewest examples the claim accepts), got "
        f"{_short_repr(min_n)}; e.g. expect(est, min_n=30)"
    )



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
