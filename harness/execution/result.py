"""What one run of a program against its tests came to: `ExecutionResult`, `Program`, `classify`.

`classify` turns the supervisor's answer (events the child's bootstrap wrote, exit status, whether
the wall clock ran out, captured output) into one status:

    passed        every test ran and none raised: the bootstrap's ``done`` event was seen, after
                  the phase of setup, program and every test, each once and in order
    failed        a test raised AssertionError; ``failed_test`` is its text
    error         setup, program or a test raised something else (SystemExit included): type, message
    syntax_error  the program does not compile
    timeout       the wall clock ran out, or the child reached the CPU limit: it died of SIGXCPU, or
                  it used at least the soft ``RLIMIT_CPU`` of CPU time (then the kernel sent SIGXCPU,
                  whatever the program did with that signal: died of the hard limit's SIGKILL, or
                  handled or ignored it and went on), whatever it reported
    memory        MemoryError under the address-space limit, or Python could not even start in it
    crashed       the child died without a verdict: ``os._exit``, a signal, a closed event pipe; or
                  it reported ``done`` without every phase before it (not a report to trust)
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.execution.bootstrap import CHANNEL_LOST

__all__ = ["STATUSES", "ExecutionResult", "Program", "classify"]

STATUSES = ("passed", "failed", "error", "syntax_error", "timeout", "memory", "crashed")

_MEMORY_SIGNS = ("MemoryError", "Cannot allocate memory", "failed to map segment",
                 "out of memory", "std::bad_alloc")


@dataclass(frozen=True)
class Program:
    """A program and the tests it must pass; ``setup`` runs before the program (e.g. imports)."""

    code: str
    tests: Sequence[str]
    setup: str = ""


@dataclass(frozen=True)
class ExecutionResult:
    """The outcome of running one program against its tests in a contained child process.

    ``status`` is one of `STATUSES`; ``detail`` says in words what happened. ``duration_s`` is the
    child's wall time in seconds. ``exit_code`` is the child's exit status, ``signal`` the signal
    that killed it (None when it exited). ``stdout``/``stderr`` hold at most ``output_limit``
    bytes each (decoded as UTF-8 with replacement); ``stdout_bytes``/``stderr_bytes`` count all
    that was written. ``failed_test`` is the first failing assert's text; ``error_type`` and
    ``error_message`` describe the exception of an ``error`` (or the compile error).
    ``tests_run`` counts the tests that finished without raising (the tests whose phase the child
    reported in the expected order, less the last unless it reported ``done`` after all of them);
    ``truncated`` is True if stdout or stderr was cut to the limit. ``limits`` is the
    ``{RLIMIT name: (soft, hard)}`` plan applied.
    """

    status: str
    detail: str
    duration_s: float = 0.0
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    failed_test: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    tests_run: int = 0
    truncated: bool = False
    limits: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        """True only for status ``passed``."""
        return self.status == "passed"



def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _where(phase: str | None, n_tests: int) -> str:
    if phase is None:
        return "before the program started"
    if phase.startswith("test "):
        return f"in test {int(phase.split()[1]) + 1} of {n_tests}"
    return f"in the {phase}"


def _cpu_soft_limit(answer: dict[str, Any]) -> float | None:
    """The soft RLIMIT_CPU of the run's plan in seconds, None when unknown or unlimited."""
    pair = answer.get("plan", {}).get("RLIMIT_CPU")
    if not pair or pair[0] is None or pair[0] < 0:
        return None
    return float(pair[0])


