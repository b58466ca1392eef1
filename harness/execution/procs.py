"""Processes as ``/proc`` shows them: parents, descendants, the subreaper flag, kill-and-reap.

The supervisor of a run marks itself a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``), so a
process that double-forks and calls ``setsid`` still reparents to it when its parent exits; every
process the run started is then a descendant of the supervisor by the ``PPid`` chain, and
``kill_descendants`` finds and SIGKILLs them all, repeating until none is left (a process may fork
between one scan and its kill). Linux only; elsewhere the subreaper call is a no-op.

Stdlib only: the supervisor script loads this file by path, without importing ``harness``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

__all__ = ["parent_of", "cpu_seconds", "descendants", "set_subreaper", "set_parent_death_signal",
           "kill_descendants", "alive"]

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _prctl(option: int, value: int) -> bool:
    if _LIBC is None:
        return False
    return _LIBC.prctl(option, ctypes.c_ulong(value), 0, 0, 0) == 0


def set_subreaper() -> bool:
    """Make the calling process the reaper of its orphaned descendants; True if the call worked."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def set_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send ``signum`` to the caller when the thread that forked it exits."""
    return _prctl(_PR_SET_PDEATHSIG, signum)


def _stat(pid: int) -> tuple[str, int] | None:
    """``(state, ppid)`` of ``pid`` from ``/proc/PID/stat``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2:].split()
    try:
        return fields[0].decode(), int(fields[1])
    except (IndexError, ValueError):
        return None


def cpu_seconds(pid: int) -> float | None:
    """The CPU time (user + system, seconds) process ``pid`` itself used, not its children's.

    Read from the process's ``CPUCLOCK_PROF`` clock (``clock_gettime`` of a clock id made from the
    pid): the tick-based clock the kernel compares with ``RLIMIT_CPU``, so a process that reached
    the limit reads at least the limit. (``/proc/PID/stat``'s utime + stime, the fallback, is
    rescaled to the scheduler's runtime and may read a few percent less.) Both stay readable
    until the process is reaped (a zombie keeps them). None if the process is gone.
    """
    import time

    try:
        return time.clock_gettime((~pid) << 3)  # make_process_cpuclock(pid, CPUCLOCK_PROF)
    except (AttributeError, OSError, OverflowError):
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
        fields = raw[raw.rfind(b")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def parent_of(pid: int) -> int | None:
    """The parent pid of ``pid``, or None if it no longer exists."""
    stat = _stat(pid)
    return None if stat is None else stat[1]


def alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (an exited process not yet reaped)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def descendants(root: int, *, include_zombies: bool = False) -> list[int]:
    """Pids whose ``PPid`` chain leads to ``root`` (``root`` itself excluded), from one scan."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _stat(int(name))
        if stat is None or (not include_zombies and stat[0] in ("Z", "X")):
            continue
        parents[int(name)] = stat[1]
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], list(children.get(root, []))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _reap() -> None:
    """Collect every exited child of the caller (orphans reparented to a subreaper included)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_descendants(root: int | None = None, *, deadline_s: float = 5.0) -> int:
    """SIGKILL every descendant of ``root`` (default: the caller) and reap those that are ours.

    Repeats scan-kill-reap until a scan finds no live descendant or ``deadline_s`` seconds pass.
    Returns how many distinct processes were sent SIGKILL.
    """
    root = os.getpid() if root is None else root
    killed: set[int] = set()
    end = time.monotonic() + deadline_s
    while True:
        live = descendants(root)
        if not live:
            break
        for pid in live:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        if root == os.getpid():
            _reap()
        if time.monotonic() > end:
            break
        time.sleep(0.005)
    if root == os.getpid():
        _reap()
    return len(killed)
