"""The report of a claims run as a file: building it, JSON, atomic writing, validated reading.

Contents:

- `build_report(...)`: the plugin's one call at session end.
- `report_to_json(report)` / `write_report(report, directory)` (atomic) /
  `read_report(path)` (validating; unknown schema versions are a clear `ReportError`).
- `report_directory(directory)`: the report directory, created if needed.
- `claim_from_dict(data)`: one `ClaimResult` from its `to_dict` form, validated.

The dataclasses are `harness.reports.schema`; the JSON schema is documented field by field in
``reports/README.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.atomic import write_text_atomic
from harness.resources import PeakMemory
from harness.verdicts.evidence import EVIDENCE_KINDS, DatasetRecord, Evidence, ModelRecord
from harness.reports.schema import (
    OUTCOMES,
    REPORT_FILENAME,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    ClaimResult,
    GitInfo,
    Report,
    ReportError,
    RunInfo,
    StudyRow,
)

__all__ = [
    "build_report",
    "report_to_json",
    "write_report",
    "report_directory",
    "read_report",
    "claim_from_dict",
]


# ---------------------------------------------------------------------------------------------
# Building


def build_report(
    *,
    seed: int,
    resamples: int,
    command: str,
    started: _dt.datetime | str,
    duration_s: float,
    claims: Iterable[ClaimResult],
    models: Iterable[ModelRecord] = (),
    datasets: Iterable[DatasetRecord] = (),
    versions: Mapping[str, str | None] | None = None,
    git: GitInfo | None = None,
    studies: Iterable[StudyRow] = (),
    notes: Iterable[str] = (),
) -> Report:
    """The report of one run. Its run notes are `notes` and then every claim's notes, each once,
    in that order.

    Example::

        build_report(seed=0, resamples=9999, command="pytest claims/ --claims-seed=0",
                     started=datetime.now(timezone.utc), duration_s=12.5, claims=results,
                     versions=collect_versions(), git=git_state(rootdir))
    """
    if isinstance(started, _dt.datetime):
        if started.tzinfo is None:
            raise ReportError(
                f"`started` must be timezone-aware, got naive {started!r}; "
                "use datetime.now(timezone.utc)"
            )
        started = started.astimezone(_dt.timezone.utc).isoformat(timespec="seconds")
    claims = tuple(claims)
    for c in claims:
        if c.outcome not in OUTCOMES:
            raise ReportError(
                f"claim {c.nodeid!r} has outcome {c.outcome!r}; outcomes are {', '.join(OUTCOMES)}"
            )
    run_notes = list(dict.fromkeys([*map(str, notes), *(n for c in claims for n in c.notes)]))
    return Report(
        schema_version=SCHEMA_VERSION,
        run=RunInfo(
            seed=int(seed),
            resamples=int(resamples),
            command=str(command),
            started=str(started),
            duration_s=float(duration_s),
            versions=dict(versions if versions is not None else {}),
            git=git,
            notes=tuple(run_notes),
        ),
        models=tuple(models),
        datasets=tuple(datasets),
        claims=claims,
        studies=tuple(studies),
    )


# ---------------------------------------------------------------------------------------------
# JSON


def report_to_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready Python data (dicts, lists, str, int, float, bool, None)."""
    run = report.run
    return {
        "schema_version": report.schema_version,
        "run": {
            "seed": run.seed,
            "resamples": run.resamples,
            "command": run.command,
            "started": run.started,
            "duration_s": run.duration_s,
            "versions": dict(run.versions),
            "git": None if run.git is None else dataclasses.asdict(run.git),
            "notes": list(run.notes),
        },
        "models": [m.to_dict() for m in report.models],
        "datasets": [d.to_dict() for d in report.datasets],
        "claims": [c.to_dict() for c in report.claims],
        "studies": [s.to_dict() for s in report.studies],
    }


