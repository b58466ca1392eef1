"""The report of a claims run as one self-contained HTML page, for people to read.

Contents:

- `render_html(report, *, plots=None) -> str`: the page. A header with the run's provenance
  (seed, resamples, the command that reproduces it, git commit and dirty flag, package
  versions, every model's name / spec / fingerprint / device / dtype, every data set's path and
  content hash), a summary of claims held / failed / errored / skipped per study, and one
  section per study with each claim's words, source, parameters, verdict and evidence, and the
  study's plots (`plots`: study name -> image paths) inlined as base64 data URIs.
- `plots_in(report_dir, *, studies=None) -> dict[str, list[Path]]`: the plots a study wrote,
  ``REPORT_DIR/<study>/*.png`` (sorted by file name).
- `write_html(report, directory) -> Path`: writes ``report.html`` into `directory` atomically,
  with the plots `plots_in(directory)` finds for the report's studies.
- `study_of(nodeid) -> str`: the study a claim belongs to (``claims/tacgen/test_x.py::t`` ->
  ``tacgen``).

The page needs no network: no external CSS, JS, fonts or images; a Content-Security-Policy
meta tag forbids loading anything but ``data:`` images, so it opens from disk as it is. All text
from the report is escaped. The output depends only on the report and the plots' bytes (the
only time shown is the report's own `run.started`), so the same input gives the same page.

Pure Python (stdlib only): the plugin can call it at session end without importing torch.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.atomic import write_text_atomic
from harness.reports.report import OUTCOMES, ClaimResult, Report, format_ci, format_number, report_directory

__all__ = [
    "HTML_FILENAME",
    "PLOT_SUFFIXES",
    "plots_in",
    "render_html",
    "study_of",
    "write_html",
]

HTML_FILENAME = "report.html"
PLOT_SUFFIXES: Mapping[str, str] = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
TOP_LEVEL = "(top level)"

# Verdict of a claim's outcome, as shown on the page, and its CSS class.
VERDICTS: Mapping[str, tuple[str, str]] = {
    "passed": ("held", "held"),
    "failed": ("failed", "failed"),
    "error": ("error", "error"),
    "skipped": ("skipped", "skipped"),
    "xfailed": ("xfailed (expected failure)", "skipped"),
    "xpassed": ("xpassed (unexpectedly passed)", "failed"),
}
# Summary columns: (heading, outcome); xfailed / xpassed only when a claim has them.
SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("held", "passed"),
    ("failed", "failed"),
    ("errored", "error"),
    ("skipped", "skipped"),
    ("xfailed", "xfailed"),
    ("xpassed", "xpassed"),
)

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
# Studies and plots


def study_of(nodeid: str) -> str:
    """The study of a claim: the first directory under ``claims/`` in its node id
    (``claims/tacgen/test_x.py::test_y[a]`` -> ``tacgen``). A test outside a ``claims/``
    directory belongs to the directory holding its file; a file directly under ``claims/`` or
    at the root belongs to ``"(top level)"``."""
    path = nodeid.split("::", 1)[0].replace("\\", "/")
    parts = [p for p in path.split("/") if p and p != "."]
    dirs = parts[:-1]
    if "claims" in dirs:
        rest = dirs[dirs.index("claims") + 1:]
        return rest[0] if rest else TOP_LEVEL
    return dirs[-1] if dirs else TOP_LEVEL


def _studies(report: Report) -> list[str]:
    """The report's studies, in the order their first claim ran."""
    seen: dict[str, None] = {}
    for c in report.claims:
        seen.setdefault(study_of(c.nodeid), None)
    return list(seen)


def plots_in(
    report_dir: str | os.PathLike[str], *, studies: Iterable[str] | None = None
) -> dict[str, list[Path]]:
    """The plots the studies wrote into the report directory: ``REPORT_DIR/<study>/*.png``,
    sorted by file name, keyed by study, studies in sorted order. Only studies with at least one
    PNG are listed; with `studies`, only those. A missing directory has no plots.

    Example::

        plots_in(Path("reports/latest"))   # {"tacgen": [.../tacgen/in_encoder.png, ...]}
    """
    root = Path(report_dir)
    wanted = None if studies is None else set(studies)
    out: dict[str, list[Path]] = {}
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name)
    except OSError:
        return out
    for entry in entries:
        if entry.name.startswith(".") or (wanted is not None and entry.name not in wanted):
            continue
        if not entry.is_dir():
            continue
        pngs = sorted(
            (p for p in entry.iterdir() if p.suffix.lower() == ".png" and p.is_file()),
            key=lambda p: p.name,
        )
        if pngs:
            out[entry.name] = pngs
    return out


