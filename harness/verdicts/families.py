"""Families of claims and the multiple-comparison correction their effect claims are judged with.

A *family* is the set of claims judged side by side for one finding: the parametrizations of
one claim function, or every claim whose ``claim`` marker names the same ``family=``. With m
effect claims each judged at 95%, about 1 - 0.95**m of null families would pass at least one
(40% at m = 10); the family-wise error rate is held at 5% by judging each effect claim of a
family of m at the Bonferroni level ``1 - (1 - level) / m`` (99.5% for m = 10). Why Bonferroni
and not Holm: see ``reports/README.md`` (a claim's verdict must not depend on its siblings).

    Family                  name, size, correction; `level_for` gives the level to judge at
    judging(family)         the context the plugin opens around a claim's call
    current_family()        the family of the running claim, or None (a notebook, a script)
    expectation_kind(text)  "effect" or "bound" for an expectation such as ``"positive()"``
    claim_correction(...)   the rule a claim was judged by, and the level, for its report row

Effect expectations state that an effect exists (``ci_excludes``, ``positive``, ``negative``,
``at_least``, ``greater_than``, ``exceeds``, ``ratio_to(...).above``); they are corrected.
Bound expectations state that something stays inside a bound (``within``, ``at_most``,
``ratio_to(...).below``) or recovers a known value (``ci_contains``): a family of them is a
finding only when every member holds (an intersection-union test, e.g. "every control stays
near zero"), which each member at its own level already guarantees, so they are not corrected.

Pure Python (the plugin imports this at load).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from harness.errors import StatsError

__all__ = [
    "CORRECTIONS",
    "EFFECT_EXPECTATIONS",
    "BOUND_EXPECTATIONS",
    "Family",
    "judging",
    "current_family",
    "expectation_kind",
    "claim_correction",
]

CORRECTIONS = ("bonferroni", "none")
EFFECT_EXPECTATIONS = frozenset({"ci_excludes", "positive", "negative", "at_least", "greater_than", "exceeds",
                                 "above"})
BOUND_EXPECTATIONS = frozenset({"within", "at_most", "below", "ci_contains"})


@dataclass(frozen=True)
class Family:
    """A family of claims: its `name` (the claim function's id, or the ``family=`` given on
    the marker), its `size` m (claims collected in it, whatever ``-k`` selects, so a slice is
    judged as the full run) and the `correction` its effect claims get.

    Example::

        fam = Family("claims/tacgen/test_steering.py::test_steering", size=2, correction="bonferroni")
        fam.level_for(0.95, effect=True)    # 0.975
        fam.level_for(0.95, effect=False)   # 0.95: bounds are not corrected
    """

    name: str
    size: int
    correction: str = "bonferroni"

    def __post_init__(self) -> None:
        if self.correction not in CORRECTIONS:
            raise StatsError(f"`correction` must be one of {list(CORRECTIONS)}, got {self.correction!r}; "
                             "e.g. Family(name, size=2, correction='bonferroni')")
        if not (isinstance(self.size, int) and self.size >= 1):
            raise StatsError(f"`size` must be a positive integer (the claims in the family), got {self.size!r}")

    @property
    def corrected(self) -> bool:
        """Whether effect claims of this family are judged at a corrected level."""
        return self.correction != "none" and self.size > 1

    def level_for(self, level: float, *, effect: bool) -> float:
        """The confidence level to judge an estimate computed at `level` (e.g. 0.95) at:
        ``1 - (1 - level) / size`` for an effect expectation of a corrected family, else `level`."""
        if effect and self.corrected:
            return 1.0 - (1.0 - level) / self.size
        return level


_CURRENT: contextvars.ContextVar[Family | None] = contextvars.ContextVar("harness_claim_family", default=None)


@contextlib.contextmanager
def judging(family: Family | None) -> Iterator[Family | None]:
    """Judge the expectations made inside the block as members of `family` (None: uncorrected)."""
    token = _CURRENT.set(family)
    try:
        yield family
    finally:
        _CURRENT.reset(token)


def current_family() -> Family | None:
    """The family of the claim being judged, or None outside a claim."""
    return _CURRENT.get()


def expectation_kind(expectation: str) -> str:
    """``"effect"`` or ``"bound"`` for an expectation as evidence records it.

    Example: ``expectation_kind("ratio_to(`x`).below(0.2)")`` is ``"bound"``;
    ``expectation_kind("at_least(0.5)")`` is ``"effect"``. An expectation this module does not
    know (evidence a user recorded by hand) is ``"other"`` and is not corrected.
    """
    head = expectation.split("(", 1)[0]
    if head == "ratio_to":  # ratio_to(`name`).below(r): the method after the closing ")."
        head = expectation.rsplit(").", 1)[-1].split("(", 1)[0]
    if head in EFFECT_EXPECTATIONS:
        return "effect"
    if head in BOUND_EXPECTATIONS:
        return "bound"
    return "other"


def claim_correction(family: Family | None, evidence: Iterable[Any]) -> tuple[str, float | None]:
    """(rule, level) a claim was judged by, from its family and its evidence records.

    rule is ``"bonferroni"`` when effect evidence was judged at the corrected level,
    ``"none (intersection-union)"`` when a corrected family's claim held only bounds,
    ``"none (single claim)"`` for a family of one and ``"none"`` with the correction off.
    level is the lowest confidence level among its evidence (None without evidence).
    """
    records = list(evidence)
    levels = [float(r.level) for r in records]
    level = min(levels) if levels else None
    if family is None or family.correction == "none":
        return "none", level
    if family.size == 1:
        return "none (single claim)", level
    if any(expectation_kind(r.expectation) == "effect" for r in records):
        effect_levels = [float(r.level) for r in records if expectation_kind(r.expectation) == "effect"]
        return family.correction, max(effect_levels)
    return "none (intersection-union)", level