def report_directory(directory: str | os.PathLike[str]) -> Path:
    """`directory`, created if needed; a `ReportError` that says what to do when it cannot be."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(
            f"cannot create the report directory {str(directory)!r}: {exc}; "
            "choose a writable one with --claims-report DIR"
        ) from exc
    return directory


def write_report(report: Report, directory: str | os.PathLike[str]) -> Path:
    """Write ``report.json`` into `directory` atomically and return its path.

    The JSON goes to a temporary file in the same directory, is fsynced, and replaces the old
    report with `os.replace`; if anything fails on the way the old report is left as it was and
    the temporary file is removed.
    """
    target = report_directory(directory) / REPORT_FILENAME
    try:
        text = json.dumps(report_to_json(report), indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise ReportError(
            f"cannot write {str(target)!r}: the report is not JSON-serialisable ({exc}); "
            "claim parameters and evidence must be str, int, float, bool or None "
            "(the plugin writes other values with repr())"
        ) from exc
    return write_text_atomic(target, text)


def claim_from_dict(data: Any, *, where: str = "claim") -> ClaimResult:
    """A `ClaimResult` from its `to_dict` form (validated like a claim of a report)."""
    return _Reader(Path("<claim>")).claim(data, where)


def read_report(path: str | os.PathLike[str]) -> Report:
    """Read a ``report.json`` back into a `Report`, checking its schema version and fields.

    Example::

        report = read_report("reports/latest/report.json")
        report.counts()   # {"passed": 10, "failed": 2}
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(
            f"cannot read report {str(path)!r}: {exc.strerror or exc}; pass the path of a "
            "report.json written by `pytest claims/` (default reports/latest/report.json)"
        ) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"report {str(path)!r} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}); re-run the study to write it again"
        ) from exc
    return _Reader(path).report(data)


