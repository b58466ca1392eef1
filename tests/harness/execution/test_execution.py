"""harness.execution: statuses of ordinary programs, argument errors, limits, and the pool.

The hostile programs (loops, bombs, forks, escapes, huge output) are in test_execution_hostile.py.
Every test checks afterwards that the pytest process has no descendant left.
"""

import dataclasses
import resource
import subprocess
import sys
import textwrap

import pytest

from harness.errors import DataError
from harness.execution import STATUSES, ExecutionResult, Program, run_many, run_tests
from harness.execution.limits import clamp
from harness.execution.result import classify
from tests._support.leftovers import no_leftovers  # noqa: F401 (autouse: no process outlives a test)

INF = resource.RLIM_INFINITY
ADD = "def add(a, b):\n    return a + b\n"




def test_passing_program_passes_with_its_output():
    result = run_tests(ADD + "print('hi')", ["assert add(1, 2) == 3", "assert add(0, 0) == 0"], timeout_s=3)
    assert isinstance(result, ExecutionResult)
    assert result.status == "passed" and result.passed
    assert result.tests_run == 2 and result.exit_code == 0 and result.signal is None
    assert result.stdout == "hi\n" and result.stdout_bytes == 3 and not result.truncated
    assert 0 < result.duration_s < 3
    assert "2 tests passed" in result.detail
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.status = "failed"


def test_failing_program_reports_the_first_failing_assert():
    tests = ["assert add(1, 2) == 3", "assert add(2, 2) == 5, 'two and two'", "assert add(0, 1) == 7"]
    result = run_tests(ADD, tests, timeout_s=3)
    assert result.status == "failed" and not result.passed
    assert result.failed_test == tests[1]
    assert result.error_message == "two and two"
    assert result.tests_run == 1
    assert "test 2 of 3" in result.detail and tests[1] in result.detail


def test_exception_in_a_test_is_an_error_with_type_and_message():
    result = run_tests(ADD, ["assert add(1, 'a') == 3"], timeout_s=3)
    assert result.status == "error"
    assert result.error_type == "TypeError" and "unsupported operand" in result.error_message
    assert "TypeError" in result.detail and "test 1 of 1" in result.detail


def test_missing_function_is_an_error_not_a_crash():
    result = run_tests("x = 1", ["assert add(1, 2) == 3"], timeout_s=3)
    assert result.status == "error" and result.error_type == "NameError"


@pytest.mark.parametrize("code", ["def add(a, b) return a + b", "x = (1,\n", "a = 'nul\x00'",
                                  "-" * 200_000 + "1"],
                         ids=["missing-colon", "unclosed", "nul-byte", "deeply-nested"])
def test_code_that_does_not_parse_is_a_syntax_error(code):
    result = run_tests(code, ["assert add(1, 2) == 3"], timeout_s=3)
    assert result.status == "syntax_error", result.detail
    assert result.tests_run == 0 and "does not compile" in result.detail


def test_leaving_inside_a_test_is_not_passed():
    code = "import os\ndef add(a, b):\n    os._exit(0)"
    result = run_tests(code, ["assert True", "assert add(1, 2) == 3", "assert True"], timeout_s=2)
    assert result.status == "crashed" and "test 2 of 3" in result.detail


def test_setup_runs_before_the_program():
    result = run_tests("def root(x):\n    return math.sqrt(x)\n", ["assert root(9) == 3"],
                       setup="import math", timeout_s=3)
    assert result.passed


def test_assert_swallowed_inside_the_program_cannot_fool_the_runner():
    code = textwrap.dedent("""
        def add(a, b):
            try:
                assert False
            except AssertionError:
                pass
            return 0
    """)
    result = run_tests(code, ["assert add(1, 2) == 3"], timeout_s=3)
    assert result.status == "failed" and result.failed_test == "assert add(1, 2) == 3"


def test_recursion_overflow_is_an_error():
    code = "def add(a, b):\n    return add(a, b)\n"
    result = run_tests(code, ["assert add(1, 2) == 3"], timeout_s=3)
    assert result.status == "error" and result.error_type == "RecursionError"


