"""The pytest plugin: every test marked `claim` is a finding, and the run ends with a report.

Registered through the ``pytest11`` entry point ``claims = "harness.plugin"``. Contents:

- options (group "claims"): ``--claims-seed``, ``--claims-resamples``, ``--claims-model
  NAME=SPEC``, ``--claims-data NAME=PATH``, ``--claims-report DIR``;
- the marker ``claim(text, *, source=None)``, checked at collection;
- fixtures ``claims_settings`` (session, a `ClaimsSettings`) and ``claim_seed`` (per test,
  derived from the base seed and the node id, so ``-k`` slices reproduce the full run);
- per-item state under `pytest.StashKey`s: `CLAIM_KEY`, `EVIDENCE_KEY`, `PHASES_KEY`,
  `RESULT_KEY`; the session's state under `SESSION_KEY` on ``config.stash``;
- at session end: ``report.json`` (atomic) in the report directory and a Rich table in the
  terminal summary.

The hooks are thin; the work is in pure functions (`parse_claim_mark`, `derive_seed`,
`settings_from_options`, `claim_outcome`, `json_safe_params`, `reproduce_command`). This module
imports neither torch, transformers nor numpy; Rich is imported only to render the summary.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import io
import json
import re
import shlex
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.verdicts.families import CORRECTIONS, Family, claim_correction, judging
from harness.verdicts.evidence import (
    Evidence,
    Registry,
    close_registry,
    open_registry,
    recording,
    register_dataset,
    register_model,
    registered_datasets,
    registered_models,
)
from harness.reports import (
    ClaimResult,
    Report,
    build_report,
    claim_from_dict,
    collect_versions,
    git_state,
    write_report,
)

__all__ = [
    "ClaimsSettings",
    "ClaimMark",
    "ClaimMarkerError",
    "ClaimsOptionError",
    "PhaseResult",
    "CLAIM_KEY",
    "EVIDENCE_KEY",
    "PHASES_KEY",
    "RESULT_KEY",
    "FAMILY_KEY",
    "family_name",
    "SETTINGS_KEY",
    "SESSION_KEY",
    "parse_claim_mark",
    "derive_seed",
    "settings_from_options",
    "claim_outcome",
    "json_safe_params",
    "reproduce_command",
]

DEFAULT_REPORT_DIR = "reports/latest"

TERMINAL_WIDTH = 160
MARKER_HELP = (
    "claim(text, *, source=None, family=None): this test states a finding about a model; `text` is "
    "the finding in one sentence, `source` where it was first reported, `family` a name shared by "
    "claims judged as one family (default: the parametrizations of this function). Example: "
    '@pytest.mark.claim("Layer-12 class-mean steering moves logP(intro) - logP(apply)", '
    'source="notebook 000, cell 12")'
)
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


class ClaimMarkerError(HarnessError, ValueError):
    """A `claim` marker written wrongly (no text, text not a string, unknown keyword)."""


class ClaimsOptionError(HarnessError, ValueError):
    """Command-line options that parse one by one but do not fit together."""


# ---------------------------------------------------------------------------------------------
# Settings and options


@dataclass(frozen=True)
class ClaimsSettings:
    """The run's settings, from the command line.

    `models` maps a model name to the spec given with ``--claims-model NAME=SPEC``; `data`
    maps a data set name to the path given with ``--claims-data NAME=PATH`` (both read-only).
    """

    seed: int = 0
    resamples: int = 9999
    models: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    data: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    report_dir: Path = Path(DEFAULT_REPORT_DIR)
    thresholds: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    correction: str = "bonferroni"

    def model_spec(self, name: str, default: str | None = None) -> str | None:
        """The spec given for model `name` with ``--claims-model``, else `default`.

        Example: ``claims_settings.model_spec("tacgen", "fixture:tacgen")``.
        """
        return self.models.get(name, default)

    def data_path(self, name: str, default: str | None = None) -> str | None:
        """The path given for data set `name` with ``--claims-data`` (as typed), else `default`.

        Example: ``claims_settings.data_path("mbpp", "fixture:mbpp")``.
        """
        return self.data.get(name, default)

    def thresholds_row(self, study: str) -> str | None:
        """The threshold row named for `study` with ``--claims-thresholds STUDY=ROW``, else None."""
        return self.thresholds.get(study)


def _int_option(option: str, *, minimum: int, example: int) -> Any:
    def convert(text: str) -> int:
        try:
            value = int(text, 10)
        except (TypeError, ValueError):
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected an integer >= {minimum} such as {option}={example}, got {text!r}"
            )
        return value

    convert.__name__ = "integer"
    return convert


def _positive_float_option(option: str, *, example: float) -> Any:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            value = float("nan")
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a number > 0 such as {option}={example}, got {text!r}")
        return value

    convert.__name__ = "number"
    return convert


def _pair_option(option: str, rhs: str, example: str) -> Any:
    def convert(text: str) -> tuple[str, str]:
        name, sep, value = text.partition("=")
        if not sep or not name or not value:
            raise argparse.ArgumentTypeError(
                f"expected NAME={rhs} such as {option} {example}, got {text!r}"
            )
        if not _NAME_RE.fullmatch(name):
            raise argparse.ArgumentTypeError(
                f"NAME in NAME={rhs} must start with a letter or '_' and hold only letters, "
                f"digits, '_', '-' or '.', got {name!r} in {text!r}; e.g. {option} {example}"
            )
        return name, value

    convert.__name__ = f"NAME={rhs}"
    return convert


def settings_from_options(
    *,
    seed: int,
    resamples: int,
    models: Sequence[tuple[str, str]] | None,
    data: Sequence[tuple[str, str]] | None,
    report: str | None,
    rootdir: Path,
    invocation_dir: Path,
    thresholds: Sequence[tuple[str, str]] | None = None,
    correction: str = "bonferroni",
) -> ClaimsSettings:
    """`ClaimsSettings` from parsed options (pytest turns a `ClaimsOptionError` into a usage
    error). The default report directory is relative to `rootdir`; a directory given on the
    command line is relative to `invocation_dir`."""

    def table(option: str, pairs: Sequence[tuple[str, str]] | None) -> Mapping[str, str]:
        out: dict[str, str] = {}
        for name, value in pairs or ():
            if name in out and out[name] != value:
                raise ClaimsOptionError(
                    f"{option} gives {name!r} twice ({name}={out[name]} and {name}={value}); "
                    f"give each name once"
                )
            out[name] = value
        return MappingProxyType(out)

    report_dir = rootdir / DEFAULT_REPORT_DIR if report is None else invocation_dir / report
    return ClaimsSettings(
        seed=seed,
        resamples=resamples,
        models=table("--claims-model", models),
        data=table("--claims-data", data),
        report_dir=report_dir,
        thresholds=table("--claims-thresholds", thresholds),
        correction=correction,
    )


def derive_seed(base: int, nodeid: str) -> int:
    """A 32-bit seed for one test, from the run's base seed and the test's node id.

    Example: ``derive_seed(0, "claims/test_x.py::test_a[layer12]")``. It does not depend on
    which other tests run, so a ``-k`` slice gets the same seeds as the full run.
    """
    digest = hashlib.sha256(f"{int(base)}\x00{nodeid}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def reproduce_command(args: Sequence[str], seed: int) -> str:
    """The pytest command line that repeats a run: its args, with ``--claims-seed=SEED``."""
    kept: list[str] = []
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
        elif arg == "--claims-seed":
            skip_next = True
        elif not arg.startswith("--claims-seed="):
            kept.append(arg)
    return shlex.join(["pytest", *kept, f"--claims-seed={seed}"])


# ---------------------------------------------------------------------------------------------
# The claim marker


@dataclass(frozen=True)
class ClaimMark:
    """What ``@pytest.mark.claim(text, source=...)`` says."""

    text: str
    source: str | None = None
    family: str | None = None


def parse_claim_mark(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> ClaimMark:
    """Check a claim marker's arguments and return them, or raise `ClaimMarkerError`."""
    example = '@pytest.mark.claim("Layer-12 steering moves the score", source="notebook 000")'
    unknown = sorted(set(kwargs) - {"text", "source", "family"})
    if unknown:
        raise ClaimMarkerError(
            f"@pytest.mark.claim got unexpected keyword argument(s) "
            f"{', '.join(map(repr, unknown))}; it takes the text and source=..., e.g. {example}"
        )
    args = tuple(args)
    if "text" in kwargs:
        args = (kwargs["text"], *args)
    if not args:
        raise ClaimMarkerError(
            f"@pytest.mark.claim needs the finding as its text, got no text; e.g. {example}"
        )
    if len(args) > 1:
        raise ClaimMarkerError(
            f"@pytest.mark.claim takes one text, got {len(args)}: {args!r}; give the source "
            f"as a keyword, e.g. {example}"
        )
    text = args[0]
    if not isinstance(text, str):
        raise ClaimMarkerError(
            f"@pytest.mark.claim text must be a string, got {type(text).__name__} {text!r}; "
            f"e.g. {example}"
        )
    if not text.strip():
        raise ClaimMarkerError(
            f"@pytest.mark.claim text must state the finding, got {text!r}; e.g. {example}"
        )
    source = kwargs.get("source")
    if source is not None and not isinstance(source, str):
        raise ClaimMarkerError(
            f"@pytest.mark.claim source must be a string or None, got "
            f"{type(source).__name__} {source!r}; e.g. {example}"
        )
    family = kwargs.get("family")
    if family is not None and not (isinstance(family, str) and family.strip()):
        raise ClaimMarkerError(
            f"@pytest.mark.claim family must be a non-empty string or None, got "
            f"{type(family).__name__} {family!r}; e.g. family=\"controls at layer 12\""
        )
    return ClaimMark(text=text, source=source, family=family)


