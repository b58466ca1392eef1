"""harness.execution against hostile programs: each one's expected status, and nothing left behind.

Programs that start processes write their pids to a file outside the scratch directory (an
absolute path, which is not contained); after `run_tests` returns, none of them may be alive.
Timeouts are 1-3 s; fork bursts are bounded (20), never an unbounded fork bomb.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from harness.execution import run_tests
from harness.execution.procs import alive, descendants
from harness.execution.run import _SUPERVISOR, _supervise
from tests._support.leftovers import no_leftovers  # noqa: F401 (autouse: no process outlives a test)

JOB = dict(setup="", cpu_s=4.0, memory_mb=512, output_limit=1024, file_size_mb=1, open_files=64,
           processes=32)




def gone(pids, grace_s=1.0, zombies_ok=False):
    """True once none of ``pids`` exists (with ``zombies_ok``: none is alive but as a zombie)."""
    end = time.monotonic() + grace_s
    while any(alive(p) if zombies_ok else os.path.exists(f"/proc/{p}") for p in pids):
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def read_pids(path):
    return [int(p) for p in path.read_text().split()]


def loop_writing_pid(path):
    return f"import os\nopen({str(path)!r}, 'w').write(str(os.getpid()))\nwhile True:\n    pass"


def wait_for_pid(path, seconds=20.0):
    end = time.monotonic() + seconds
    while not (path.exists() and path.read_text()) and time.monotonic() < end:
        time.sleep(0.02)
    return read_pids(path)[0]


def test_infinite_python_loop_times_out():
    result = run_tests("while True:\n    pass", ["assert True"], timeout_s=1)
    assert result.status == "timeout" and result.signal == signal.SIGKILL
    assert 1 <= result.duration_s < 3 and "wall-clock limit of 1 s" in result.detail


def test_loop_inside_c_code_times_out_on_the_wall_clock():
    result = run_tests("import re\nre.match(r'(a+)+$', 'a' * 64 + 'b')", ["assert True"], timeout_s=1)
    assert result.status == "timeout" and result.duration_s < 3


def test_loop_inside_c_code_is_stopped_by_the_cpu_limit_alone():
    """RLIMIT_CPU sends SIGXCPU although the wall clock (10 s) has not run out."""
    result = run_tests("x = sum(range(10 ** 12))", ["assert True"], timeout_s=10, cpu_s=1)
    assert result.status == "timeout" and result.signal == signal.SIGXCPU
    assert "CPU-time limit" in result.detail and result.duration_s < 9.5


def test_a_timer_signal_cannot_interrupt_c_code_but_the_kill_does():
    """The pitfall of in-process timeouts: the SIGALRM handler waits for the C loop to return."""
    code = textwrap.dedent("""
        import signal
        def on_alarm(*_):
            raise TimeoutError("alarm")
        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        x = sum(range(10 ** 12))
    """)
    result = run_tests(code, ["assert True"], timeout_s=1)
    assert result.status == "timeout", result.detail


@pytest.mark.parametrize("code", ["x = bytearray(8 << 30)",
                                  "x = []\nwhile True:\n    x.append(bytearray(1 << 20))"],
                         ids=["one-huge-block", "growing-list"])
def test_memory_bomb_is_memory(code):
    result = run_tests(code, ["assert True"], timeout_s=3, memory_mb=256)
    assert result.status == "memory", result.detail
    assert "256 MB" in result.detail


def test_memory_bomb_inside_a_test_is_memory():
    code = "def grow():\n    return 'x' * (1 << 33)"
    result = run_tests(code, ["assert grow()"], timeout_s=3, memory_mb=256)
    assert result.status == "memory" and "test 1 of 1" in result.detail


def sleepers(n, pidfile):
    """A program that forks ``n`` children sleeping 60 s and writes their pids to ``pidfile``."""
    return textwrap.dedent(f"""
        import os, time
        pids = []
        for _ in range({n}):
            pid = os.fork()
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            pids.append(pid)
        with open({str(pidfile)!r}, "w") as fh:
            fh.write(" ".join(map(str, pids)))
    """)


def test_burst_of_forked_children_is_gone_afterwards(tmp_path):
    result = run_tests(sleepers(20, tmp_path / "pids"), ["assert len(pids) == 20"], timeout_s=3)
    assert result.passed, result.detail
    pids = read_pids(tmp_path / "pids")
    assert len(pids) == 20 and gone(pids)


def test_children_outliving_the_timeout_are_gone_afterwards(tmp_path):
    code = sleepers(3, tmp_path / "pids") + "while True:\n    pass\n"
    result = run_tests(code, ["assert True"], timeout_s=1)
    assert result.status == "timeout"
    assert gone(read_pids(tmp_path / "pids"))


def test_double_fork_setsid_grandchild_is_gone_afterwards(tmp_path):
    """The grandchild leaves the process group and session; the subreaper still finds it."""
    pidfile = tmp_path / "pids"
    code = textwrap.dedent(f"""
        import os, time
        r, w = os.pipe()
        middle = os.fork()
        if middle == 0:
            os.setsid()
            grandchild = os.fork()
            if grandchild == 0:
                time.sleep(60)
                os._exit(0)
            os.write(w, str(grandchild).encode())
            os._exit(0)
        os.waitpid(middle, 0)
        grandchild = int(os.read(r, 64))
        escaped = os.getsid(grandchild) != os.getsid(0) and os.getpgid(grandchild) != os.getpgid(0)
        with open({str(pidfile)!r}, "w") as fh:
            fh.write(str(grandchild))
    """)
    result = run_tests(code, ["assert escaped"], timeout_s=3)
    assert result.passed, result.detail
    assert gone(read_pids(pidfile))


def test_process_limit_holds_for_users_and_not_for_root(tmp_path):
    """RLIMIT_NPROC counts the user's processes; for root it does not bind (CI runs as root)."""
    code = textwrap.dedent("""
        import os, time
        started, refused = [], 0
        for _ in range(12):
            try:
                pid = os.fork()
            except BlockingIOError:
                refused += 1
                continue
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            started.append(pid)
    """)
    if os.geteuid() == 0:
        test = "assert len(started) == 12 and refused == 0"
    else:
        test = "assert refused > 0 and len(started) < 12"
    result = run_tests(code, [test], timeout_s=3, processes=4)
    assert result.passed, result.detail