class _Reader:
    """Validating decoder: every problem names the file and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, problem: str) -> ReportError:
        return ReportError(
            f"report {str(self.path)!r} {problem}; it was not written by this harness's "
            f"schema_version {SCHEMA_VERSION} writer (or was edited), so re-run the study "
            "to write it again"
        )

    def get(self, obj: Any, key: str, where: str, *kinds: type) -> Any:
        if not isinstance(obj, dict):
            raise self.fail(f"has `{where}` as {type(obj).__name__}, expected an object")
        if key not in obj:
            raise self.fail(f"is missing the field `{_join(where, key)}`")
        value = obj[key]
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise self.fail(f"has `{_join(where, key)}` = {value!r}, expected {names}")
        return value

    def report(self, data: Any) -> Report:
        if not isinstance(data, dict):
            raise self.fail(f"holds a JSON {type(data).__name__}, expected an object")
        if "schema_version" not in data:
            raise ReportError(
                f"report {str(self.path)!r} has no `schema_version`; this harness reads "
                f"schema_version {_versions()}; pass a report.json written by `pytest claims/`"
            )
        version = data["schema_version"]
        if isinstance(version, bool) or version not in SUPPORTED_SCHEMA_VERSIONS:
            raise ReportError(
                f"report {str(self.path)!r} has schema_version {version!r}; this harness "
                f"reads schema_version {_versions()}; upgrade interp-claims to read a newer "
                "report, or re-run the study with this version to write it again"
            )
        run = self.get(data, "run", "", dict)
        git = self.get(run, "git", "run", dict, type(None))
        versions = self.get(run, "versions", "run", dict)
        for k, v in versions.items():
            self.get(versions, k, "run.versions", str, type(None))
        models = self.get(data, "models", "", list)
        datasets = self.get(data, "datasets", "", list)
        claims = self.get(data, "claims", "", list)
        return Report(
            schema_version=version,
            run=RunInfo(
                seed=self.get(run, "seed", "run", int),
                resamples=self.get(run, "resamples", "run", int),
                command=self.get(run, "command", "run", str),
                started=self.get(run, "started", "run", str),
                duration_s=float(self.get(run, "duration_s", "run", int, float)),
                versions=dict(versions),
                git=None if git is None else GitInfo(
                    commit=self.get(git, "commit", "run.git", str),
                    dirty=self.get(git, "dirty", "run.git", bool),
                ),
                notes=self.notes(run, "run"),
            ),
            models=tuple(
                ModelRecord(**{
                    f.name: self.get(m, f.name, f"models[{i}]", str)
                    for f in dataclasses.fields(ModelRecord)
                    if f.name in m or f.default is dataclasses.MISSING   # `source`: schema 3
                })
                for i, m in enumerate(models)
            ),
            datasets=tuple(
                DatasetRecord(**{
                    f.name: self.get(d, f.name, f"datasets[{i}]", str)
                    for f in dataclasses.fields(DatasetRecord)
                })
                for i, d in enumerate(datasets)
            ),
            claims=tuple(self.claim(c, f"claims[{i}]") for i, c in enumerate(claims)),
            studies=tuple(
                StudyRow(**{f.name: self.get(s, f.name, f"studies[{i}]", str) for f in dataclasses.fields(StudyRow)})
                for i, s in enumerate(self.get(data, "studies", "", list) if "studies" in data else ())
            ),
        )

    def claim(self, c: Any, where: str) -> ClaimResult:
        outcome = self.get(c, "outcome", where, str)
        if outcome not in OUTCOMES:
            raise self.fail(f"has `{where}.outcome` = {outcome!r}, expected one of {OUTCOMES}")
        evidence = self.get(c, "evidence", where, list)
        return ClaimResult(
            nodeid=self.get(c, "nodeid", where, str),
            text=self.get(c, "text", where, str),
            source=self.get(c, "source", where, str, type(None)),
            params=dict(self.get(c, "params", where, dict)),
            outcome=outcome,
            message=self.get(c, "message", where, str),
            duration_s=float(self.get(c, "duration_s", where, int, float)),
            seed=self.get(c, "seed", where, int),
            evidence=tuple(self.evidence(e, f"{where}.evidence[{j}]") for j, e in enumerate(evidence)),
            identity=self.get(c, "identity", where, str) if "identity" in c else "",
            check=self.get(c, "check", where, bool) if "check" in c else False,
            memory=self.memory(c, where),
            notes=self.notes(c, where),
            **self.family(c, where),
        )

    def notes(self, obj: Any, where: str) -> tuple[str, ...]:
        """The notes (a list of str); none in older reports, which have no `notes`."""
        if "notes" not in obj:
            return ()
        notes = self.get(obj, "notes", where, list)
        for i, n in enumerate(notes):
            if not isinstance(n, str):
                raise self.fail(f"has `{_join(where, 'notes')}[{i}]` = {n!r}, expected str")
        return tuple(notes)

    def memory(self, c: Any, where: str) -> PeakMemory | None:
        """A claim's peak memory (null: not measured); None in older reports, which have no `memory`."""
        if "memory" not in c:
            return None
        m = self.get(c, "memory", where, dict, type(None))
        if m is None:
            return None
        at = f"{where}.memory"
        return PeakMemory(rss_bytes=self.get(m, "peak_rss_bytes", at, int),
                          rss_method=self.get(m, "rss_method", at, str),
                          cuda_bytes=self.get(m, "peak_cuda_bytes", at, int, type(None)))

    def family(self, c: Any, where: str) -> dict[str, Any]:
        """The family fields of a schema-2 claim; a schema-1 claim is a family of one."""
        if "family" not in c:
            return {"family": str(c.get("nodeid", "")).split("[", 1)[0]}
        level = self.get(c, "level", where, int, float, type(None))
        return {
            "family": self.get(c, "family", where, str),
            "family_size": self.get(c, "family_size", where, int),
            "correction": self.get(c, "correction", where, str),
            "level": None if level is None else float(level),
        }

    def evidence(self, e: Any, where: str) -> Evidence:
        num = (int, float, type(None))
        opt = (str, type(None))
        kinds: dict[str, tuple[type, ...]] = {
            "statistic": (str,), "value": num, "ci_low": num, "ci_high": num,
            "level": (int, float), "n": (int,), "method": (str,), "unit": (str,),
            "site": opt, "seed": (int, type(None)), "fingerprint": opt,
            "expectation": (str,), "held": (bool,), "status": (str,), "reason": (str,),
        }
        values = {k: self.get(e, k, where, *ks) for k, ks in kinds.items()}
        if "resamples" in e:   # schema 3: the resamples the CI used (None: no bootstrap)
            values["resamples"] = self.get(e, "resamples", where, int, type(None))
        if "kind" in e:        # optional: "estimate" (older reports) or "exact"
            values["kind"] = self.get(e, "kind", where, str)
            if values["kind"] not in EVIDENCE_KINDS:
                raise self.fail(f"has `{where}.kind` = {values['kind']!r}, expected one of {EVIDENCE_KINDS}")
        for k in ("expected", "tolerance", "deviation"):   # optional: an exact comparison's numbers
            if k in e:
                values[k] = self.get(e, k, where, *num)
        for k in ("value", "ci_low", "ci_high", "level", "expected", "tolerance", "deviation"):
            if values.get(k) is not None:
                values[k] = float(values[k])
        return Evidence(**values)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _versions() -> str:
    return " or ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
