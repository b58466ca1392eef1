"""Exact findings: ``expect(values).equals(expected, tol=...)`` for values computed exactly (a
number, an array, a torch tensor), recorded as evidence of kind ``"exact"``.

Contents: `ExactExpectation` (equals; the CI expectations of `Expectation` are refused with a
TypeError saying how to judge an estimate instead) and `exact_values` (the subject as a float64
array, checked). Made by `harness.verdicts.expect.expect`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from harness.verdicts.evidence import Evidence
from harness.verdicts.judging import _check_tol, _fmt, _judge_exact, _num, _short_repr, _too_few, ExpectationError

__all__ = ["ExactExpectation", "exact_values"]

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



def exact_values(subject: Any) -> np.ndarray:
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