def test_relative_writes_land_in_the_scratch_directory_which_is_removed(tmp_path):
    outside = tmp_path / "outside.txt"
    code = textwrap.dedent(f"""
        import os
        with open("out.txt", "w") as fh:
            fh.write("hi")
        os.makedirs("sub/dir")
        os.chmod("sub", 0)
        cwd = os.getcwd()
        with open({str(outside)!r}, "w") as fh:
            fh.write(cwd)
    """)
    tests = ["assert open(os.path.join(cwd, 'out.txt')).read() == 'hi'",
             "assert sorted(os.listdir(cwd)) == ['out.txt', 'sub']"]
    result = run_tests(code, tests, timeout_s=3)
    assert result.passed, result.detail
    scratch = outside.read_text()  # an absolute path outside the scratch dir is NOT contained
    assert scratch.startswith(tempfile.gettempdir()) and os.path.basename(scratch) == "scratch"
    assert not os.path.exists(os.path.dirname(scratch))


def test_reading_stdin_gets_eof_at_once():
    code = "import sys\ndata = sys.stdin.read()\ndef ask():\n    return input()"
    assert run_tests(code, ["assert data == ''"], timeout_s=2).passed
    result = run_tests(code, ["assert ask()"], timeout_s=2)
    assert result.status == "error" and result.error_type == "EOFError" and result.duration_s < 1.5


