"""Each claim's peak memory (setup, call and teardown) is in report.json and in the durations
table of the terminal and the HTML page; run notes are listed once."""

from __future__ import annotations

import json
import sys

import pytest

from harness.resources import peak_memory, rss_method, start_span

MiB = 1 << 20

STUDY = '''
import numpy as np
import pytest

from harness.resources import note


@pytest.mark.claim("A claim that allocates nothing much", check=True)
def test_small_first():
    assert sum(range(1000)) > 0


@pytest.mark.claim("A claim that allocates 256 MiB", check=True)
def test_big():
    block = np.ones(256 << 20, dtype=np.uint8)   # touched: resident
    assert int(block[::4096].sum()) == (256 << 20) // 4096
    note("a note of the run")
    note("a note of the run")


@pytest.mark.claim("Another that allocates nothing much", check=True)
def test_small_after():
    note("a note of the run")
    assert True
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    pytester_dir = tmp_path_factory.mktemp("peak")
    (pytester_dir / "test_study.py").write_text(STUDY)
    import subprocess

    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--claims-report=out",
                           "test_study.py"], cwd=pytester_dir, capture_output=True, text=True, timeout=300)
    report = json.loads((pytester_dir / "out" / "report.json").read_text())
    return done, report, (pytester_dir / "out" / "report.html").read_text()


def test_a_claim_that_allocates_256_mib_peaks_at_least_200_mib_above_one_that_does_not(run):
    done, report, _ = run
    assert done.returncode == 0, done.stdout[-3000:]
    peak = {c["nodeid"].split("::")[-1]: c["memory"] for c in report["claims"]}
    assert {m["rss_method"] for m in peak.values()} == {rss_method()}
    assert all(m["peak_cuda_bytes"] is None for m in peak.values())   # no GPU used
    if rss_method() == "VmHWM":   # a peak per claim: the big one is 256 MiB above both others
        for small in ("test_small_first", "test_small_after"):
            assert peak["test_big"]["peak_rss_bytes"] - peak[small]["peak_rss_bytes"] >= 200 * MiB, peak
    else:                         # getrusage: the process's peak so far, never less after the big one
        assert peak["test_small_after"]["peak_rss_bytes"] >= peak["test_big"]["peak_rss_bytes"]


def test_the_durations_table_shows_each_claims_peak_memory(run):
    done, report, page = run
    out = done.stdout
    assert "durations (all of 3 claims; time and peak memory of setup, call and teardown):" in out
    line = next(ln for ln in out.splitlines() if ln.rstrip().endswith("test_study.py::test_big"))
    assert " MiB " in line and "passed" in line
    assert '<section id="durations">' in page and "test_study.py::test_big" in page
    assert '<dt>peak memory</dt><dd class="memory">RSS ' in page


def test_a_note_recorded_in_claims_is_listed_once(run):
    done, report, page = run
    assert report["run"]["notes"] == ["a note of the run"]
    notes = {c["nodeid"].split("::")[-1]: c["notes"] for c in report["claims"]}
    assert notes == {"test_small_first": [], "test_big": ["a note of the run"], "test_small_after": ["a note of the run"]}
    assert done.stdout.count("note: a note of the run") == 1
    assert "<li>a note of the run</li>" in page


def _touch_fresh_pages(n_bytes: int) -> None:
    """Make `n_bytes` newly resident and release them: an anonymous mapping of its own, every
    page written, then unmapped. (An allocator's block can reuse memory freed earlier in this
    process and still resident, which leaves the RSS where it was: in a test worker that has
    loaded models before, `np.ones(128 << 20)` raised no peak at all.)"""
    import mmap

    block = mmap.mmap(-1, n_bytes)
    try:
        for offset in range(0, n_bytes, mmap.PAGESIZE):
            block[offset] = 1
    finally:
        block.close()


def test_nested_spans_keep_the_outer_peak():
    with peak_memory() as outer:
        _touch_fresh_pages(128 << 20)
        inner = start_span()   # resets the kernel's mark: the outer span must keep its peak
        small = inner.stop()
    assert outer.result is not None
    if rss_method() == "VmHWM":
        assert outer.result.rss_bytes - small.rss_bytes >= 100 * MiB


def test_the_sampling_costs_a_few_milliseconds_at_most_per_claim():
    import time

    start = time.perf_counter()
    for _ in range(200):
        start_span().stop()
    assert (time.perf_counter() - start) / 200 < 5e-3   # measured ~0.1 ms


def _claim(nodeid, duration, memory, notes=()):
    from harness.reports import ClaimResult

    return ClaimResult(nodeid=nodeid, text="t", source=None, params={}, outcome="passed", message="",
                       duration_s=duration, seed=1, check=True, memory=memory, notes=tuple(notes))


def test_memory_and_notes_read_back_and_older_reports_read_as_unmeasured(tmp_path):
    import datetime as dt

    from harness.reports import build_report, read_report, write_report
    from harness.resources import PeakMemory

    claims = [_claim("a.py::x", 0.5, PeakMemory(300 * MiB, "VmHWM", 2 * MiB), ["halved"]),
              _claim("a.py::y", 1.5, None, ["halved", "other"])]
    report = build_report(seed=0, resamples=9, command="pytest", started=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
                          duration_s=2.0, claims=claims, notes=["before"])
    assert report.run.notes == ("before", "halved", "other")
    path = write_report(report, tmp_path)
    assert read_report(path) == report
    data = json.loads(path.read_text())
    assert data["claims"][0]["memory"] == {"peak_rss_bytes": 300 * MiB, "rss_method": "VmHWM", "peak_cuda_bytes": 2 * MiB}
    for c in data["claims"]:
        del c["memory"], c["notes"]
    del data["run"]["notes"]
    path.write_text(json.dumps(data))
    old = read_report(path)
    assert [c.memory for c in old.claims] == [None, None] and old.run.notes == ()


def test_the_durations_rows_are_slowest_first_with_readable_sizes():
    from harness.reports import build_report
    from harness.reports.formatting import duration_rows, format_bytes
    from harness.resources import PeakMemory

    claims = [_claim("a.py::fast", 0.1, PeakMemory(300 * MiB, "VmHWM")),
              _claim("a.py::slow", 9.0, PeakMemory(3 << 30, "getrusage", 5 << 30)),
              _claim("a.py::none", 1.0, None)]
    report = build_report(seed=0, resamples=9, command="pytest", started="2026-01-01T00:00:00+00:00",
                          duration_s=10.0, claims=claims)
    rows = duration_rows(report)
    assert [(r.nodeid, r.duration, r.peak_rss, r.peak_cuda) for r in rows] == [
        ("a.py::slow", "9.00s", "<= 3 GiB", "5 GiB"), ("a.py::none", "1.00s", "-", "-"),
        ("a.py::fast", "0.10s", "300 MiB", "-")]
    assert len(duration_rows(report, top=1)) == 1
    assert (format_bytes(512), format_bytes(1536), format_bytes(int(1.5 * (1 << 30)))) == ("512 B", "1.5 KiB", "1.5 GiB")
