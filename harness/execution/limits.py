"""Resource limits for the child that runs a program: the plan, its clamping, and applying it.

The plan is a mapping from a ``resource.RLIMIT_*`` name to a ``(soft, hard)`` pair. Every pair
is clamped to the limit the calling process already has, because asking ``setrlimit`` for more
than the current hard limit raises ``ValueError`` for an unprivileged process (root may raise a
hard limit, but a clamped plan behaves the same either way).

Pitfalls that shape the plan:

- ``RLIMIT_CPU`` is the only limit that stops a loop running inside C code (``sum(range(10**12))``,
  a regex that backtracks): a timer signal's Python handler runs only between bytecodes, so an
  in-process alarm never fires there. The kernel sends SIGXCPU at the soft limit and SIGKILL at
  the hard one. The supervisor's wall-clock SIGKILL is the other stop.
- ``RLIMIT_NPROC`` counts every process of the *real user*, not of this run, so the plan allows
  the user's current count plus the run's allowance. It does not bind for root (CAP_SYS_ADMIN /
  CAP_SYS_RESOURCE bypass it): there, the supervisor's kill of every descendant is what bounds a
  burst of forks.
- ``RLIMIT_AS`` caps address space, not resident memory; Python itself needs about 16 MB of it to
  start here (measured on CPython 3.11), so tiny ``memory_mb`` values stop the interpreter before
  the program runs.

Stdlib only: the supervisor script loads this file by path, without importing ``harness``.
"""

from __future__ import annotations

import math
import os
import resource

__all__ = ["clamp", "plan_limits", "apply_limits", "count_user_processes"]

_INF = resource.RLIM_INFINITY


def clamp(soft: int, hard: int, current_hard: int) -> tuple[int, int]:
    """Return ``(soft, hard)`` lowered to ``current_hard`` where that is finite.

    ``resource.RLIM_INFINITY`` (-1) stands for no limit; the soft value never exceeds the hard.
    """
    if current_hard != _INF:
        hard = current_hard if hard == _INF else min(hard, current_hard)
        soft = hard if soft == _INF else min(soft, hard)
    elif hard != _INF:
        soft = hard if soft == _INF else min(soft, hard)
    return soft, hard


def count_user_processes(uid: int) -> int:
    """Number of processes whose real user id is ``uid`` (read from ``/proc``; 0 if unreadable)."""
    count = 0
    try:
        names = os.listdir("/proc")
    except OSError:
        return 0
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("Uid:"):
                        count += int(line.split()[1]) == uid
                        break
        except (OSError, ValueError, IndexError):
            continue
    return count


def plan_limits(
    *,
    memory_mb: int,
    cpu_s: float,
    file_size_mb: int,
    open_files: int,
    processes: int,
) -> dict[str, tuple[int, int]]:
    """The ``{RLIMIT name: (soft, hard)}`` plan for one child, clamped to this process's limits.

    ``memory_mb`` caps the address space (MiB); ``cpu_s`` the CPU time (seconds, rounded up; the
    hard limit, where SIGKILL follows SIGXCPU, is one second later); ``file_size_mb`` the size of
    any file written (MiB); ``open_files`` the number of descriptors; ``processes`` the number of
    processes the run may add to the user's current count (not binding for root). Core dumps off.
    """
    cpu = max(1, math.ceil(cpu_s))
    wanted = {
        "RLIMIT_CPU": (cpu, cpu + 1),
        "RLIMIT_FSIZE": (file_size_mb << 20, file_size_mb << 20),
        "RLIMIT_NOFILE": (open_files, open_files),
        "RLIMIT_CORE": (0, 0),
    }
    if hasattr(resource, "RLIMIT_NPROC"):
        allowed = count_user_processes(os.getuid()) + processes
        wanted["RLIMIT_NPROC"] = (allowed, allowed)
    wanted["RLIMIT_AS"] = (memory_mb << 20, memory_mb << 20)  # last: little memory after it
    plan = {}
    for name, (soft, hard) in wanted.items():
        _, current_hard = resource.getrlimit(getattr(resource, name))
        plan[name] = clamp(soft, hard, current_hard)
    return plan


def apply_limits(plan: dict[str, tuple[int, int]]) -> None:
    """Set every limit of ``plan``, in its order, on the caller (run in the child before ``exec``).

    Raises ``ValueError`` or ``OSError`` from ``setrlimit`` if a pair was not clamped first.
    """
    steps = [(getattr(resource, name), pair) for name, pair in plan.items()]
    for which, pair in steps:
        resource.setrlimit(which, pair)
