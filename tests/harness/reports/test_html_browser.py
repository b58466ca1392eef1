"""The HTML report in a real browser: headless Chromium opens it from disk, with no console
messages, every plot decoded, and a screenshot taken.

Needs a `chromium` (or `chromium-browser` / `google-chrome`) on PATH, e.g. ``apt-get install -y
chromium``; skipped without one. Marked `browser`: deselect with ``-m 'not browser'``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.verdicts.evidence import DatasetRecord, Evidence, ModelRecord
from harness.reports import write_html
from harness.reports import ClaimResult, GitInfo, build_report

BROWSER = next(
    (found for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
     if (found := shutil.which(name))),
    None,
)

pytestmark = [
    pytest.mark.browser,
    # .ci/run installs Chromium and sets CLAIMS_REQUIRE_BROWSER=1, so there a missing browser fails
    pytest.mark.skipif(BROWSER is None and os.environ.get("CLAIMS_REQUIRE_BROWSER") != "1",
                       reason="no chromium on PATH (apt-get install -y chromium)"),
]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIMEOUT_S = 120


def plot(path: Path, title: str, slope: float) -> Path:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=72)
    xs = list(range(10))
    ax.plot(xs, [slope * x for x in xs], marker="o")
    ax.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def make_report():
    ev = Evidence(statistic="slope", value=0.5, ci_low=0.2, ci_high=0.8, level=0.95, n=500,
                  method="bootstrap BCa", unit="examples", site="encoder.12.resid_post", seed=7,
                  fingerprint="3f2a9c0d1e2b", expectation="positive()", held=True)
    claims = [
        ClaimResult(nodeid="claims/alpha/test_a.py::test_one[layer12]",
                    text='Steering moves the score <script>alert("x")</script>',
                    source="notebook 000", params={"layer": 12}, outcome="passed", message="",
                    duration_s=1.0, seed=1, evidence=(ev,)),
        ClaimResult(nodeid="claims/beta/test_b.py::test_two", text="The control does not move it",
                    source=None, params={}, outcome="failed",
                    message="expected within(-0.05, 0.05), got 0.5", duration_s=1.0, seed=2,
                    evidence=(Evidence(**{**ev.to_dict(), "held": False,
                                          "expectation": "within(-0.05, 0.05)"}),)),
    ]
    return build_report(
        seed=0, resamples=999, command="pytest claims/ --claims-seed=0",
        started=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), duration_s=2.0,
        claims=claims,
        models=[ModelRecord("tacgen", "fixture:tacgen", "ab" * 32, "cpu", "float32")],
        datasets=[DatasetRecord("bench", "/data/bench.json", "cd" * 32)],
        versions={"python": "3.11.7"}, git=GitInfo(commit="0" * 40, dirty=False),
    )


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    cmd = [BROWSER, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run",
           "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, f"chromium exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done


def console_messages(stderr: str) -> list[str]:
    """Chromium logs every console message (and uncaught exception, and CSP violation) of the
    page as a line with ``:CONSOLE`` in it."""
    return [line for line in stderr.splitlines()
            if ":CONSOLE" in line or "Uncaught" in line or "Content Security Policy" in line]


def test_the_report_opens_in_a_browser_with_every_plot_decoded(tmp_path):
    report_dir = tmp_path / "report"
    plots = [
        plot(report_dir / "alpha" / "steering_layer12.png", "steering", 0.5),
        plot(report_dir / "alpha" / "spans.png", "spans", 1.5),
        plot(report_dir / "beta" / "control.png", "control", 0.0),
    ]
    page = write_html(make_report(), report_dir)
    # the page must not need the plot files: move the directory's plots away
    for p in plots:
        p.unlink()
    url = page.resolve().as_uri()

    dom = chromium(tmp_path, "--dump-dom", url)
    assert console_messages(dom.stderr) == []
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body, dom.stdout[:2000]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    assert attrs.get("data-images") == str(len(plots)), attrs
    assert attrs.get("data-broken-images") == "0", attrs
    assert "Steering moves the score &lt;script&gt;" in dom.stdout  # text, not a script

    shot = tmp_path / "shot.png"
    done = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert console_messages(done.stderr) == []
    assert shot.is_file() and shot.read_bytes().startswith(PNG_SIGNATURE)
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
