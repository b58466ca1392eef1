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

Effect movement, by what the baseline measured:

- an estimate with a CI of positive width: ``shift = (new.value - base.value) / h`` with ``h =
  (base.ci_high - base.ci_low) / 2``; it moved when ``|shift| > tolerance`` (in half-widths);
- an estimate whose CI has zero width (`harness.verdicts.evidence.zero_width`: narrower than
  1e-6 of its magnitude), where half-widths would turn rounding into millions: the change
  ``delta = new.value - base.value`` is compared with an absolute tolerance, `ZERO_WIDTH_ATOL`
  scaled by the value's magnitude (``1e-6 * max(1, |base.value|)``, the rounding of float32
  arithmetic); it moved when ``|delta|`` exceeds it;
- an exact comparison (kind ``"exact"``): ``delta`` is compared with the baseline's own
  tolerance (``equals(..., tol=...)``); it moved when ``|delta| > tol``, and an exact
  comparison that held and now does not is moved too (a regression) whatever the values.

`atol` is the absolute tolerance of the last two (None when compared in half-widths), and
`shift` is NaN for them. If the values are equal nothing moved. If either value is missing
(null/NaN), or the baseline has no CI, the change is not a number and never counts as moved;
`shift_note` says why. `overlap` is whether the two CIs share a point (None when a bound is
missing, or either side is an exact comparison).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.verdicts.evidence import ZERO_WIDTH_RTOL, Evidence, zero_width

__all__ = [
    "EvidenceDiff",
    "ZERO_WIDTH_ATOL",
]

# How far a value measured with a zero-width CI may move, per unit of its magnitude (at least
# 1): the same rounding scale that makes a CI zero-width.
ZERO_WIDTH_ATOL = ZERO_WIDTH_RTOL


@dataclass(frozen=True)
class EvidenceDiff:
    """One evidence entry of a matched claim, in the baseline and in the new run.

    `base` or `new` is None for an entry found in only one of the runs (then the numbers are
    NaN / None and `moved` is False). `match` says how the pair was made:
    ``"statistic+expectation"``, ``"statistic"``, ``"position"`` or ``"unmatched"``. `shift` is
    the move in half-widths of the baseline CI; `delta` the change of value; `atol` the absolute
    tolerance `delta` was compared with, for a baseline of zero width or an exact comparison
    (None when compared in half-widths; see the module docstring).
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
    delta: float = math.nan
    atol: float | None = None

    @property
    def compared(self) -> bool:
        """Whether the two values were compared (in half-widths or against `atol`)."""
        return self.atol is not None or not math.isnan(self.shift)

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
        delta = n.value - b.value if _finite(b.value) and _finite(n.value) else math.nan  # type: ignore[operator]
        atol = _absolute_tolerance(b)
        if atol is None:
            moved = abs(shift) > tol
        else:
            if not math.isnan(delta):
                note = "an exact comparison" if b.exact else "the baseline CI has zero width"
            shift = math.nan
            moved = abs(delta) > atol or (b.exact and b.held and not n.held)
        overlap = None if b.exact or n.exact else _overlap(b, n)   # an exact value has no interval
        out.append(EvidenceDiff(i, j, b, n, how, shift, note, overlap, moved, delta, atol))
    return tuple(out)


def _absolute_tolerance(b: Evidence) -> float | None:
    """The absolute tolerance a change from baseline `b` is judged by: its own for an exact
    comparison, `ZERO_WIDTH_ATOL` x max(1, |value|) for a zero-width CI; None (half-widths) else."""
    if b.exact:
        return float(b.tolerance) if b.tolerance is not None and math.isfinite(b.tolerance) else 0.0
    if zero_width(b.ci_low, b.ci_high):
        scale = abs(b.value) if _finite(b.value) else 0.0  # type: ignore[arg-type]
        return ZERO_WIDTH_ATOL * max(1.0, scale)
    return None


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
    if half == 0:   # compared with an absolute tolerance instead (`_absolute_tolerance`)
        return math.nan, "the baseline CI has zero width"
    return delta / half, ""


def _overlap(b: Evidence, n: Evidence) -> bool | None:
    bounds = (b.ci_low, b.ci_high, n.ci_low, n.ci_high)
    if not all(_finite(x) for x in bounds):
        return None
    return n.ci_low <= b.ci_high and b.ci_low <= n.ci_high  # type: ignore[operator]


def _numbers(ev: Evidence | None) -> tuple:
    if ev is None:
        return ()
    return (ev.statistic, ev.site, ev.value, ev.ci_low, ev.ci_high, ev.n, ev.kind, ev.deviation)


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
