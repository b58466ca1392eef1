"""Compare two claims reports: what changed between a baseline run and a new one.

Contents:

- `diff_reports(base, new, tolerance=3.0)` -> `ReportDiff`: claims matched by node id, their
  verdict changes, how far each effect moved (in units of the baseline CI's half-width),
  claims added and removed, and provenance changes (models, data sets, versions, run).
- `diff_files(base_path, new_path, tolerance=3.0)`: the same, reading two ``report.json`` files.
- `render_diff(diff, width=120)`: plain text, regressions first.
- `check_tolerance(tolerance)`: the validation `--tolerance` gets.
- `write_baseline(report, path)`: write a report to any file name, atomically (for
  ``--claims-update-baseline``; `harness.reports.report.write_report` always names it ``report.json``).

A diff *regresses* (`ReportDiff.regressed`, `exit_status` 1) when a claim that passed now
failed or errored, or when any matched effect moved by more than `tolerance` half-widths.
Claims added or removed, claims fixed, other outcome changes (passed -> skipped) and
provenance changes are reported but do not by themselves regress.

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

import json
import math
import os
import textwrap
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.atomic import write_text_atomic
from harness.errors import HarnessError
from harness.verdicts.evidence import Evidence
from harness.reports.report import (
    format_ci,
    format_number,
    SUPPORTED_SCHEMA_VERSIONS,
    ClaimResult,
    Report,
    read_report,
    report_to_json,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "DiffError",
    "EvidenceDiff",
    "ClaimDiff",
    "ProvenanceChange",
    "ReportDiff",
    "check_tolerance",
    "diff_reports",
    "diff_files",
    "render_diff",
    "write_baseline",
]

DEFAULT_TOLERANCE = 3.0
HELD_OUTCOMES = frozenset({"passed"})
FAILED_OUTCOMES = frozenset({"failed", "error"})


class DiffError(HarnessError, ValueError):
    """Bad input to a diff (a tolerance that is not a positive number, an unreadable schema)."""


# ---------------------------------------------------------------------------------------------
# Data


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


@dataclass(frozen=True)
class ClaimDiff:
    """A claim found in both reports (matched by node id).

    `change` is ``"regressed"`` (passed -> failed/error), ``"fixed"`` (failed/error -> passed),
    ``"changed"`` (any other change of outcome, e.g. passed -> skipped) or ``"unchanged"``.
    """

    nodeid: str
    text: str
    base_outcome: str
    new_outcome: str
    change: str
    base_message: str
    new_message: str
    evidence: tuple[EvidenceDiff, ...]

    @property
    def moved(self) -> tuple[EvidenceDiff, ...]:
        """The evidence entries whose effect moved beyond the tolerance."""
        return tuple(e for e in self.evidence if e.moved)

    @property
    def uncompared(self) -> tuple[EvidenceDiff, ...]:
        """Matched entries whose values differ but whose shift is NaN (no value, no CI)."""
        return tuple(
            e for e in self.evidence
            if e.base is not None and e.new is not None and math.isnan(e.shift)
            and _numbers(e.base) != _numbers(e.new)
        )


@dataclass(frozen=True)
class ProvenanceChange:
    """One difference in how the runs were made.

    `kind` is ``"model"``, ``"dataset"``, ``"version"`` or ``"run"``; `name` the model or data
    set name, the package, or ``"run"``; `field` what changed (``"fingerprint"``,
    ``"content_hash"``, ``"version"``, ``"seed"``, ``"git commit"``, ...; ``"added"`` /
    ``"removed"`` for a model or data set in only one run). `base`/`new` are the values (None
    when absent).
    """

    kind: str
    name: str
    field: str
    base: str | None
    new: str | None


@dataclass(frozen=True)
class ReportDiff:
    """What changed between a baseline report and a new one."""

    tolerance: float
    claims: tuple[ClaimDiff, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    provenance: tuple[ProvenanceChange, ...]
    base_label: str | None = None
    new_label: str | None = None

    @property
    def regressions(self) -> tuple[ClaimDiff, ...]:
        return tuple(c for c in self.claims if c.change == "regressed")

    @property
    def fixed(self) -> tuple[ClaimDiff, ...]:
        return tuple(c for c in self.claims if c.change == "fixed")

    @property
    def changed(self) -> tuple[ClaimDiff, ...]:
        return tuple(c for c in self.claims if c.change == "changed")

    @property
    def moved(self) -> tuple[tuple[ClaimDiff, EvidenceDiff], ...]:
        """Moved effects, one per distinct estimate (an estimate judged by several
        expectations is recorded several times with the same numbers; it is counted once)."""
        out: list[tuple[ClaimDiff, EvidenceDiff]] = []
        for c in self.claims:
            out.extend((c, e) for e in _distinct(c.moved))
        return tuple(out)

    @property
    def regressed(self) -> bool:
        """True when a claim that passed now fails (or errors), or an effect moved."""
        return bool(self.regressions) or bool(self.moved)

    @property
    def exit_status(self) -> int:
        return 1 if self.regressed else 0


# ---------------------------------------------------------------------------------------------
# Computing


def check_tolerance(tolerance: float) -> float:
    """`tolerance` as a float, or a `DiffError` naming `--tolerance` unless finite and > 0."""
    try:
        value = float(tolerance)
    except (TypeError, ValueError):
        raise DiffError(
            f"`--tolerance` must be a positive number of baseline CI half-widths, got "
            f"{tolerance!r}; e.g. --tolerance 3"
        ) from None
    if isinstance(tolerance, bool) or not math.isfinite(value) or value <= 0:
        raise DiffError(
            f"`--tolerance` must be a positive, finite number of baseline CI half-widths, got "
            f"{tolerance!r}; e.g. --tolerance 3 (an effect that moves by more than 3 "
            "half-widths of the baseline's CI counts as a regression)"
        )
    return value


def diff_reports(
    base: Report,
    new: Report,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    base_label: str | None = None,
    new_label: str | None = None,
) -> ReportDiff:
    """Compare `new` against the baseline `base`.

    Example::

        diff = diff_reports(read_report("baseline.json"), read_report("reports/latest/report.json"))
        print(render_diff(diff))
        sys.exit(diff.exit_status)
    """
    tol = check_tolerance(tolerance)
    for which, rep in (("baseline", base), ("new", new)):
        if rep.schema_version not in SUPPORTED_SCHEMA_VERSIONS:
            raise DiffError(
                f"the {which} report has schema_version {rep.schema_version!r}; this harness "
                f"compares schema_version {' or '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}"
            )
    base_claims = _by_nodeid(base.claims, "baseline")
    new_claims = _by_nodeid(new.claims, "new")
    matched = [
        _diff_claim(base_claims[nodeid], new_claims[nodeid], tol)
        for nodeid in new_claims
        if nodeid in base_claims
    ]
    return ReportDiff(
        tolerance=tol,
        claims=tuple(matched),
        added=tuple(n for n in new_claims if n not in base_claims),
        removed=tuple(n for n in base_claims if n not in new_claims),
        provenance=_provenance(base, new),
        base_label=base_label,
        new_label=new_label,
    )


def diff_files(
    base_path: str | os.PathLike[str],
    new_path: str | os.PathLike[str],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ReportDiff:
    """`diff_reports` of two ``report.json`` files (read and validated with `read_report`)."""
    tol = check_tolerance(tolerance)  # before reading, so a bad option fails fast
    return diff_reports(
        read_report(base_path), read_report(new_path), tolerance=tol,
        base_label=str(base_path), new_label=str(new_path),
    )


def write_baseline(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write `report` as JSON to `path` (any file name) atomically, the same JSON as
    ``report.json``; return the path. The parent directory is created if needed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DiffError(f"cannot create the baseline's directory {str(path.parent)!r}: {exc}") from exc
    text = json.dumps(report_to_json(report), indent=2, allow_nan=False) + "\n"
    return write_text_atomic(path, text)


def _by_nodeid(claims: Iterable[ClaimResult], which: str) -> dict[str, ClaimResult]:
    out: dict[str, ClaimResult] = {}
    for c in claims:
        if c.nodeid in out:
            raise DiffError(
                f"the {which} report lists claim {c.nodeid!r} twice; claims are matched by node "
                "id, so each must appear once (re-run the study to write the report again)"
            )
        out[c.nodeid] = c
    return out


def _change(base: str, new: str) -> str:
    if base == new:
        return "unchanged"
    if base in HELD_OUTCOMES and new in FAILED_OUTCOMES:
        return "regressed"
    if base in FAILED_OUTCOMES and new in HELD_OUTCOMES:
        return "fixed"
    return "changed"


def _diff_claim(base: ClaimResult, new: ClaimResult, tol: float) -> ClaimDiff:
    return ClaimDiff(
        nodeid=base.nodeid,
        text=new.text,
        base_outcome=base.outcome,
        new_outcome=new.outcome,
        change=_change(base.outcome, new.outcome),
        base_message=base.message,
        new_message=new.message,
        evidence=_diff_evidence(base.evidence, new.evidence, tol),
    )


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


def _provenance(base: Report, new: Report) -> tuple[ProvenanceChange, ...]:
    out: list[ProvenanceChange] = []

    def records(kind: str, old: Sequence, cur: Sequence, fields: Sequence[str]) -> None:
        olds = {r.name: r for r in old}
        curs = {r.name: r for r in cur}
        for name, r in olds.items():
            if name not in curs:
                out.append(ProvenanceChange(kind, name, "removed", _describe(r, fields), None))
                continue
            for f in fields:
                a, b = getattr(r, f), getattr(curs[name], f)
                if a != b:
                    out.append(ProvenanceChange(kind, name, f, a, b))
        for name, r in curs.items():
            if name not in olds:
                out.append(ProvenanceChange(kind, name, "added", None, _describe(r, fields)))

    records("model", base.models, new.models, ("spec", "fingerprint", "device", "dtype"))
    records("dataset", base.datasets, new.datasets, ("path", "content_hash"))
    bv, nv = dict(base.run.versions), dict(new.run.versions)
    for pkg in [*bv, *(k for k in nv if k not in bv)]:
        if bv.get(pkg) != nv.get(pkg):
            out.append(ProvenanceChange("version", pkg, "version", bv.get(pkg), nv.get(pkg)))
    br, nr = base.run, new.run
    for f in ("seed", "resamples"):
        if getattr(br, f) != getattr(nr, f):
            out.append(ProvenanceChange("run", "run", f, str(getattr(br, f)), str(getattr(nr, f))))
    bc = br.git.commit if br.git else None
    nc = nr.git.commit if nr.git else None
    if bc != nc:
        out.append(ProvenanceChange("run", "run", "git commit", bc, nc))
    bd = None if br.git is None else str(br.git.dirty).lower()
    nd = None if nr.git is None else str(nr.git.dirty).lower()
    if br.git is not None and nr.git is not None and bd != nd:
        out.append(ProvenanceChange("run", "run", "git dirty", bd, nd))
    return tuple(out)


def _describe(record: object, fields: Sequence[str]) -> str:
    return ", ".join(f"{f} {_short(getattr(record, f), f)}" for f in fields)


# ---------------------------------------------------------------------------------------------
# Rendering


def _est(ev: Evidence) -> str:
    return f"{format_number(ev.value)} {format_ci(ev)}"


def _shift_text(e: EvidenceDiff) -> str:
    if math.isnan(e.shift):
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


def _short(value: str | None, field: str) -> str:
    if value is None:
        return "(none)"
    if field in ("fingerprint", "content_hash", "git commit"):
        algo, sep, digest = value.rpartition(":")
        return f"{algo}{sep}{digest[:12]}"
    return value


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


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
