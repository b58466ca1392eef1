"""Report writes are atomic: a writer killed at any moment leaves a complete report (the old
or the new), and writers racing into one directory never leave a torn or mixed file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from harness.reports import read_report
from tests._support.paths import ROOT

WRITER = textwrap.dedent('''
    import sys
    sys.path.insert(0, {root!r})
    from tests.harness.reports.test_report import claim, report
    from harness.reports.report import write_report

    tag, directory, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # a large report, so a write takes long enough to be interrupted
    claims = [claim(nodeid=f"claims/test_{{tag}}.py::test_{{i}}") for i in range(3000)]
    for r in range(rounds):
        write_report(report(seed=int(tag), claims=claims), directory)
    print("done", flush=True)
''')


def _writer(tmp_path: Path, tag: int, rounds: int) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    if not script.exists():
        script.write_text(WRITER.format(root=str(ROOT)))
    return subprocess.Popen([sys.executable, str(script), str(tag), str(tmp_path / "out"), str(rounds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_a_writer_killed_at_any_moment_leaves_a_complete_report(tmp_path):
    first = _writer(tmp_path, 1, 1)
    assert first.wait(timeout=120) == 0, first.stderr.read()
    for delay in (0.05, 0.2, 0.4, 0.7, 1.0, 1.5):
        proc = _writer(tmp_path, 2, 50)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        rep = read_report(tmp_path / "out" / "report.json")  # never torn: parses and validates
        assert rep.run.seed in (1, 2)
        assert len(rep.claims) == 3000


def test_writers_racing_into_one_directory_leave_one_complete_report(tmp_path):
    procs = [_writer(tmp_path, tag, 5) for tag in (3, 4, 5)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    rep = read_report(tmp_path / "out" / "report.json")
    assert rep.run.seed in (3, 4, 5)
    assert {c.nodeid.split("::")[0] for c in rep.claims} == {f"claims/test_{rep.run.seed}.py"}  # not mixed
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name != "report.json"]  # no temp files
