"""The run's lifecycle: configure, session start, session finish and the terminal summary.

`pytest_configure` turns the options into settings and registers the marker and the claim
collector; at session end the report is built (`reproduce_command` gives its command line),
written as ``report.json`` and HTML, compared with ``--claims-baseline``, and summarised as a
Rich table (Rich is imported only here, to render it).
"""

from __future__ import annotations

import datetime as _dt
import io
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.resources import take_notes
from harness.verdicts.evidence import close_registry, open_registry
from harness.reports import StudyRow, build_report, collect_versions, git_state, write_report

from .marker import MARKER_HELP
from .options import settings_from_options
from .state import SESSION_KEY, SETTINGS_KEY, _SessionState
from .live import LiveHooks
from .thresholds import resolved_choices
from .transport import _ClaimCollector
from .workers import WorkerDeaths

TERMINAL_WIDTH = 160


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
            saes=config.getoption("claims_sae"),
            sizes=config.getoption("claims_n"),
        )
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from exc
    config.stash[SETTINGS_KEY] = settings
    config.pluginmanager.register(_ClaimCollector(config), "claims-collector")
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(WorkerDeaths(config), "claims-worker-deaths")
    config.pluginmanager.register(LiveHooks(config), "claims-live")
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
        studies=[StudyRow(**c.to_dict()) for c in resolved_choices(config)],
        # recorded outside any claim: before a claim (here or on a worker, carried with that claim) or
        # after the last one; the claims' own notes come with them
        notes=[*state.run_notes, *take_notes()],
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
