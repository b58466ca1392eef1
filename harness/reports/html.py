"""The report of a claims run as one self-contained HTML page, for people to read.

Contents:

- `render_html(report, *, plots=None) -> str`: the page. A header with the run's provenance
  (seed, resamples, the command that reproduces it, git commit and dirty flag, package
  versions, every model's name / spec / fingerprint / device / dtype, every data set's path and
  content hash), a summary of claims held / failed / errored / skipped per study, and one
  section per study with each claim's words, source, parameters, verdict and evidence, and the
  study's plots (`plots`: study name -> image paths) inlined as base64 data URIs.
- `write_html(report, directory) -> Path`: writes ``report.html`` into `directory` atomically,
  with the plots `plots_in(directory)` finds for the report's studies.

This module assembles the page (head, style, script, Content-Security-Policy) and writes it;
the sections it is made of are `harness.reports.html_sections`; the studies, their plots and
the plots as data URIs (`study_of`, `plots_in`) are `harness.reports.html_plots`.

The page needs no network: no external CSS, JS, fonts or images; a Content-Security-Policy
meta tag forbids loading anything but ``data:`` images, so it opens from disk as it is. All text
from the report is escaped. The output depends only on the report and the plots' bytes (the
only time shown is the report's own `run.started`), so the same input gives the same page.

Pure Python (stdlib only): the plugin can call it at session end without importing torch.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.atomic import write_text_atomic
from harness.reports.html_plots import _studies, plots_in, study_of
from harness.reports.html_sections import VERDICTS, _durations, _e, _provenance, _study, _summary
from harness.reports.report import report_directory
from harness.reports.schema import ClaimResult, Report

__all__ = [
    "HTML_FILENAME",
    "render_html",
    "write_html",
]

HTML_FILENAME = "report.html"

STYLE = """
:root { --held: #1a7f37; --failed: #cf222e; --error: #8250df; --skipped: #9a6700;
        --muted: #57606a; --line: #d0d7de; --bg-soft: #f6f8fa; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1200px; padding: 1.5rem; color: #1f2328; line-height: 1.45; }
h1 { margin: 0 0 .25rem 0; font-size: 1.6rem; }
h2 { border-bottom: 1px solid var(--line); padding-bottom: .3rem; margin-top: 2rem; }
h3 { margin: 1rem 0 .4rem 0; font-size: 1.15rem; }
h4 { margin: 0 0 .4rem 0; font-size: 1.05rem; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
                   font-size: .85rem; }
pre { background: var(--bg-soft); padding: .5rem .75rem; border-radius: 6px;
      white-space: pre-wrap; word-break: break-all; margin: .25rem 0; }
.lede { color: var(--muted); margin: 0 0 1rem 0; }
table { border-collapse: collapse; margin: .5rem 0 1rem 0; font-size: .9rem; }
th, td { border: 1px solid var(--line); padding: .3rem .55rem; text-align: left;
         vertical-align: top; }
th { background: var(--bg-soft); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.hash { word-break: break-all; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: .5rem 0; }
dl.kv dt { font-weight: 600; color: var(--muted); }
dl.kv dd { margin: 0; min-width: 0; }
.claim { border: 1px solid var(--line); border-left: 6px solid var(--line); border-radius: 6px;
         padding: .75rem 1rem; margin: .75rem 0; }
.claim.held { border-left-color: var(--held); }
.claim.failed { border-left-color: var(--failed); }
.claim.error { border-left-color: var(--error); }
.claim.skipped { border-left-color: var(--skipped); }
.verdict { display: inline-block; font-weight: 700; font-size: .8rem; padding: .1rem .5rem;
           border-radius: 999px; color: #fff; text-transform: uppercase; letter-spacing: .02em; }
.verdict.held { background: var(--held); }
.verdict.failed { background: var(--failed); }
.verdict.error { background: var(--error); }
.verdict.skipped { background: var(--skipped); }
td.held { color: var(--held); font-weight: 600; }
td.failed { color: var(--failed); font-weight: 700; }
td.skipped { color: var(--skipped); }
.count-failed { color: var(--failed); font-weight: 700; }
.count-error { color: var(--error); font-weight: 700; }
.count-passed { color: var(--held); font-weight: 600; }
.count-skipped, .count-xfailed, .count-xpassed { color: var(--skipped); }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: .5rem;
         flex: 0 1 calc(50% - .5rem); max-width: calc(50% - .5rem); }
@media (max-width: 800px) { figure { flex-basis: 100%; max-width: 100%; } }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: .85rem; margin-top: .3rem; }
.missing { color: var(--failed); }
.dirty { color: var(--failed); font-weight: 600; }
nav ul { margin: .25rem 0; padding-left: 1.25rem; }
"""

# Marks the page when it has loaded: how many <img> there are and how many did not decode.
# Inline (allowed by the page's CSP through its hash); it loads nothing.
SCRIPT = (
    "window.addEventListener('load', function () {"
    " var imgs = Array.prototype.slice.call(document.images);"
    " var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; });"
    " document.body.dataset.images = String(imgs.length);"
    " document.body.dataset.brokenImages = String(broken.length);"
    " });"
)


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
    return (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


# ---------------------------------------------------------------------------------------------
# The page


def render_html(
    report: Report, *, plots: Mapping[str, Sequence[str | os.PathLike[str]]] | None = None
) -> str:
    """The report as one self-contained HTML page (a str; write it as UTF-8).

    `plots` maps a study's name (see `study_of`) to image files (PNG; SVG, JPEG, GIF and WebP
    also work) shown in that study's section, in the given order, captioned from their file
    names; a plot that cannot be read is named with the reason instead. Plots of a study with no
    claims in the report get a section of their own.

    Example::

        page = render_html(read_report("reports/latest/report.json"),
                           plots=plots_in(Path("reports/latest")))
    """
    plots = {k: [Path(p) for p in v] for k, v in (plots or {}).items()}
    studies = _studies(report)
    for name in plots:
        if name not in studies and plots[name]:
            studies.append(name)
    by_study: dict[str, list[tuple[int, ClaimResult]]] = {s: [] for s in studies}
    for i, c in enumerate(report.claims):
        by_study[study_of(c.nodeid, c.identity)].append((i, c))
    slugs = _unique_slugs(studies)

    run = report.run
    counts = report.counts()
    title = f"Claims report: {len(report.claims)} claims, {run.started}"
    out: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_csp())}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{_e(title)}</title>",
        f"<style>{STYLE}</style>",
        f"<script>{SCRIPT}</script>",
        "</head>",
        "<body>",
        '<header id="provenance">',
        "<h1>Claims report</h1>",
    ]
    summary = ", ".join(
        f'<span class="count-{o}">{n} {_e(VERDICTS[o][0].split(" ")[0])}</span>'
        for o, n in counts.items()
    ) or "none"
    out.append(
        f'<p class="lede">{len(report.claims)} claims ({summary}) in {len(by_study)} '
        f"stud{'y' if len(by_study) == 1 else 'ies'}; run started {_e(run.started)}, "
        f"took {run.duration_s:.1f}s; report schema version {report.schema_version}.</p>"
    )
    out += _provenance(report)
    out.append("</header>")
    out += _summary(studies, by_study, slugs)
    for study in studies:
        out += _study(study, slugs[study], by_study[study], plots.get(study, []))
    out += _durations(report)
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def _unique_slugs(studies: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    used: set[str] = set()
    for s in studies:
        base = f"study-{_slug(s)}"
        slug, k = base, 2
        while slug in used:
            slug, k = f"{base}-{k}", k + 1
        used.add(slug)
        out[s] = slug
    return out


def _slug(text: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)
    return keep.strip("-") or "study"


# ---------------------------------------------------------------------------------------------
# Writing


def write_html(report: Report, directory: str | os.PathLike[str]) -> Path:
    """Write ``report.html`` into `directory` atomically and return its path.

    The plots are those `plots_in(directory)` finds for the report's studies. The page goes to
    a temporary file in the same directory, is fsynced, and replaces the old page with
    `os.replace`; if anything fails on the way the old page is left as it was and the temporary
    file is removed.

    Example::

        write_html(read_report("reports/latest/report.json"), "reports/latest")
    """
    directory = report_directory(directory)
    target = directory / HTML_FILENAME
    page = render_html(report, plots=plots_in(directory, studies=_studies(report)))
    return write_text_atomic(target, page)
