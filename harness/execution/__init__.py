"""Generated code run against its tests in a contained child process, one at a time or a pool.

Not a security sandbox: it contains the accidents of generated code (loops, memory bombs, fork
bursts, stray children, huge output, early exits), not an attacker; `harness.execution.run`
says plainly what is and is not contained. The modules:

    run         run_tests, run_many (a thread pool), MIN_MEMORY_MB, COMPARE_MODES; what is and is
                not contained, and the strict comparison mode
    result      ExecutionResult, Program, STATUSES and classify (supervisor answer -> status)
    supervisor  the per-run supervisor process: subreaper, limits, wall clock, kill-all, cleanup
    bootstrap   the child's script: block sockets, run setup, program, each test; report events
    limits      the RLIMIT plan for the child, clamped to the current hard limits
    procs       /proc: descendants of a process, subreaper and parent-death flags, kill and reap
"""

from harness.execution.result import STATUSES, ExecutionResult, Program
from harness.execution.run import COMPARE_MODES, MIN_MEMORY_MB, run_many, run_tests

__all__ = ["run_tests", "run_many", "ExecutionResult", "Program", "STATUSES", "MIN_MEMORY_MB",
           "COMPARE_MODES"]