def classify(answer: dict[str, Any], *, n_tests: int, timeout_s: float, memory_mb: int) -> ExecutionResult:
    """Build the `ExecutionResult` of a supervisor's ``answer`` (see `supervisor.supervise`)."""
    events = answer.get("events", [])
    code = answer.get("returncode")
    exit_code = code if code is not None and code >= 0 else None
    signum = -code if code is not None and code < 0 else None
    phases = [e.get("phase") for e in events if e.get("e") == "phase"]
    last_phase = phases[-1] if phases else None
    expected = ["setup", "code"] + [f"test {i}" for i in range(n_tests)]
    complete = phases == expected
    in_order = 0  # how many phases agree with the expected order, from the first
    while in_order < min(len(phases), len(expected)) and phases[in_order] == expected[in_order]:
        in_order += 1
    tests_started = max(in_order - 2, 0)
    final = next((e for e in reversed(events) if e.get("e") not in ("start", "phase")), None)
    kind = final.get("e") if final else None
    common = dict(duration_s=answer.get("duration_s", 0.0), exit_code=exit_code, signal=signum,
                  stdout=answer.get("stdout", ""), stderr=answer.get("stderr", ""),
                  stdout_bytes=answer.get("stdout_bytes", 0), stderr_bytes=answer.get("stderr_bytes", 0),
                  limits=answer.get("plan", {}),
                  truncated=any(answer.get(f"{name}_bytes", 0) > answer.get(f"{name}_kept", 0)
                                for name in ("stdout", "stderr")),
                  tests_run=tests_started if kind == "done" and complete else max(tests_started - 1, 0))
    stderr = answer.get("stderr", "")
    cpu_limit = _cpu_soft_limit(answer)
    cpu_used = answer.get("cpu_s")
    if (not answer.get("wall_killed") and not answer.get("stopped") and cpu_limit is not None
            and cpu_used is not None and cpu_used >= cpu_limit):
        if signum == signal.SIGXCPU:
            how = "SIGXCPU"
        elif signum == signal.SIGKILL:
            how = "SIGKILL at the hard limit: the program handled or ignored SIGXCPU"
        elif signum is not None:
            how = f"SIGXCPU, then {_signal_name(signum)}"
        else:
            how = "SIGXCPU, which the program handled or ignored, going on past the limit"
        return ExecutionResult("timeout", f"stopped by the CPU-time limit of {cpu_limit:g} s ({how}; it used "
                               f"{cpu_used:.2f} s of CPU) {_where(last_phase, n_tests)}", **common)
    if kind == "done" and complete:
        return ExecutionResult("passed", f"all {n_tests} tests passed", **common)
    if kind == "done":
        shown = repr(phases[:8])[:-1] + (", ...]" if len(phases) > 8 else "]")
        return ExecutionResult("crashed", f"the child reported that every test passed, but the phases it "
                               f"reported, {shown}, are not setup, code and each of the {n_tests} tests once "
                               f"and in order; that report is not to be trusted and is not a pass", **common)
    if kind == "failed":
        text = final.get("test", "")
        message = final.get("msg", "")
        detail = f"{_where(final.get('phase'), n_tests)} failed: {text}"
        detail += f" ({message})" if message else ""
        return ExecutionResult("failed", detail, failed_test=text, error_type="AssertionError",
                               error_message=message, **common)
    if kind == "syntax_error":
        err, msg = final.get("type", "SyntaxError"), final.get("msg", "")
        return ExecutionResult("syntax_error", f"the program does not compile: {err}: {msg}",
                               error_type=err, error_message=msg, **common)
    if kind == "error":
        err, msg = final.get("type", "Exception"), final.get("msg", "")
        detail = f"{err}: {msg} raised {_where(final.get('phase'), n_tests)}"
        if err == "SystemExit":
            detail += " (the program left before every test ran; that is not a pass)"
        return ExecutionResult("error", detail, error_type=err, error_message=msg, **common)
    if kind == "memory":
        return ExecutionResult("memory", f"MemoryError {_where(final.get('phase'), n_tests)} under the "
                               f"address-space limit of {memory_mb} MB", error_type="MemoryError", **common)
    if answer.get("stopped"):
        return ExecutionResult("crashed", "the run was stopped from outside (SIGTERM to its supervisor)",
                               **common)
    if answer.get("wall_killed"):
        where = _where(last_phase, n_tests) if events else (
            f"before the program started (Python never finished starting; too little memory_mb="
            f"{memory_mb}?)")
        return ExecutionResult("timeout", f"still running after the wall-clock limit of {timeout_s:g} s "
                               f"{where}; its process group was killed", **common)
    if signum == signal.SIGXCPU:
        return ExecutionResult("timeout", f"stopped by the CPU-time limit (SIGXCPU) "
                               f"{_where(last_phase, n_tests)}", **common)
    if not events:
        if any(sign in stderr for sign in _MEMORY_SIGNS):
            return ExecutionResult("memory", f"the child Python could not start under memory_mb="
                                   f"{memory_mb} (Python needs about 16 MB of address space to start)",
                                   **common)
        how = f"exit code {exit_code}" if signum is None else f"signal {_signal_name(signum)}"
        return ExecutionResult("crashed", f"the child never started ({how}); stderr: {stderr[-500:]!r}",
                               **common)
    if any(sign in stderr[-2000:] for sign in _MEMORY_SIGNS):
        return ExecutionResult("memory", f"the child died out of memory {_where(last_phase, n_tests)} "
                               f"(limit {memory_mb} MB)", **common)
    how = f"exited with code {exit_code}" if signum is None else f"was killed by {_signal_name(signum)}"
    if exit_code == CHANNEL_LOST:
        how += " (the bootstrap's exit when the program closed or replaced its event pipe)"
    if signum == signal.SIGKILL:
        how += " (not the CPU limit: the kernel's out-of-memory killer, or the program itself)"
    return ExecutionResult("crashed", f"the child {how} {_where(last_phase, n_tests)}, before every test "
                           f"ran (os._exit or a crash); that is not a pass", **common)
