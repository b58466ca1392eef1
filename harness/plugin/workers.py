"""Claims whose pytest-xdist worker died: failed with the reason, never silently missing.

A worker that dies while it runs a claim (killed by the kernel's out-of-memory killer, a
segfault in a native kernel, a host that goes away) sends no report for it. pytest-xdist's
controller then makes a failed report of its own (``when="???"``, "worker 'gw0' crashed while
running ..."), which carries none of the claim's words, so the claim would be missing from
``report.json`` and its baseline comparison. Under ``--dist loadgroup`` (and ``loadscope`` /
``loadfile``) xdist also puts the crashed test back in its group's queue, so a replacement
worker runs it again and dies again, until ``--max-worker-restart`` is spent
(`harness.plugin.scheduling` keeps the crashed test out of the queue, as ``--dist load`` does).

So each worker sends, on a claim's setup report, the claim as it will be reported
(`STARTED_PROPERTY`); the controller keeps it until the claim's own result arrives. When a
worker dies, `WorkerDeaths` turns the claim it was running into a failed `ClaimResult` whose
message names the worker and how it ended (the exit status or signal where the gateway is a
local process); the claim travels on
xdist's crash report as any claim does (`harness.plugin.transport`), so the terminal, the JSON,
HTML and JUnit reports and the baseline diff all see it. At the session's end, a claim that
started and never finished (the run was stopped) is failed the same way, and tests that never
started because no worker was left are listed in a run note. The report itself is written
once, atomically, by the controller (`harness.reports.write_report`): no worker writes one.
"""

from __future__ import annotations

import dataclasses
import json
import signal
from typing import Any

import pytest

from harness.reports import ClaimResult, claim_from_dict
from harness.resources import note

from .fixtures import without_group
from .state import SESSION_KEY

STARTED_PROPERTY = "claims_started_json"


def started_properties(claim: ClaimResult) -> list[tuple[str, str]]:
    """The user properties a claim's setup report carries on an xdist worker: the claim as it
    will be reported, failed with no message yet (filled in only if its worker dies)."""
    return [(STARTED_PROPERTY, json.dumps(claim.to_dict(), allow_nan=False, default=str))]


def exit_description(node: Any) -> str:
    """How the worker process behind xdist node `node` ended, in words ("" when not known: a
    remote gateway, or a process not yet reaped)."""
    popen = getattr(getattr(getattr(node, "gateway", None), "_io", None), "popen", None)
    if popen is None:
        return ""
    try:
        code = popen.wait(timeout=2.0)
    except Exception:  # noqa: BLE001 - still running or not a local process: not known
        return ""
    if code is None:
        return ""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        said = f"killed by {name}"
        if -code == signal.SIGKILL:
            said += " (as the kernel's out-of-memory killer ends a process)"
        return said
    return f"exit status {code}"


class WorkerDeaths:
    """Registered on the xdist controller: the claims each worker started, and the failed claim
    of each one a dying worker was running (see the module docstring)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.started: dict[str, dict] = {}       # nodeid -> the claim (dict) its setup report carried
        self.finished: set[str] = set()          # nodeids whose teardown (or crash) report arrived
        self.ends: dict[str, str] = {}           # worker id -> how it went down

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nodeid = without_group(report.nodeid)
        if report.when == "setup":
            props = dict(report.user_properties)
            if STARTED_PROPERTY in props:
                self.started[nodeid] = json.loads(props[STARTED_PROPERTY])
        elif report.when in ("teardown", "???"):
            self.finished.add(nodeid)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        if error is None:
            return
        how = exit_description(node)
        self.ends[node.gateway.id] = f"{how}; xdist: {error}" if how else f"xdist: {error}"

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: Any, sched: Any) -> None:
        from .transport import claim_properties

        worker = getattr(getattr(report, "node", None), "gateway", None)
        wid = getattr(worker, "id", "?")
        claim = self._failed(without_group(crashitem), f"worker {wid} died while running this claim "
                             f"({self.ends.get(wid, 'it stopped answering')}); the claims it had not started "
                             "went back to the queue")
        if claim is not None:
            report.user_properties.extend(claim_properties(claim))

    def _failed(self, nodeid: str, message: str) -> ClaimResult | None:
        record = self.started.get(nodeid)
        if record is None:
            return None
        return dataclasses.replace(claim_from_dict(record), outcome="failed", message=message)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Before the report is built: claims that started and never finished are failed, and
        tests that never started are named in a note."""
        state = self.config.stash.get(SESSION_KEY, None)
        if state is None:
            return
        have = {c.nodeid for c in state.results}
        for nodeid in self.started:
            if nodeid not in self.finished and nodeid not in have:
                state.results.append(self._failed(nodeid, "its worker was still running it when the run "
                                                   "stopped: no result came back"))
        seen = self.finished | set(self.started)
        collector = self.config.pluginmanager.get_plugin("claims-collector")   # every collected test, in order
        never = [i for i in (collector.order if collector is not None else ()) if i not in seen]
        if never and self.ends:
            shown = ", ".join(never[:10]) + (f", and {len(never) - 10} more" if len(never) > 10 else "")
            note(f"{len(never)} collected tests never ran: workers died ({len(self.ends)}) and none was left "
                 f"to run them (xdist's --max-worker-restart): {shown}")
