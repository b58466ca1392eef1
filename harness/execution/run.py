"""Run generated programs against their tests: `run_tests` for one, `run_many` for a batch.

Each program runs in a fresh ``python -I`` child under a dedicated supervisor process (see
`harness.execution.supervisor`); nothing of the program ever runs in the calling process, and
`run_tests` returns only after the supervisor has killed and reaped every process the run started
and removed its scratch directory.

This is NOT a security sandbox for hostile code, like the reference harnesses of the field
(OpenAI human-eval's ``execution.py``, bigcode-evaluation-harness): it contains the accidents of
generated code.

What is contained: wall-clock time (SIGKILL of the child's process group, then of every
descendant) and CPU time (RLIMIT_CPU, which also stops loops in C code); address space, file
size and open files (per process: each forked child gets the same limits again); the number of
processes (RLIMIT_NPROC, except for root, where it does not bind: a fork burst then runs until
the run ends and every descendant is killed); processes that double-fork and ``setsid`` (the
supervisor is their subreaper); relative paths (cwd, HOME and TMPDIR are a fresh scratch
directory, removed afterwards); stdin (``/dev/null``); output (read as it comes, at most
``output_limit`` bytes kept per stream); internet sockets created from Python (refused); early
exits (a test counts only once the child reports it ran, ``sys.exit`` and ``os._exit`` included).

How the tests are judged is contained too (``harness.execution.bootstrap``): the program cannot
change it by rebinding or deleting builtins (``builtins.exec``, ``builtins.AssertionError``),
patching ``sys``, ``os`` or ``json`` (``sys.exit``, ``os._exit``, ``sys.stdout``), installing
trace or profile hooks, or lowering the recursion limit: what the test loop and its reports use
is bound before the program runs, and each test runs with the builtins as they were before the
program ran. A run passes only when the child reported the phase of setup, program and every
test, in order, and then ``done``. Death by the CPU limit is a ``timeout`` whatever the program
did with SIGXCPU (the supervisor reads the child's CPU time).

What is not: absolute paths (without root nothing stops a write to ``/tmp`` or any file the user
may write); the network from C code or subprocesses; a program that kills its supervisor or reads
the bootstrap's frames or memory (``sys._getframe``, ``gc``, ``ctypes``) to forge its verdict, or
that closes the bootstrap's event pipe (its run is then ``crashed``, never ``passed``); modules
the tests use that the program patches (``math.isclose = lambda *a, **k: True`` changes what a
test calling it checks: only builtins are restored); processes started through a daemon (``at``,
systemd); CPU and memory summed over a fork burst (each process has its own limits).

Nor is equality: with the default ``compare="default"`` a test runs as written, so ``assert
f(x) == y`` passes for any object whose ``__eq__`` returns True (a class the program defines, a
mock), and ``==`` is Python's (``1 == 1.0 == True``, ``(1, 2) != [1, 2]``, a ``Counter`` equals
a ``dict``). ``compare="strict"`` closes that for the usual form of a test of generated code:
a test that is one ``assert RESULT == EXPECTED`` (optionally ``, message``) passes only when
the result has exactly the expected value's type and equals it with the expected value on the
left, so a rigged ``__eq__`` of the result decides nothing. The allowances: ``bool``, ``int``
and ``float`` may stand for one another (their builtin comparison decides, so ``f(x) == 3``
passes for ``3.0``, as in Python), and where a ``dict`` is expected, ``collections.Counter``,
``defaultdict`` and ``OrderedDict`` may stand for it (the standard library's dicts, compared
through ``dict``'s own methods: four of MBPP's reference solutions return a ``Counter`` or a
``defaultdict`` for an expected dict literal). Lists, tuples and dicts are compared the same way
item by item (dict keys, like set elements, must be builtin scalars or tuples of them, which
builtin hashing and equality then match); values of any other type (a class the program
defines, a ``Fraction``) must have the expected's exact type and then the expected's own
``__eq__`` decides. So other subclasses (a ``namedtuple`` for a ``tuple``, an ``int`` subclass,
a ``frozenset`` for a ``set``) fail where Python's ``==`` passes. Tests of other forms (several
statements, ``assert a == b == c``, ``assert f(x)``, ``assert abs(f(x) - y) < 1e-9``) run as
given in both modes.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from harness.errors import DataError
from harness.execution.result import ExecutionResult, Program, classify

__all__ = ["run_tests", "run_many", "MIN_MEMORY_MB", "COMPARE_MODES"]

_SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "supervisor.py")
_GRACE_S = 30.0
MIN_MEMORY_MB = 32
COMPARE_MODES = ("default", "strict")
_LIMIT_NAMES = {"timeout_s", "memory_mb", "output_limit", "cpu_s", "file_size_mb", "open_files",
                "processes", "compare"}


def _prepare(
    code: str,
    tests: Sequence[str],
    *,
    setup: str = "",
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    output_limit: int = 64 * 1024,
    cpu_s: float | None = None,
    file_size_mb: int = 64,
    open_files: int = 256,
    processes: int = 64,
    compare: str = "default",
) -> dict:
    """Check the arguments of `run_tests` (same signature) and return the supervisor's job."""
    if not isinstance(code, str):
        raise DataError(f"code must be a str of Python source, got {type(code).__name__}")
    if isinstance(tests, str) or not isinstance(tests, Sequence):
        raise DataError(f"tests must be a sequence of assert statements (str), got {type(tests).__name__}")
    tests = list(tests)
    if not tests:
        raise DataError("tests is empty: a program with no tests cannot pass; give at least one assert")
    for i, test in enumerate(tests):
        if not isinstance(test, str) or not test.strip():
            raise DataError(f"tests[{i}] must be a non-empty str, got {test!r}")
        try:
            compile(test, f"<test {i}>", "exec")
        except SyntaxError as exc:
            raise DataError(f"tests[{i}] does not parse ({exc.msg}): {test!r}") from None
    if not isinstance(compare, str) or compare not in COMPARE_MODES:
        raise DataError(f"compare must be one of {list(COMPARE_MODES)}, got {compare!r}")
    if not isinstance(setup, str):
        raise DataError(f"setup must be a str, got {type(setup).__name__}")
    try:
        compile(setup, "<setup>", "exec")
    except SyntaxError as exc:
        raise DataError(f"setup does not parse ({exc.msg}): {setup!r}") from None
    for name, value in (("timeout_s", timeout_s), ("cpu_s", cpu_s)):
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise DataError(f"{name} must be a positive number of seconds, got {value!r}")
    if isinstance(memory_mb, int) and not isinstance(memory_mb, bool) and 0 < memory_mb < MIN_MEMORY_MB:
        raise DataError(f"memory_mb={memory_mb} is below what the child needs: Python takes about 16 MB "
                        f"of address space to start (and may spin, not fail, near that), so give "
                        f"memory_mb >= {MIN_MEMORY_MB}")
    for name, value in (("memory_mb", memory_mb), ("output_limit", output_limit),
                        ("file_size_mb", file_size_mb), ("open_files", open_files),
                        ("processes", processes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "processes" else 1):
            raise DataError(f"{name} must be a positive int, got {value!r}")
    return {"code": code, "setup": setup, "tests": tests, "timeout_s": float(timeout_s),
            "cpu_s": float(cpu_s if cpu_s is not None else timeout_s + 1), "memory_mb": memory_mb,
            "output_limit": output_limit, "file_size_mb": file_size_mb, "open_files": open_files,
            "processes": processes, "compare": compare}


def run_tests(
    code: str,
    tests: Sequence[str],
    *,
    setup: str = "",
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    output_limit: int = 64 * 1024,
    cpu_s: float | None = None,
    file_size_mb: int = 64,
    open_files: int = 256,
    processes: int = 64,
    compare: str = "default",
) -> ExecutionResult:
    """Run ``code`` against ``tests`` (assert statements) in a contained child; return the result.

    The child runs ``setup``, then ``code``, then each test in turn, in one namespace.
    ``timeout_s`` is the wall-clock limit in seconds; ``cpu_s`` the CPU-time limit in seconds
    (default: ``timeout_s`` + 1, so a loop in C code is stopped even if the wall clock is not
    watched); ``memory_mb`` the address-space limit in MiB (at least `MIN_MEMORY_MB`: Python
    needs about 16 MB to start); ``output_limit`` the bytes of stdout and of stderr kept;
    ``file_size_mb`` the largest file the program may write (MiB); ``open_files`` the descriptor
    limit; ``processes`` how many processes the run may add to the user's count (RLIMIT_NPROC; not
    binding for root). Limits above this process's hard limits are clamped to them.
    ``compare`` is ``"default"`` (every test runs as written) or ``"strict"`` (a test of the form
    ``assert RESULT == EXPECTED`` passes only when the result has exactly the expected's type and
    equals it, judged by the expected side: see this module's docstring for the allowances).

    Raises `DataError` for bad arguments: empty ``tests``, a test or ``setup`` that does not parse,
    non-positive limits, ``memory_mb`` below `MIN_MEMORY_MB`, a ``compare`` not in
    `COMPARE_MODES`. A program that does not parse is a result (``syntax_error``), not an error.
    Raises RuntimeError if the supervisor itself fails (a bug here, not in the program).
    """
    return _execute(_prepare(code, tests, setup=setup, timeout_s=timeout_s, memory_mb=memory_mb,
                             output_limit=output_limit, cpu_s=cpu_s, file_size_mb=file_size_mb,
                             open_files=open_files, processes=processes, compare=compare))


def _execute(job: dict) -> ExecutionResult:
    """Run a prepared job under its own supervisor and classify the answer."""
    return classify(_supervise(job), n_tests=len(job["tests"]), timeout_s=job["timeout_s"],
                    memory_mb=job["memory_mb"])


def _supervise(job: dict) -> dict:
    """Start a supervisor for ``job``, wait for its answer, and never leave it running."""
    proc = subprocess.Popen([sys.executable, "-I", _SUPERVISOR], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            close_fds=True, cwd="/")
    try:
        out, err = proc.communicate(json.dumps(job).encode("utf-8"), timeout=job["timeout_s"] + _GRACE_S)
    except BaseException:
        _stop(proc)
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"the execution supervisor failed (exit {proc.returncode}): "
                           f"{err.decode('utf-8', 'replace')[-2000:]}")
    try:
        return json.loads(out)
    except ValueError:
        raise RuntimeError(f"the execution supervisor answered no JSON: {out[:200]!r}; "
                           f"stderr: {err.decode('utf-8', 'replace')[-2000:]}") from None


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the supervisor (it then kills the run's processes), SIGKILL it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _as_program(item: Program | tuple, index: int) -> Program:
    if isinstance(item, Program):
        return item
    if isinstance(item, tuple) and len(item) in (2, 3):
        return Program(*item)
    raise DataError(f"programs[{index}] must be a Program or a (code, tests[, setup]) tuple, got {item!r}")


def run_many(programs: Sequence[Program | tuple], *, workers: int = 2, **limits) -> list[ExecutionResult]:
    """Run every program with `run_tests` through ``workers`` threads; results in input order.

    Each worker thread starts one supervisor (and so one fresh child) per program, so a result
    never depends on the pool size. ``limits`` are `run_tests`' keyword arguments (``timeout_s``,
    ``memory_mb``, ..., and ``compare``), the same for every program. Raises `DataError` for a
    malformed program, an unknown keyword or a bad value of one (a ``compare`` not in
    `COMPARE_MODES`), ``workers`` < 1, and for an empty `programs` (an empty problem set is a
    mistake upstream: a split or selection that came out empty), before anything runs.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise DataError(f"workers must be an int >= 1, got {workers!r}")
    unknown = sorted(set(limits) - _LIMIT_NAMES)
    if unknown:
        raise DataError(f"run_many got unknown keyword arguments {unknown}; known: {sorted(_LIMIT_NAMES)}")
    items = [_as_program(item, i) for i, item in enumerate(programs)]
    if not items:
        raise DataError("programs is empty: nothing to run; check the problem set or selection that "
                        "produced it (e.g. mbpp_split(...) of the wrong file, or a selection with n=0)")
    jobs = [_prepare(p.code, p.tests, setup=p.setup, **limits) for p in items]
    pool = ThreadPoolExecutor(max_workers=min(workers, len(jobs)), thread_name_prefix="run_many")
    try:
        futures = [pool.submit(_execute, job) for job in jobs]
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