def test_empty_tests_is_a_data_error_naming_the_argument():
    with pytest.raises(DataError, match="tests is empty"):
        run_tests(ADD, [])
    with pytest.raises(DataError, match="tests must be a sequence"):
        run_tests(ADD, "assert add(1, 2) == 3")


def test_bad_tests_setup_and_limits_are_data_errors():
    with pytest.raises(DataError, match=r"tests\[1\] does not parse"):
        run_tests(ADD, ["assert True", "assert ("])
    with pytest.raises(DataError, match="setup does not parse"):
        run_tests(ADD, ["assert True"], setup="import (")
    with pytest.raises(DataError, match="timeout_s"):
        run_tests(ADD, ["assert True"], timeout_s=0)
    with pytest.raises(DataError, match="memory_mb"):
        run_tests(ADD, ["assert True"], memory_mb=-1)


def test_memory_below_what_python_needs_to_start_is_a_clear_error():
    with pytest.raises(DataError, match=r"memory_mb=10 is below .*Python takes about 16 MB"):
        run_tests(ADD, ["assert add(1, 2) == 3"], memory_mb=10, timeout_s=3)


def test_a_child_that_cannot_start_is_reported_as_memory_or_timeout_with_the_reason():
    """Below ~16 MB CPython either dies at start with MemoryError or spins in mmap (measured)."""
    died = {"returncode": 1, "events": [], "stderr": "MemoryError\nFatal Python error: init_importlib"}
    result = classify(died, n_tests=1, timeout_s=3, memory_mb=12)
    assert result.status == "memory" and "could not start under memory_mb=12" in result.detail
    spun = {"returncode": -9, "events": [], "wall_killed": True}
    result = classify(spun, n_tests=1, timeout_s=3, memory_mb=12)
    assert result.status == "timeout" and "never finished starting" in result.detail


def test_network_is_refused_from_python_but_local_sockets_work():
    code = textwrap.dedent("""
        import socket
        def try_connect():
            try:
                socket.create_connection(("127.0.0.1", 9), timeout=1)
            except PermissionError as exc:
                return str(exc)
        def try_socket():
            try:
                socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except PermissionError as exc:
                return str(exc)
        a, b = socket.socketpair()
    """)
    tests = ["assert 'disabled' in try_connect()", "assert 'disabled' in try_socket()",
             "assert a.family == socket.AF_UNIX"]
    assert run_tests(code, tests, timeout_s=3).passed


def test_child_environment_and_limits_are_the_documented_ones():
    code = textwrap.dedent("""
        import os, resource, sys, tempfile
        env = dict(os.environ)
        cwd = os.getcwd()
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
        fsize = resource.getrlimit(resource.RLIMIT_FSIZE)
        mem = resource.getrlimit(resource.RLIMIT_AS)
        cpu = resource.getrlimit(resource.RLIMIT_CPU)
    """)
    tests = ["assert sys.flags.isolated == 1", "assert not any('proxy' in k.lower() for k in env)",
             "assert env['HOME'] == cwd and tempfile.gettempdir() == cwd",
             "assert os.getsid(0) == os.getpid()",
             "assert nofile == (50, 50)", "assert fsize == (2 << 20, 2 << 20)",
             "assert mem == (300 << 20, 300 << 20)", "assert cpu == (4, 5)"]
    result = run_tests(code, tests, timeout_s=3, memory_mb=300, open_files=50, file_size_mb=2)
    assert result.passed, result.detail


def test_writing_a_file_past_the_size_limit_is_an_error():
    code = "with open('big', 'wb') as fh:\n    fh.write(b'x' * (2 << 20))"
    result = run_tests(code, ["assert True"], timeout_s=2, file_size_mb=1)
    assert result.status == "error" and "File too large" in result.error_message


def test_too_many_open_files_is_an_error():
    code = "handles = [open('f%d' % i, 'w') for i in range(100)]"
    result = run_tests(code, ["assert True"], timeout_s=2, open_files=32)
    assert result.status == "error" and result.error_type == "OSError"


# --- limits: clamping to the hard limit -------------------------------------------------------