def family_name(nodeid: str, mark: ClaimMark) -> str:
    """The family a claim belongs to: the marker's ``family=``, else its function's node id
    without the parametrization (``claims/x.py::test_a[layer12]`` -> ``claims/x.py::test_a``)."""
    return mark.family if mark.family is not None else nodeid.split("[", 1)[0]


# ---------------------------------------------------------------------------------------------
# Outcome of one test


@dataclass(frozen=True)
class PhaseResult:
    """One phase (setup, call, teardown) of one test, as the plugin saw it."""

    when: str
    outcome: str  # "passed" | "failed" | "skipped"
    duration_s: float
    message: str = ""
    xfail: bool = False


def claim_outcome(phases: Iterable[PhaseResult]) -> tuple[str, str]:
    """(outcome, message) of a test from its phases.

    "error" is a failure in setup or teardown; "failed" a failure in the call; "xfailed" and
    "xpassed" are the xfail marker's outcomes.
    """
    by = {p.when: p for p in phases}
    setup, call, teardown = by.get("setup"), by.get("call"), by.get("teardown")
    outcome, message = "passed", ""
    if setup is not None and setup.outcome == "failed":
        outcome, message = "error", f"error in setup: {setup.message}"
    elif setup is not None and setup.outcome == "skipped":
        outcome, message = ("xfailed" if setup.xfail else "skipped"), setup.message
    elif call is not None:
        if call.outcome == "failed":
            outcome, message = "failed", call.message
        elif call.outcome == "skipped":
            outcome, message = ("xfailed" if call.xfail else "skipped"), call.message
        elif call.xfail:
            outcome, message = "xpassed", call.message
    if teardown is not None and teardown.outcome == "failed" and outcome in ("passed", "xpassed"):
        outcome, message = "error", f"error in teardown: {teardown.message}"
    return outcome, message


