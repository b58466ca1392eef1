"""Compare two claims reports: what changed between a baseline run and a new one.

Contents:

- `diff_reports(base, new, tolerance=3.0)` -> `ReportDiff`: claims matched by node id, their
  verdict changes, how far each effect moved (in units of the baseline CI's half-width; against
  an absolute tolerance where the baseline CI has zero width or the evidence is an exact
  comparison), claims added and removed, and provenance changes (models, data sets, versions, run).
- `diff_files(base_path, new_path, tolerance=3.0)`: the same, reading two ``report.json`` files.
- `check_tolerance(tolerance)`: the validation `--tolerance` gets.
- `write_baseline(report, path)`: write a report to any file name, atomically (for
  ``--claims-update-baseline``; `harness.reports.report.write_report` always names it ``report.json``).

A diff *regresses* (`ReportDiff.regressed`, `exit_status` 1) when a claim that passed now
failed or errored, or when any matched effect moved: by more than `tolerance` half-widths, by
more than the absolute tolerance of a zero-width baseline CI or an exact comparison, or from an
exact comparison that held to one that does not.
Claims added or removed, claims fixed, other outcome changes (passed -> skipped) and
provenance changes are reported but do not by themselves regress.

How the evidence entries of a matched claim are paired and how far an effect moved is
`harness.reports.diff_evidence`; the diff as text (`render_diff`) is `harness.reports.diff_text`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.atomic import write_text_atomic
from harness.errors import HarnessError
from harness.reports.diff_evidence import EvidenceDiff, _diff_evidence, _distinct, _numbers
from harness.reports.report import read_report, report_to_json
from harness.reports.schema import SUPPORTED_SCHEMA_VERSIONS, ClaimResult, Report

__all__ = [
    "DEFAULT_TOLERANCE",
    "DiffError",
    "ClaimDiff",
    "ProvenanceChange",
    "ReportDiff",
    "check_tolerance",
    "diff_reports",
    "diff_files",
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
        """Matched entries whose values differ but could not be compared (no value, no CI)."""
        return tuple(
            e for e in self.evidence
            if e.base is not None and e.new is not None and not e.compared
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
    # Claims are matched by their stable identity when both reports carry one (schema 3): a run
    # started from another folder has other node ids but the same identities.
    by_identity = all(c.identity for c in (*base.claims, *new.claims))
    base_claims = _by_nodeid(base.claims, "baseline", by_identity)
    new_claims = _by_nodeid(new.claims, "new", by_identity)
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


def _by_nodeid(claims: Iterable[ClaimResult], which: str, by_identity: bool = False) -> dict[str, ClaimResult]:
    """The claims by their key: the identity (`by_identity`) or the node id."""
    out: dict[str, ClaimResult] = {}
    kind = "identity" if by_identity else "node id"
    for c in claims:
        key = c.identity if by_identity else c.nodeid
        if key in out:
            raise DiffError(
                f"the {which} report lists claim {key!r} twice; claims are matched by {kind}, so "
                "each must appear once (re-run the study to write the report again)"
            )
        out[key] = c
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


def _short(value: str | None, field: str) -> str:
    if value is None:
        return "(none)"
    if field in ("fingerprint", "content_hash", "git commit"):
        algo, sep, digest = value.rpartition(":")
        return f"{algo}{sep}{digest[:12]}"
    return value