@pytest.mark.parametrize("wanted, hard, expected", [
    ((100, 100), INF, (100, 100)),
    ((100, 100), 50, (50, 50)),
    ((10, 100), 50, (10, 50)),
    ((INF, INF), 50, (50, 50)),
    ((INF, 20), INF, (20, 20)),
    ((0, 0), 50, (0, 0)),
])
def test_clamp_never_asks_above_the_hard_limit(wanted, hard, expected):
    assert clamp(*wanted, hard) == expected


def test_limit_above_the_hard_limit_is_clamped_in_a_real_run():
    """Raising a limit above the hard one raises ValueError (unprivileged); the plan clamps it.

    Run in a separate interpreter that lowers its own NOFILE hard limit first, so the pytest
    process keeps its limits. Root may raise a hard limit, so the raw ValueError is only asserted
    for other users; the clamped plan and the run work for both.
    """
    script = textwrap.dedent("""
        import os, resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))
        from harness.execution import run_tests
        from harness.execution.limits import plan_limits, apply_limits
        plan = plan_limits(memory_mb=512, cpu_s=2, file_size_mb=1, open_files=100_000, processes=10)
        assert plan["RLIMIT_NOFILE"] == (200, 200), plan
        if os.geteuid() != 0:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (100_000, 100_000))
            except ValueError:
                pass
            else:
                raise SystemExit("raising above the hard limit did not raise ValueError")
        r = run_tests("import resource\\nn = resource.getrlimit(resource.RLIMIT_NOFILE)",
                      ["assert n == (200, 200)"], open_files=100_000, timeout_s=3)
        print(r.status, r.detail)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("passed"), out.stdout


def test_soft_above_hard_raises_value_error_even_for_root_and_clamped_pairs_apply():
    """In a separate interpreter (the pytest process keeps its limits)."""
    script = textwrap.dedent("""
        import resource
        from harness.execution.limits import apply_limits, clamp
        resource.setrlimit(resource.RLIMIT_NOFILE, (150, 150))
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (300, 150))
        except ValueError:
            apply_limits({"RLIMIT_NOFILE": clamp(300, 300, 150)})
            print(resource.getrlimit(resource.RLIMIT_NOFILE))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "(150, 150)", out.stderr


# --- the pool ---------------------------------------------------------------------------------

MIXED = [
    Program(ADD, ["assert add(1, 2) == 3"]),
    (ADD, ["assert add(1, 2) == 4"]),
    ("def add(a, b) return 1", ["assert add(1, 2) == 3"]),
    ("import sys\nsys.exit(0)", ["assert add(1, 2) == 3"]),
    ("import os\nos._exit(0)", ["assert add(1, 2) == 3"]),
    ("while True:\n    pass", ["assert add(1, 2) == 3"]),
    ("x = bytearray(8 << 30)", ["assert True"]),
    ("def root(x):\n    return math.sqrt(x)", ["assert root(4) == 2"], "import math"),
    (ADD, ["assert add('a', 1)"]),
]
EXPECTED = ["passed", "failed", "syntax_error", "error", "crashed", "timeout", "memory", "passed", "error"]


def test_pool_of_one_and_of_two_give_the_same_statuses_in_input_order():
    one = run_many(MIXED, workers=1, timeout_s=1, memory_mb=512)
    two = run_many(MIXED, workers=2, timeout_s=1, memory_mb=512)
    assert [r.status for r in one] == EXPECTED
    assert [r.status for r in two] == EXPECTED
    assert [r.failed_test for r in one] == [r.failed_test for r in two]
    assert set(EXPECTED) <= set(STATUSES)


def test_run_many_checks_its_arguments_before_running_anything():
    with pytest.raises(DataError, match="programs is empty"):
        run_many([])
    with pytest.raises(DataError, match="workers"):
        run_many(MIXED, workers=0)
    with pytest.raises(DataError, match=r"programs\[1\]"):
        run_many([MIXED[0], "print(1)"])
    with pytest.raises(DataError, match="tests is empty"):
        run_many([MIXED[0], (ADD, [])])
    with pytest.raises(DataError, match="unknown keyword"):
        run_many(MIXED, timeout=1)