def json_safe_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parametrize values for JSON: str, int, finite float, bool and None as they are;
    anything else as its repr()."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None or isinstance(value, (str, bool, int)):
            out[str(key)] = value
        elif isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")):
            out[str(key)] = value
        else:
            out[str(key)] = repr(value)
    return out


def _short_message(text: str, limit: int = 1000) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# Stash keys


@dataclass
class _SessionState:
    """Mutable per-session state (on ``config.stash``): filled as tests finish."""

    started: _dt.datetime
    t0: float
    registry: Registry
    results: list[ClaimResult] = field(default_factory=list)
    report: Report | None = None
    report_path: Path | None = None
    report_error: str | None = None
    html_path: Path | None = None
    html_error: str | None = None
    diff: Any = None          # harness.reports.diff.ReportDiff against --claims-baseline
    baseline_note: str | None = None


SETTINGS_KEY = pytest.StashKey[ClaimsSettings]()
SESSION_KEY = pytest.StashKey[_SessionState]()
CLAIM_KEY = pytest.StashKey[ClaimMark]()
EVIDENCE_KEY = pytest.StashKey[tuple[Evidence, ...]]()
PHASES_KEY = pytest.StashKey[list[PhaseResult]]()
RESULT_KEY = pytest.StashKey[ClaimResult]()
FAMILY_KEY = pytest.StashKey[Family]()


