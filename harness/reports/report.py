"""The report of a claims run, as data first: dataclasses, JSON, and one Rich renderer.

Contents:

- `Report` (`RunInfo`, `GitInfo`, `ClaimResult`; models and data sets are
  `harness.verdicts.evidence.ModelRecord` / `DatasetRecord`; evidence is `harness.verdicts.evidence.Evidence`).
- `build_report(...)`: the plugin's one call at session end.
- `report_to_json(report)` / `write_report(report, directory)` (atomic) /
  `read_report(path)` (validating; unknown schema versions are a clear `ReportError`).
- `table_rows(report)`: the rows of the terminal table, as `Row` values.
- `render_terminal(report, console)`: the only function that touches Rich (imported lazily).
- `collect_versions()`, `git_state(directory)`: provenance for `RunInfo`.

The JSON schema is documented field by field in ``reports/README.md``; `SCHEMA_VERSION` is
bumped on any change that an old reader could misread.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.atomic import write_text_atomic
from harness.errors import HarnessError
from harness.verdicts.evidence import DatasetRecord, Evidence, ModelRecord

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

__all__ = [
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "REPORT_FILENAME",
    "OUTCOMES",
    "ReportError",
    "GitInfo",
    "RunInfo",
    "ClaimResult",
    "Report",
    "Row",
    "build_report",
    "report_to_json",
    "write_report",
    "report_directory",
    "read_report",
    "format_number",
    "format_ci",
    "claim_from_dict",
    "table_rows",
    "column_widths",
    "header_lines",
    "render_terminal",
    "collect_versions",
    "git_state",
]

SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS: tuple[int, ...] = (1, 2)
REPORT_FILENAME = "report.json"
OUTCOMES: tuple[str, ...] = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
VERSIONED_PACKAGES: Mapping[str, str] = {
    "torch": "torch",
    "transformers": "transformers",
    "harness": "interp-claims",
}


class ReportError(HarnessError, ValueError):
    """A report that cannot be written or read back (bad file, unknown schema version)."""


@dataclass(frozen=True)
class GitInfo:
    """The commit the study ran at, and whether the working tree had changes."""

    commit: str
    dirty: bool


@dataclass(frozen=True)
class RunInfo:
    """How the run was made: seed, resamples, the command that reproduces it, when, and with
    which versions. `started` is an ISO 8601 UTC timestamp; `git` is None outside a git repo."""

    seed: int
    resamples: int
    command: str
    started: str
    duration_s: float
    versions: Mapping[str, str | None]
    git: GitInfo | None = None


@dataclass(frozen=True)
class ClaimResult:
    """One claim (one test with the `claim` marker) and what it observed.

    `outcome` is one of `OUTCOMES` ("error" is a failure in setup or teardown); `message` is a
    short failure or skip message ("" when passed); `seed` is the claim seed that the
    `claim_seed` fixture hands the test. `family` names the family the claim was judged in
    (`harness.verdicts.families`), `family_size` its number of claims, `correction` the rule its
    verdict used and `level` the confidence level its CI was judged at (None without
    evidence; schema 1 reports read as families of one, uncorrected).
    """

    nodeid: str
    text: str
    source: str | None
    params: Mapping[str, Any]
    outcome: str
    message: str
    duration_s: float
    seed: int
    evidence: tuple[Evidence, ...] = ()
    family: str = ""
    family_size: int = 1
    correction: str = "none"
    level: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "text": self.text,
            "source": self.source,
            "params": dict(self.params),
            "outcome": self.outcome,
            "message": self.message,
            "duration_s": self.duration_s,
            "seed": self.seed,
            "family": self.family,
            "family_size": self.family_size,
            "correction": self.correction,
            "level": self.level,
            "evidence": [ev.to_dict() for ev in self.evidence],
        }


@dataclass(frozen=True)
class Report:
    """Everything a claims run produced. See ``reports/README.md`` for the JSON form."""

    schema_version: int
    run: RunInfo
    models: tuple[ModelRecord, ...] = ()
    datasets: tuple[DatasetRecord, ...] = ()
    claims: tuple[ClaimResult, ...] = ()

    def counts(self) -> dict[str, int]:
        """Claims per outcome, in `OUTCOMES` order, zero counts left out."""
        found = [c.outcome for c in self.claims]
        return {o: found.count(o) for o in OUTCOMES if o in found}


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
) -> Report:
    """The report of one run.

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
        ),
        models=tuple(models),
        datasets=tuple(datasets),
        claims=claims,
    )


