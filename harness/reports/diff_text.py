"""A report diff as plain text: `render_diff(diff, width=120)`, regressions first.

The diff itself (`ReportDiff`) is computed by `harness.reports.diff`.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable

from harness.verdicts.evidence import Evidence
from harness.reports.diff import ClaimDiff, DiffError, ReportDiff, _short
from harness.reports.diff_evidence import EvidenceDiff, _numbers
from harness.reports.formatting import _shorten, format_ci, format_number

__all__ = [
    "render_diff",
]


def _est(ev: Evidence) -> str:
    return f"{format_number(ev.value)} {format_ci(ev)}"


def _shift_text(e: EvidenceDiff) -> str:
    """How far the value moved: ``shift +0.50 half-widths``, or for a zero-width baseline CI
    or an exact comparison ``change -0.015 (the baseline CI has zero width; absolute tolerance
    3.92e-06)``."""
    if e.atol is not None and not math.isnan(e.delta):
        text = f"change {e.delta:+.4g} ({e.shift_note}; absolute tolerance {e.atol:.3g})"
    elif math.isnan(e.shift):
        text = f"shift n/a ({e.shift_note})"
    elif math.isinf(e.shift):
        text = f"shift {'+' if e.shift > 0 else '-'}inf half-widths ({e.shift_note})"
    else:
        text = f"shift {e.shift:+.2f} half-widths"
    if e.overlap is not None:
        text += ", CIs overlap" if e.overlap else ", CIs disjoint"
    if e.moved:
        text += " [MOVED]"
    return text


def _evidence_lines(c: ClaimDiff, *, only: Callable[[EvidenceDiff], bool] | None = None) -> list[str]:
    """One line per distinct estimate pair; expectations judged on it are listed with their
    verdicts in both runs."""
    groups: dict[tuple, list[EvidenceDiff]] = {}
    for e in c.evidence:
        if only is not None and not only(e):
            continue
        groups.setdefault((_numbers(e.base), _numbers(e.new)), []).append(e)
    lines = []
    for items in groups.values():
        e = items[0]
        ev = e.base if e.base is not None else e.new
        stat = ev.statistic or "estimate"  # type: ignore[union-attr]
        if ev.site and ev.site not in stat:  # type: ignore[union-attr]
            stat += f" @ {ev.site}"  # type: ignore[union-attr]
        verdicts = "; ".join(_verdict(x) for x in items)
        if e.base is None:
            lines.append(f"{stat}: only in the new run: {_est(e.new)}  ({verdicts})")  # type: ignore[arg-type]
        elif e.new is None:
            lines.append(f"{stat}: {_est(e.base)} -> not measured  ({verdicts})")
        else:
            lines.append(f"{stat}: {_est(e.base)} -> {_est(e.new)}  {_shift_text(e)}  ({verdicts})")
    return lines


def _verdict(e: EvidenceDiff) -> str:
    def word(ev: Evidence | None) -> str:
        if ev is None:
            return "-"
        return "held" if ev.held else ("degenerate" if ev.status != "ok" else "NOT HELD")

    exp = (e.base or e.new).expectation  # type: ignore[union-attr]
    a, b = word(e.base), word(e.new)
    return f"{exp} {a}" if a == b else f"{exp} {a} -> {b}"


def render_diff(diff: ReportDiff, *, width: int = 120) -> str:
    """The diff as plain text, at most `width` characters per line where words allow.

    Sections, each only when not empty: a summary line; regressions (with values, CIs, shift
    and verdicts); moved effects of claims that did not regress; effects that could not be
    compared (NaN shift); fixed claims; other outcome changes; claims added; claims removed;
    provenance changes.
    """
    if width < 40:
        raise DiffError(f"`width` must be at least 40 characters, got {width!r}")
    out: list[str] = []

    def emit(text: str, indent: int = 0) -> None:
        pad = " " * indent
        wrapped = textwrap.wrap(text, width=width, initial_indent=pad, subsequent_indent=pad + "    ",
                                break_long_words=False, break_on_hyphens=False)
        out.extend(wrapped or [""])

    moved = diff.moved
    verdict = "REGRESSED" if diff.regressed else "ok"
    emit(
        f"claims diff: {len(diff.claims)} matched, {len(diff.regressions)} regressed, "
        f"{len(diff.fixed)} fixed, {len(moved)} moved (tolerance {diff.tolerance:g} CI "
        f"half-widths), {len(diff.added)} added, {len(diff.removed)} removed: {verdict}"
    )
    if diff.base_label or diff.new_label:
        emit(f"base: {diff.base_label or '-'}", 2)
        emit(f"new:  {diff.new_label or '-'}", 2)

    def claim_block(c: ClaimDiff, *, only_moved: bool = False) -> None:
        emit(f"{c.nodeid}: {c.base_outcome} -> {c.new_outcome}", 2)
        for line in _evidence_lines(c, only=(lambda e: e.moved) if only_moved else None):
            emit(line, 6)
        if not only_moved and c.new_message and c.new_outcome != "passed":
            emit(f"message: {_shorten(c.new_message, 300)}", 6)

    if diff.regressions:
        out.append("")
        emit("regressed (held -> failed):")
        for c in diff.regressions:
            claim_block(c)
    other_moved = [c for c in diff.claims if c.change != "regressed" and c.moved]
    if other_moved:
        out.append("")
        emit(f"moved effects (|shift| > {diff.tolerance:g} half-widths of the baseline CI):")
        for c in other_moved:
            claim_block(c, only_moved=True)
    uncompared = [c for c in diff.claims if c.change != "regressed" and c.uncompared]
    if uncompared:
        out.append("")
        emit("effects that could not be compared (no value or no baseline CI):")
        for c in uncompared:
            emit(f"{c.nodeid}: {c.base_outcome} -> {c.new_outcome}", 2)
            for line in _evidence_lines(c, only=lambda e, c=c: e in c.uncompared):
                emit(line, 6)
    if diff.fixed:
        out.append("")
        emit("fixed (failed -> passed):")
        for c in diff.fixed:
            claim_block(c)
    if diff.changed:
        out.append("")
        emit("other outcome changes:")
        for c in diff.changed:
            emit(f"{c.nodeid}: {c.base_outcome} -> {c.new_outcome}", 2)
    if diff.added:
        out.append("")
        emit(f"added ({len(diff.added)}):")
        for n in diff.added:
            emit(n, 2)
    if diff.removed:
        out.append("")
        emit(f"removed ({len(diff.removed)}):")
        for n in diff.removed:
            emit(n, 2)
    if diff.provenance:
        out.append("")
        emit("provenance:")
        for p in diff.provenance:
            label = p.name if p.kind in ("run",) else f"{p.kind} {p.name}"
            if p.kind == "version":
                emit(f"version {p.name}: {p.base or '(none)'} -> {p.new or '(none)'}", 2)
            elif p.field == "added":
                emit(f"{label}: added ({p.new})", 2)
            elif p.field == "removed":
                emit(f"{label}: removed (was {p.base})", 2)
            else:
                emit(f"{label}: {p.field} {_short(p.base, p.field)} -> {_short(p.new, p.field)}", 2)
    return "\n".join(out) + "\n"