# ---------------------------------------------------------------------------------------------
# Hooks


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("claims", "interpretability claims (harness.plugin)")
    group.addoption(
        "--claims-seed", type=_int_option("--claims-seed", minimum=0, example=1234), default=0,
        metavar="SEED", help="base seed; each claim's seed is derived from it and its node id (default 0)",
    )
    group.addoption(
        "--claims-resamples", type=_int_option("--claims-resamples", minimum=1, example=9999),
        default=9999, metavar="N", help="bootstrap resamples for confidence intervals (default 9999)",
    )
    group.addoption(
        "--claims-model", action="append", metavar="NAME=SPEC",
        type=_pair_option("--claims-model", "SPEC", "tacgen=kaiyuy/leandojo-lean4-tacgen-byt5-small"),
        help="run the claims on this model for NAME (hub id, local path or fixture:NAME); repeatable",
    )
    group.addoption(
        "--claims-data", action="append", metavar="NAME=PATH",
        type=_pair_option("--claims-data", "PATH", "mbpp=data/mbpp.jsonl"),
        help="read data set NAME from PATH; repeatable",
    )
    group.addoption(
        "--claims-thresholds", action="append", metavar="STUDY=ROW",
        type=_pair_option("--claims-thresholds", "ROW", "tacgen=fixture:tacgen"),
        help="judge STUDY's claims by the threshold row ROW of its settings (default: the row of the "
             "model's spec, or of the model its config names); repeatable",
    )
    group.addoption(
        "--claims-correction", choices=CORRECTIONS, default="bonferroni",
        help="multiple-comparison correction of the effect claims in a family (default bonferroni; "
             "see reports/README.md)",
    )
    group.addoption(
        "--claims-threads", type=_int_option("--claims-threads", minimum=1, example=1), default=None,
        metavar="N", help="torch intra-op threads for the run (default: torch's own choice); on a CPU "
                          "shared with other jobs, 1 avoids OpenMP threads waiting on each other",
    )
    group.addoption(
        "--claims-baseline", default=None, metavar="BASE.json",
        help="compare this run with a baseline report at the end; a claim that held and now fails, or "
             "an effect that moved beyond --claims-tolerance, fails the session",
    )
    group.addoption(
        "--claims-tolerance", type=_positive_float_option("--claims-tolerance", example=3), default=None,
        metavar="T", help="how far an effect may move, in half-widths of the baseline's CI (default 3)",
    )
    group.addoption(
        "--claims-update-baseline", action="store_true", default=False,
        help="write this run's report as the baseline (--claims-baseline, default reports/baseline.json)",
    )
    group.addoption(
        "--claims-report", default=None, metavar="DIR",
        help=f"directory for report.json (default {DEFAULT_REPORT_DIR} under the rootdir)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    try:
        settings = settings_from_options(
            seed=config.getoption("claims_seed"),
            resamples=config.getoption("claims_resamples"),
            models=config.getoption("claims_model"),
            data=config.getoption("claims_data"),
            report=config.getoption("claims_report"),
            rootdir=Path(config.rootpath),
            invocation_dir=Path(config.invocation_params.dir),
            thresholds=config.getoption("claims_thresholds"),
            correction=config.getoption("claims_correction"),
        )
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from exc
    config.stash[SETTINGS_KEY] = settings
    config.pluginmanager.register(_ClaimCollector(config), "claims-collector")
    baseline = config.getoption("claims_baseline")
    if baseline is not None and not config.getoption("claims_update_baseline"):
        path = Path(config.invocation_params.dir) / baseline
        if not path.is_file():
            raise pytest.UsageError(
                f"--claims-baseline {baseline}: no such file; write one with "
                f"`pytest claims/ --claims-update-baseline --claims-baseline {baseline}` (or commit a report.json there)"
            )
    threads = config.getoption("claims_threads")
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[SESSION_KEY] = _SessionState(
        started=_dt.datetime.now(_dt.timezone.utc), t0=time.perf_counter(), registry=open_registry()
    )


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Any:
    result = yield
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, pytest.Function):
            marker = item.get_closest_marker("claim")
            if marker is None:
                continue
            try:
                item.stash[CLAIM_KEY] = parse_claim_mark(marker.args, marker.kwargs)
            except ClaimMarkerError as exc:
                raise pytest.Collector.CollectError(f"{item.nodeid}: {exc}") from exc
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # Families are counted over everything collected, before -k / -m deselect (this hook runs
    # first), so a slice judges each claim at the same level as the full run.
    settings = config.stash[SETTINGS_KEY]
    names: dict[pytest.Item, str] = {}
    for item in items:
        mark = item.stash.get(CLAIM_KEY, None)
        if mark is not None:
            names[item] = family_name(item.nodeid, mark)
    sizes: dict[str, int] = {}
    for name in names.values():
        sizes[name] = sizes.get(name, 0) + 1
    for item, name in names.items():
        item.stash[FAMILY_KEY] = Family(name, size=sizes[name], correction=settings.correction)