def _caption(path: Path) -> str:
    """``steering_layer12.png`` -> ``steering layer12``."""
    words = path.stem.replace("_", " ").replace("-", " ").split()
    return " ".join(words) or path.name


def _data_uri(path: Path) -> tuple[str | None, str]:
    """(data URI, "") for a readable image, or (None, why not)."""
    mime = PLOT_SUFFIXES.get(path.suffix.lower())
    if mime is None:
        return None, f"not an image type the page can show ({path.suffix or 'no suffix'})"
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror or exc}"
    if mime == "image/png" and not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None, "is not a PNG file"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", ""


# ---------------------------------------------------------------------------------------------
# Formatting


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _param(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _slug(text: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in text)
    return keep.strip("-") or "study"


def _counts(claims: Sequence[ClaimResult]) -> dict[str, int]:
    found = [c.outcome for c in claims]
    return {o: found.count(o) for o in OUTCOMES}


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
        by_study[study_of(c.nodeid)].append((i, c))
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


def _provenance(report: Report) -> list[str]:
    run = report.run
    out = ['<section class="provenance">', "<h2>Provenance</h2>", '<dl class="kv">']

    def kv(key: str, value_html: str) -> None:
        out.append(f"<dt>{_e(key)}</dt><dd>{value_html}</dd>")

    kv("seed", f'<code class="seed">{run.seed}</code>')
    kv("resamples", f"<code>{run.resamples}</code>")
    kv("reproduce", f'<pre class="command"><code>{_e(run.command)}</code></pre>')
    kv("started", _e(run.started))
    kv("duration", f"{run.duration_s:.1f}s")
    if run.git is None:
        kv("git", "not a git repository")
    else:
        dirty = (' <span class="dirty">(dirty: uncommitted changes)</span>'
                 if run.git.dirty else " (clean)")
        kv("git commit", f'<code class="commit">{_e(run.git.commit)}</code>{dirty}')
    versions = ", ".join(
        f"{_e(k)} <code>{_e(v) if v is not None else 'not installed'}</code>"
        for k, v in run.versions.items()
    )
    kv("versions", versions or "none recorded")
    out.append("</dl>")

    out.append("<h3>Models</h3>")
    out += _records_table("models", ("name", "spec", "fingerprint", "device", "dtype"),
                          [(m.name, m.spec, m.fingerprint, m.device, m.dtype) for m in report.models],
                          code=("spec",), hashes=("fingerprint",), empty="No models registered.")
    out.append("<h3>Data sets</h3>")
    out += _records_table("datasets", ("name", "path", "content hash"),
                          [(d.name, d.path, d.content_hash) for d in report.datasets],
                          code=("path",), hashes=("content hash",), empty="No data sets registered.")
    out.append("</section>")
    return out


def _records_table(kind: str, headers: Sequence[str], rows: Sequence[Sequence[str]], *,
                   code: Sequence[str], hashes: Sequence[str], empty: str) -> list[str]:
    """A provenance table (models, data sets): escaped cells, `code` columns in <code>, `hashes`
    columns in the monospace hash style; `empty` when there are no rows."""
    if not rows:
        return [f"<p>{_e(empty)}</p>"]
    out = [f'<table class="{kind}"><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in headers)
           + "</tr></thead><tbody>"]
    for row in rows:
        cells = []
        for header, value in zip(headers, row):
            if header in hashes:
                cells.append(f'<td class="hash mono">{_e(value)}</td>')
            elif header in code:
                cells.append(f"<td><code>{_e(value)}</code></td>")
            else:
                cells.append(f"<td>{_e(value)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return out


def _summary(
    studies: Sequence[str],
    by_study: Mapping[str, Sequence[tuple[int, ClaimResult]]],
    slugs: Mapping[str, str],
) -> list[str]:
    all_claims = [c for s in studies for _, c in by_study[s]]
    total = _counts(all_claims)
    columns = [(h, o) for h, o in SUMMARY_COLUMNS
               if o not in ("xfailed", "xpassed") or total[o]]
    out = ['<section id="summary">', "<h2>Summary</h2>", '<table class="summary"><thead><tr>',
           "<th>study</th><th>claims</th>"]
    out += [f"<th>{_e(h)}</th>" for h, _ in columns]
    out.append("</tr></thead><tbody>")

    def row(name_html: str, n: int, counts: Mapping[str, int], attrs: str) -> None:
        cells = "".join(
            f'<td class="num{" count-" + o if counts[o] else ""}" data-outcome="{o}">'
            f"{counts[o]}</td>"
            for _, o in columns
        )
        out.append(f'<tr {attrs}><td>{name_html}</td><td class="num">{n}</td>{cells}</tr>')

    for s in studies:
        claims = [c for _, c in by_study[s]]
        row(f'<a href="#{slugs[s]}">{_e(s)}</a>', len(claims), _counts(claims),
            f'data-study="{_e(s)}"')
    row("<strong>all</strong>", len(all_claims), total, 'class="total" data-study=""')
    out += ["</tbody></table>", "</section>"]
    return out


def _study(
    study: str, slug: str, claims: Sequence[tuple[int, ClaimResult]], plots: Sequence[Path]
) -> list[str]:
    out = [f'<section class="study" id="{slug}" data-study="{_e(study)}">', f"<h2>{_e(study)}</h2>"]
    counts = _counts([c for _, c in claims])
    parts = ", ".join(f"{n} {_e(VERDICTS[o][0].split(' ')[0])}" for o, n in counts.items() if n)
    out.append(f'<p class="lede">{len(claims)} claims{f" ({parts})" if parts else ""}'
               f"{f'; {len(plots)} plots' if plots else ''}.</p>")
    if plots:
        out += ['<h3>Plots</h3>', '<div class="plots">']
        for p in plots:
            caption = _caption(p)
            uri, why = _data_uri(p)
            if uri is None:
                out.append(f'<figure class="plot missing"><figcaption>{_e(caption)} '
                           f"(<code>{_e(p.name)}</code>) {_e(why)}</figcaption></figure>")
                continue
            out.append(
                f'<figure class="plot"><img src="{uri}" alt="{_e(caption)}">'
                f"<figcaption>{_e(caption)} (<code>{_e(p.name)}</code>)</figcaption></figure>"
            )
        out.append("</div>")
    if claims:
        out.append("<h3>Claims</h3>")
    for i, c in claims:
        out += _claim(i, c)
    out.append("</section>")
    return out


def _claim(index: int, c: ClaimResult) -> list[str]:
    label, css = VERDICTS.get(c.outcome, (c.outcome, "error"))
    out = [
        f'<article class="claim {css}" id="claim-{index}" data-outcome="{_e(c.outcome)}">',
        (f'<h4><span class="verdict {css}">{_e(label)}</span> '
         f'<span class="claim-text">{_e(c.text)}</span></h4>'),
        '<dl class="kv">',
        f'<dt>node id</dt><dd><code>{_e(c.nodeid)}</code></dd>',
        f"<dt>source</dt><dd>{_e(c.source) if c.source else '<em>none given</em>'}</dd>",
    ]
    if c.params:
        params = ", ".join(f"<code>{_e(k)}={_e(_param(v))}</code>" for k, v in c.params.items())
        out.append(f"<dt>parameters</dt><dd>{params}</dd>")
    out.append(f"<dt>claim seed</dt><dd><code>{c.seed}</code></dd>")
    level = "" if c.level is None else f", judged at the {c.level * 100:.4g}% level"
    out.append(f'<dt>family</dt><dd class="family"><code>{_e(c.family)}</code>: {c.family_size} '
               f'claim{"s" if c.family_size != 1 else ""}, correction {_e(c.correction)}{level}</dd>')
    out.append(f"<dt>duration</dt><dd>{c.duration_s:.2f}s</dd>")
    if c.message:
        out.append(f'<dt>message</dt><dd><pre class="message">{_e(c.message)}</pre></dd>')
    out.append("</dl>")
    if c.evidence:
        out.append(
            '<table class="evidence"><thead><tr><th>statistic</th><th>site</th><th>value</th>'
            "<th>CI</th><th>n</th><th>method</th><th>expectation</th><th>verdict</th>"
            "</tr></thead><tbody>"
        )
        for ev in c.evidence:
            if ev.status != "ok":
                verdict, vcss = f"NOT HELD (degenerate: {ev.reason or 'no reason'})", "failed"
            elif ev.held:
                verdict, vcss = "held", "held"
            else:
                verdict, vcss = "NOT HELD", "failed"
            method = ev.method + (f" over {ev.unit}" if ev.unit else "")
            out.append(
                f"<tr><td>{_e(ev.statistic or 'estimate')}</td>"
                f"<td>{f'<code>{_e(ev.site)}</code>' if ev.site else '-'}</td>"
                f'<td class="num">{_e(format_number(ev.value))}</td>'
                f'<td class="num">{_e(format_ci(ev))}</td>'
                f'<td class="num">{ev.n}</td>'
                f"<td>{_e(method)}</td>"
                f"<td><code>{_e(ev.expectation)}</code></td>"
                f'<td class="{vcss}">{_e(verdict)}</td></tr>'
            )
        out.append("</tbody></table>")
    else:
        out.append("<p><em>No evidence recorded.</em></p>")
    out.append("</article>")
    return out


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
