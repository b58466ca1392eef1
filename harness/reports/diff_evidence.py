"""The evidence of one claim in two runs: which entries pair up, and how far each effect moved.

Contents:

- `EvidenceDiff`: one evidence entry of a matched claim, in the baseline and in the new run.
- `_diff_evidence(base, new, tolerance)`: the entries of a claim in both runs, paired.

Evidence matching within a claim (a claim records one evidence entry per `expect(...)`):

1. entries with the same (statistic, site, expectation) are paired, k-th with k-th;
2. the rest with the same (statistic, site), in order;
3. the rest at the same position in the claim's evidence list.

Entries left over (a failed claim stops at its first failing expectation, so it often has
fewer) are listed as only in the baseline or only in the new run; they never regress.

Effect movement: ``shift = (new.value - base.value) / h`` with ``h = (base.ci_high -
base.ci_low) / 2``. If the values are equal, the shift is 0. If either value is missing
(null/NaN) the shift is NaN. If `h` is 0 the shift is +-inf (any change is infinitely many
half-widths, so it moves); if `h` is missing or not finite the shift is NaN. A NaN shift never
counts as moved; `shift_note` says why it is not a number. `overlap` is whether the two CIs
share a point (None when a bound is missing).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.verdicts.evidence import Evidence

__all__ = [
    "EvidenceDiff",
]


@dataclass(frozen=True)
class EvidenceDiff:
    """One evidence entry of a matched claim, in the baseline and in the new run.

    `base` or `new` is None for an entry found in only one of the runs (then the numbers are
    NaN / None and `moved` is False). `match` says how the pair was made:
    ``"statistic+expectation"``, ``"statistic"``, ``"position"`` or ``"unmatched"``.
    """

    index_base: int | None
    index_new: int | None
    base: Evidence | None
    new: Evidence | None
    match: str
    shift: float
    shift_note: str
    overlap: bool | None
    moved: bool

    @property
    def statistic(self) -> str:
        ev = self.base if self.base is not None else self.new
        return ev.statistic if ev is not None else ""

    @property
    def verdict_changed(self) -> bool:
        return self.base is not None and self.new is not None and self.base.held != self.new.held


def _match(base: Sequence[Evidence], new: Sequence[Evidence]) -> list[tuple[int | None, int | None, str]]:
    """Pairs of indices (base, new) and how each was matched; see the module docstring."""
    pairs: list[tuple[int | None, int | None, str]] = []
    free_b = list(range(len(base)))
    free_n = list(range(len(new)))

    def by_key(key, how: str) -> None:
        queues: dict[object, list[int]] = defaultdict(list)
        for j in free_n:
            queues[key(new[j])].append(j)
        for i in list(free_b):
            q = queues.get(key(base[i]))
            if q:
                j = q.pop(0)
                pairs.append((i, j, how))
                free_b.remove(i)
                free_n.remove(j)

    by_key(lambda e: (e.statistic, e.site, e.expectation), "statistic+expectation")
    by_key(lambda e: (e.statistic, e.site), "statistic")
    for i in list(free_b):
        if i in free_n:
            pairs.append((i, i, "position"))
            free_b.remove(i)
            free_n.remove(i)
    pairs.extend((i, None, "unmatched") for i in free_b)
    pairs.extend((None, j, "unmatched") for j in free_n)
    order = lambda p: (p[0] if p[0] is not None else math.inf, p[1] if p[1] is not None else -1)
    return sorted(pairs, key=order)


def _diff_evidence(base: Sequence[Evidence], new: Sequence[Evidence], tol: float) -> tuple[EvidenceDiff, ...]:
    out = []
    for i, j, how in _match(base, new):
        b = base[i] if i is not None else None
        n = new[j] if j is not None else None
        if b is None or n is None:
            note = "only in the baseline" if n is None else "only in the new run"
            out.append(EvidenceDiff(i, j, b, n, how, math.nan, note, None, False))
            continue
        shift, note = _shift(b, n)
        out.append(EvidenceDiff(i, j, b, n, how, shift, note, _overlap(b, n), abs(shift) > tol))
    return tuple(out)


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _shift(b: Evidence, n: Evidence) -> tuple[float, str]:
    """(new - base) / baseline half-width, and a note when it is not a plain number."""
    if not _finite(b.value) or not _finite(n.value):
        which = " and ".join(w for w, e in (("baseline", b), ("new run", n)) if not _finite(e.value))
        return math.nan, f"no value in the {which}"
    delta = n.value - b.value  # type: ignore[operator]
    if delta == 0:
        return 0.0, ""
    if not _finite(b.ci_low) or not _finite(b.ci_high):
        return math.nan, "the baseline has no CI"
    half = (b.ci_high - b.ci_low) / 2  # type: ignore[operator]
    if half < 0:
        return math.nan, "the baseline CI is inverted"
    if half == 0:
        return math.copysign(math.inf, delta), "the baseline CI has zero width"
    return delta / half, ""


def _overlap(b: Evidence, n: Evidence) -> bool | None:
    bounds = (b.ci_low, b.ci_high, n.ci_low, n.ci_high)
    if not all(_finite(x) for x in bounds):
        return None
    return n.ci_low <= b.ci_high and b.ci_low <= n.ci_high  # type: ignore[operator]


def _numbers(ev: Evidence | None) -> tuple:
    if ev is None:
        return ()
    return (ev.statistic, ev.site, ev.value, ev.ci_low, ev.ci_high, ev.n)


def _distinct(items: Iterable[EvidenceDiff]) -> list[EvidenceDiff]:
    """One entry per distinct (baseline numbers, new numbers)."""
    seen: set[tuple] = set()
    out = []
    for e in items:
        key = (_numbers(e.base), _numbers(e.new))
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out