def test_100_mb_of_output_is_truncated_with_bounded_memory():
    code = "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1 << 20))\nsys.stdout.flush()"
    job = dict(JOB, code=code, tests=["assert True"], timeout_s=20.0, output_limit=4096)
    answer = _supervise(job)
    assert answer["stdout_bytes"] == 100 << 20 and len(answer["stdout"]) == 4096
    assert answer["supervisor_peak_rss_kb"] < 64 * 1024
    result = run_tests(code, ["assert True"], timeout_s=20, output_limit=4096)
    assert result.passed and result.truncated and len(result.stdout) == 4096


@pytest.mark.parametrize("exit_call, status", [("sys.exit(0)", "error"), ("raise SystemExit", "error"),
    ("os._exit(0)", "crashed"), ("os.kill(os.getpid(), signal.SIGKILL)", "crashed")])
def test_leaving_before_the_asserts_is_not_passed(exit_call, status):
    code = f"import os, signal, sys\ndef add(a, b):\n    return a + b\n{exit_call}"
    result = run_tests(code, ["assert add(1, 2) == 3"], timeout_s=2)
    assert result.status == status and not result.passed
    assert result.tests_run == 0 and "not a pass" in result.detail


def test_forged_verdict_lines_without_the_nonce_do_not_pass():
    code = textwrap.dedent("""
        import os
        for fd in range(1, 20):
            for line in (b'{"e": "done"}\\n', b'done {"e": "done"}\\n'):
                try:
                    os.write(fd, line)
                except OSError:
                    pass
        os._exit(0)
    """)
    result = run_tests(code, ["assert True"], timeout_s=2)
    assert result.status == "crashed"


def test_a_supervisor_told_to_stop_kills_its_run_and_answers(tmp_path):
    """SIGTERM (sent by run_tests when interrupted, or as parent-death signal) cleans up."""
    job = dict(JOB, code=loop_writing_pid(tmp_path / "pids"), tests=["assert True"], timeout_s=30.0)
    proc = subprocess.Popen([sys.executable, "-I", _SUPERVISOR], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, start_new_session=True)
    try:
        proc.stdin.write(json.dumps(job).encode())
        proc.stdin.close()
        child = wait_for_pid(tmp_path / "pids")
        assert alive(child)
        proc.send_signal(signal.SIGTERM)
        answer = json.loads(proc.stdout.read())
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert answer["stopped"] and answer["scratch_removed"]
    assert gone([child])


def test_a_caller_killed_mid_run_leaves_no_process_behind(tmp_path):
    """The supervisor's parent-death signal (SIGTERM) makes it clean up if its caller dies."""
    program = loop_writing_pid(tmp_path / "pids")
    script = f"from harness.execution import run_tests\nrun_tests({program!r}, ['assert True'], timeout_s=30)"
    caller = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        child = wait_for_pid(tmp_path / "pids")
        supervisor = descendants(caller.pid)
        assert alive(child) and supervisor
        caller.kill()
        caller.wait()
    finally:
        if caller.poll() is None:
            os.killpg(caller.pid, signal.SIGKILL)
            caller.wait()
    # zombies allowed: the dead caller's supervisor is reaped by init, which a container may lack
    assert gone([child, *supervisor], grace_s=5.0, zombies_ok=True)


@pytest.mark.parametrize("test, status, tests_run", [("assert pid != 0", "passed", 1),
                                                    ("assert pid == 0", "failed", 0)])
def test_a_forked_copy_running_the_tests_too_does_not_count(test, status, tests_run):
    """After ``os.fork()`` both copies run the tests (the copy first, here); only the child the
    supervisor started counts: the copy's verdict and its test count are ignored."""
    code = "import os, time\npid = os.fork()\nif pid != 0:\n    time.sleep(0.3)"
    result = run_tests(code, [test], timeout_s=3)
    assert (result.status, result.tests_run) == (status, tests_run)