def collect_versions() -> dict[str, str | None]:
    """Python's version and the installed versions of torch, transformers and the harness
    (read from package metadata; nothing is imported). None for a package not installed."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in VERSIONED_PACKAGES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


def git_state(directory: str | os.PathLike[str]) -> GitInfo | None:
    """The HEAD commit of the git repo holding `directory` and whether `git status` shows any
    change (untracked files included), or None outside a git repo or without git. Read-only:
    runs ``git rev-parse`` and ``git --no-optional-locks status``."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "--no-optional-locks", "-C", str(directory), *args],
                capture_output=True, text=True, timeout=20, check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain")
    return GitInfo(commit=commit.strip(), dirty=bool(status and status.strip()))


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
        },
        "models": [m.to_dict() for m in report.models],
        "datasets": [d.to_dict() for d in report.datasets],
        "claims": [c.to_dict() for c in report.claims],
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
            ),
            models=tuple(
                ModelRecord(**{
                    f.name: self.get(m, f.name, f"models[{i}]", str)
                    for f in dataclasses.fields(ModelRecord)
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
            **self.family(c, where),
        )

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
        for k in ("value", "ci_low", "ci_high", "level"):
            if values[k] is not None:
                values[k] = float(values[k])
        return Evidence(**values)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _versions() -> str:
    return " or ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)


# ---------------------------------------------------------------------------------------------
# The terminal table: rows as data, then the one Rich renderer.


@dataclass(frozen=True)
class Row:
    """One row of the terminal table. `claim` is empty on a claim's second and later rows;
    `ok` is True (held / passed), False (not held / failed / error) or None (skipped)."""

    claim: str
    nodeid: str
    params: str
    statistic: str
    value: str
    ci: str
    n: str
    verdict: str
    ok: bool | None


def table_rows(report: Report) -> tuple[Row, ...]:
    """One row per evidence record; a claim without evidence, or one that failed for a reason
    its evidence does not show, also gets a row with its outcome and message. A record that
    judges the same numbers as the row above it shows only its verdict."""
    rows: list[Row] = []
    for c in report.claims:
        params = ", ".join(f"{k}={v}" for k, v in c.params.items())
        if c.family_size > 1:
            params = f"{params}\n" if params else ""
            params += f"family of {c.family_size}: {c.correction}"
        param_values = {str(v) for v in c.params.values()}
        first = True

        def add(**cells: Any) -> None:
            nonlocal first
            rows.append(Row(claim=c.text if first else "", nodeid=c.nodeid if first else "",
                            params=params if first else "", **cells))
            first = False

        previous = None
        for ev in c.evidence:
            if ev.status != "ok":
                verdict = f"NOT HELD: {ev.expectation} (degenerate: {ev.reason or 'no reason'})"
            else:
                verdict = f"{'held' if ev.held else 'NOT HELD'}: {ev.expectation}"
            stat = _stat(ev, shown=param_values)
            numbers = (stat, format_number(ev.value), format_ci(ev), str(ev.n))
            if numbers == previous and rows[-1].ok == ev.held and ev.status == "ok":
                # the same estimate judged again with the same verdict: one row lists both
                rows[-1] = dataclasses.replace(rows[-1], verdict=f"{rows[-1].verdict}, {ev.expectation}")
            elif numbers == previous:  # judged again, another verdict: show only the verdict
                add(statistic="", value="", ci="", n="", verdict=verdict, ok=ev.held)
            else:
                add(statistic=stat, value=numbers[1], ci=numbers[2], n=numbers[3],
                    verdict=verdict, ok=ev.held)
            previous = numbers
        shown_failure = any(not ev.held for ev in c.evidence)
        if not c.evidence or (c.outcome != "passed" and not shown_failure):
            verdict = c.outcome.upper() if c.outcome != "passed" else "passed (no evidence recorded)"
            if c.message:
                verdict += f": {_shorten(c.message, 160)}"
            ok = None if c.outcome in ("skipped", "xfailed") else c.outcome == "passed"
            add(statistic="", value="", ci="", n="", verdict=verdict, ok=ok)
    return tuple(rows)


def _stat(ev: Evidence, *, shown: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """The statistic's name, with '@ site' unless a parameter already shows the site."""
    name = ev.statistic or "estimate"
    return f"{name} @ {ev.site}" if ev.site and ev.site not in shown else name


def format_number(x: float | None) -> str:
    """A number as the tables show it: 4 significant digits, ``-`` for None."""
    if x is None:
        return "-"
    return f"{x:.4g}" if math.isfinite(x) else str(x)


def format_ci(ev: Evidence) -> str:
    """``95% [low, high]`` of an evidence record."""
    level = ev.level * 100 if ev.level <= 1 else ev.level
    return f"{level:.4g}% [{format_number(ev.ci_low)}, {format_number(ev.ci_high)}]"


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


COLUMNS: tuple[str, ...] = ("claim", "parameters", "statistic", "value", "CI", "n", "verdict")


def column_widths(rows: Iterable[Row], *, total: int) -> dict[str, int]:
    """Widths of the table's columns within `total` characters.

    value, CI and n are as wide as their content; parameters up to 28 and verdict up to 32;
    claim and statistic share the rest, each as wide as its content when that fits, else in
    proportion to their content (never below 16).
    """
    rows = tuple(rows)
    cells = {
        "claim": [r.claim for r in rows], "parameters": [r.params for r in rows],
        "statistic": [r.statistic for r in rows], "value": [r.value for r in rows],
        "CI": [r.ci for r in rows], "n": [r.n for r in rows], "verdict": [r.verdict for r in rows],
    }
    widths = {k: max([len(k), *(len(c) for c in v)]) for k, v in cells.items()}
    widths["parameters"] = min(widths["parameters"], 28)
    widths["verdict"] = min(widths["verdict"], 32)
    shared = ("claim", "statistic")
    space = total - 3 * (len(COLUMNS) - 1) - sum(widths[k] for k in COLUMNS if k not in shared)
    wanted = sum(widths[k] for k in shared)
    if wanted > space:
        for k in shared:
            widths[k] = min(widths[k], max(16, space * widths[k] // wanted))
    return widths


def header_lines(report: Report, *, path: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """The lines above the table: seed, models, data sets, versions, reproduce command."""
    run = report.run
    counts = ", ".join(f"{n} {o}" for o, n in report.counts().items()) or "none"
    lines = [f"claims: seed {run.seed}, resamples {run.resamples}; "
             f"{len(report.claims)} claims ({counts}) in {run.duration_s:.1f}s"]
    families = {c.family: c for c in report.claims if c.family_size > 1}
    if families:
        rules = sorted({c.correction for c in report.claims if c.family_size > 1})
        lines.append(f"families: {len(families)} of 2 or more claims; rules used: {', '.join(rules)} "
                     "(bonferroni: an effect claim of a family of m is judged at 1 - 0.05/m; bounds need none)")
    for m in report.models:
        lines.append(f"model {m.name}: {m.spec}  fingerprint {m.fingerprint[:12]}  ({m.device}, {m.dtype})")
    for d in report.datasets:
        algo, sep, digest = d.content_hash.rpartition(":")
        lines.append(f"data {d.name}: {d.path}  hash {algo}{sep}{digest[:12]}")
    versions = ", ".join(f"{k} {v}" for k, v in run.versions.items() if v)
    git = ""
    if run.git is not None:
        git = f"git {run.git.commit[:10]}{' (dirty)' if run.git.dirty else ''}; "
    if git or versions:
        lines.append(f"{git}{versions}")
    lines.append(f"reproduce: {run.command}")
    if path is not None:
        lines.append(f"report: {path}")
    return tuple(lines)


def render_terminal(
    report: Report, console: "Console", *, path: str | os.PathLike[str] | None = None
) -> None:
    """Print the report's header and table to a Rich `console`.

    Example::

        render_terminal(read_report("reports/latest/report.json"), Console(width=160))
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    for line in header_lines(report, path=path):
        style = "bold" if line.startswith(("claims:", "reproduce:")) else ""
        console.print(Text(line, style=style), soft_wrap=True)
    rows = table_rows(report)
    widths = column_widths(rows, total=console.width)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
    for name, width in widths.items():
        numeric = name in ("value", "n")
        table.add_column(name, width=width, justify="right" if numeric else "left",
                         overflow="fold", no_wrap=name in ("value", "CI", "n"))
    styles = {True: "green", False: "bold red", None: "yellow"}
    for row in rows:
        table.add_row(
            Text(row.claim), Text(row.params), Text(row.statistic), Text(row.value),
            Text(row.ci), Text(row.n), Text(row.verdict, style=styles[row.ok]),
        )
    console.print(table)