def _family_of(item: pytest.Item) -> Family | None:
    """The item's family (counted at collection; a claim marker added later is a family of one)."""
    family = item.stash.get(FAMILY_KEY, None)
    if family is None:
        mark = _claim_of(item)
        settings = item.config.stash.get(SETTINGS_KEY, None)
        if mark is None or settings is None:
            return None
        family = Family(family_name(item.nodeid, mark), size=1, correction=settings.correction)
        item.stash[FAMILY_KEY] = family
    return family


def _claim_of(item: pytest.Item) -> ClaimMark | None:
    """The item's claim (parsed at collection, or now for a marker added later)."""
    mark = item.stash.get(CLAIM_KEY, None)
    if mark is None:
        marker = item.get_closest_marker("claim")
        if marker is None:
            return None
        mark = parse_claim_mark(marker.args, marker.kwargs)
        item.stash[CLAIM_KEY] = mark
    return mark


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # A claim marker added after collection (item.add_marker) is checked here: a bad one is an
    # error in setup, with the same message a decorator would get at collection.
    _claim_of(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    try:
        family = _family_of(item)
    except ClaimMarkerError:
        family = None
    with recording() as records, judging(family):
        try:
            return (yield)
        finally:
            item.stash[EVIDENCE_KEY] = tuple(records)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    rep = yield
    message = ""
    if rep.outcome != "passed":
        exc = call.excinfo
        if exc is not None and rep.outcome == "failed" and not isinstance(exc.value, AssertionError):
            message = f"{exc.typename}: {exc.value}"
        elif exc is not None:
            message = str(exc.value)
        else:
            message = rep.longreprtext
    wasxfail = getattr(rep, "wasxfail", None)
    if wasxfail is not None:
        message = wasxfail or "xfail"
    item.stash.setdefault(PHASES_KEY, []).append(
        PhaseResult(when=rep.when, outcome=rep.outcome, duration_s=float(rep.duration),
                    message=_short_message(message), xfail=wasxfail is not None)
    )
    if rep.when == "teardown":
        claim = _claim_result(item)
        if claim is not None:
            rep.user_properties.extend(_claim_properties(claim))
    return rep


# The claim travels on its teardown report: in-process, under pytest-xdist from a worker to the
# controller (reports are serialized, their user_properties included), and into JUnit XML,
# whose <properties> show the readable ones. One path for all three, so a serial run and an
# `-n 2` run write the same report.
RESULT_PROPERTY = "claims_result_json"
REGISTRY_PROPERTY = "claims_registry_json"


def _claim_result(item: pytest.Item) -> ClaimResult | None:
    settings = item.config.stash.get(SETTINGS_KEY, None)
    try:
        mark = _claim_of(item)
    except ClaimMarkerError:
        return None  # already reported as an error in setup
    if mark is None or settings is None:
        return None
    phases = item.stash.get(PHASES_KEY, [])
    outcome, message = claim_outcome(phases)
    callspec = getattr(item, "callspec", None)
    evidence = item.stash.get(EVIDENCE_KEY, ())
    family = _family_of(item)
    correction, level = claim_correction(family, evidence)
    claim = ClaimResult(
        nodeid=item.nodeid,
        text=mark.text,
        source=mark.source,
        params=json_safe_params(callspec.params if callspec is not None else {}),
        outcome=outcome,
        message=message,
        duration_s=sum(p.duration_s for p in phases),
        seed=derive_seed(settings.seed, item.nodeid),
        evidence=evidence,
        family=family.name if family is not None else "",
        family_size=family.size if family is not None else 1,
        correction=correction,
        level=level,
    )
    item.stash[RESULT_KEY] = claim
    return claim


def _claim_properties(claim: ClaimResult) -> list[tuple[str, str]]:
    props = [("claim", claim.text), ("claim_verdict", claim.outcome)]
    if claim.source:
        props.append(("claim_source", claim.source))
    if claim.params:
        props.append(("claim_params", json.dumps(dict(claim.params), sort_keys=True)))
    for i, ev in enumerate(claim.evidence):
        held = "held" if ev.held else "NOT HELD"
        props.append((f"claim_evidence_{i}", f"{ev.statistic or 'estimate'} = {_fmt_number(ev.value)} "
                                             f"[{_fmt_number(ev.ci_low)}, {_fmt_number(ev.ci_high)}] n={ev.n} "
                                             f"({ev.method}): {held}: {ev.expectation}"))
    props.append((RESULT_PROPERTY, json.dumps(claim.to_dict(), allow_nan=False, default=str)))
    props.append((REGISTRY_PROPERTY, json.dumps({
        "models": [m.to_dict() for m in registered_models()],
        "datasets": [d.to_dict() for d in registered_datasets()]})))
    return props


def _fmt_number(x: float | None) -> str:
    return "nan" if x is None else f"{x:.4g}"


class _ClaimCollector:
    """Gathers claims from teardown reports into the session's state (own tests, or a
    worker's under xdist, whose reports arrive serialized at the controller)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.order: dict[str, int] = {}  # collection order: the report lists claims in it

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.order = {item.nodeid: i for i, item in enumerate(session.items)}

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        if not self.order:
            self.order = {nodeid: i for i, nodeid in enumerate(ids)}

    def in_collection_order(self, claims: Sequence[ClaimResult]) -> list[ClaimResult]:
        last = len(self.order)
        return sorted(claims, key=lambda c: self.order.get(c.nodeid, last))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":
            return
        props = dict(report.user_properties)
        state = self.config.stash.get(SESSION_KEY, None)
        if RESULT_PROPERTY not in props or state is None:
            return
        state.results.append(claim_from_dict(json.loads(props[RESULT_PROPERTY])))
        if REGISTRY_PROPERTY in props:
            registry = json.loads(props[REGISTRY_PROPERTY])
            for record in registry["models"]:
                register_model(record.pop("name"), **record)
            for record in registry["datasets"]:
                register_dataset(record.pop("name"), **record)


@pytest.fixture(scope="session")
def claims_settings(pytestconfig: pytest.Config) -> ClaimsSettings:
    """The run's `ClaimsSettings` (seed, resamples, model specs, data paths, report dir)."""
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture
def claim_seed(request: pytest.FixtureRequest, claims_settings: ClaimsSettings) -> int:
    """This test's seed: `derive_seed(--claims-seed, node id)`, the same in any ``-k`` slice."""
    return derive_seed(claims_settings.seed, request.node.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    state = config.stash.get(SESSION_KEY, None)
    settings = config.stash.get(SETTINGS_KEY, None)
    if state is None or settings is None:
        return
    close_registry(state.registry)
    if not state.results or hasattr(config, "workerinput"):
        return  # an xdist worker's claims reach the controller, which writes the one report
    collector = config.pluginmanager.get_plugin("claims-collector")
    if collector is not None:
        state.results[:] = collector.in_collection_order(state.results)
    report = build_report(
        seed=settings.seed,
        resamples=settings.resamples,
        command=reproduce_command(config.invocation_params.args, settings.seed),
        started=state.started,
        duration_s=time.perf_counter() - state.t0,
        claims=state.results,
        models=state.registry.models(),
        datasets=state.registry.datasets(),
        versions=collect_versions(),
        git=git_state(config.rootpath),
    )
    state.report = report
    try:
        state.report_path = write_report(report, settings.report_dir)
    except (HarnessError, OSError) as exc:
        state.report_error = str(exc)
    try:  # the study's plots are on disk by now (session fixtures have torn down)
        from harness.reports import write_html

        state.html_path = write_html(report, settings.report_dir)
    except (HarnessError, OSError) as exc:
        state.html_error = str(exc)
    _compare_with_baseline(session, state)


def _compare_with_baseline(session: pytest.Session, state: _SessionState) -> None:
    """--claims-baseline: diff this run's report with the baseline and fail the session on a
    regression; --claims-update-baseline: write this run's report as the new baseline."""
    config = session.config
    given = config.getoption("claims_baseline")
    update = config.getoption("claims_update_baseline")
    if given is None and not update:
        return
    from harness.reports import DEFAULT_TOLERANCE, diff_reports, write_baseline
    from harness.reports import read_report

    where = Path(config.invocation_params.dir) / given if given else Path(config.rootpath) / "reports" / "baseline.json"
    assert state.report is not None
    if update:
        state.baseline_note = f"baseline written: {write_baseline(state.report, where)}"
        return
    tolerance = config.getoption("claims_tolerance") or DEFAULT_TOLERANCE
    try:
        state.diff = diff_reports(read_report(where), state.report, tolerance=tolerance,
                                  base_label=str(given), new_label=str(state.report_path or "this run"))
    except HarnessError as exc:
        state.baseline_note = f"baseline not compared: {exc}"
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return
    if state.diff.regressed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(SESSION_KEY, None)
    if state is None or state.report is None:
        return
    from rich.console import Console

    from harness.reports import render_terminal

    color = bool(terminalreporter.hasmarkup)
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=TERMINAL_WIDTH, force_terminal=color,
        color_system="standard" if color else None, highlight=False, emoji=False,
    )
    render_terminal(state.report, console, path=state.report_path)
    terminalreporter.write_sep("=", "claims")
    terminalreporter.write(buffer.getvalue())
    if state.report_error is not None:
        terminalreporter.write_line(f"claims: report not written: {state.report_error}", red=True)
    if state.html_path is not None:
        terminalreporter.write_line(f"html report: {state.html_path}")
    if state.html_error is not None:
        terminalreporter.write_line(f"claims: html report not written: {state.html_error}", red=True)
    if state.diff is not None:
        from harness.reports import render_diff

        terminalreporter.write_sep("=", "claims vs baseline")
        terminalreporter.write(render_diff(state.diff, width=TERMINAL_WIDTH))
    if state.baseline_note is not None:
        terminalreporter.write_line(f"claims: {state.baseline_note}")
