"""The sections of the HTML page: provenance, the summary per study, each study (its plots
and claims), each claim with its evidence, and the durations table (every claim, slowest first,
with its peak memory). Every function returns lines of HTML, with all
text from the report escaped; the page around them is `harness.reports.html`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.reports.formatting import duration_rows, format_bytes, format_ci, format_number, precision_note
from harness.reports.html_plots import _caption, _data_uri
from harness.reports.schema import OUTCOMES, ClaimResult, Report

__all__: list[str] = []

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


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _param(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _counts(claims: Sequence[ClaimResult]) -> dict[str, int]:
    found = [c.outcome for c in claims]
    return {o: found.count(o) for o in OUTCOMES}


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
    if run.notes:
        kv("notes", '<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in run.notes) + "</ul>")
    out.append("</dl>")

    out.append("<h3>Studies</h3>")
    out += _records_table("studies", ("study", "model", "thresholds row", "why"),
                          [(s.study, s.model, s.row, s.why) for s in report.studies],
                          code=("model", "thresholds row"), hashes=(), empty="No study declared a thresholds row.")
    out.append("<h3>Models</h3>")
    out += _records_table("models", ("name", "spec", "fingerprint", "device", "dtype", "source"),
                          [(m.name, m.spec, m.fingerprint, m.device, m.dtype, m.source) for m in report.models],
                          code=("spec", "source"), hashes=("fingerprint",), empty="No models registered.")
    out += [f'<p class="precision">{_e(said)}</p>' for m in report.models
            if (said := precision_note(m.name, m.dtype)) is not None]
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
    if c.memory is not None:
        m = c.memory
        how = "" if m.rss_method == "VmHWM" else " (getrusage: the process&#x27;s peak so far)"
        cuda = "" if m.cuda_bytes is None else f", CUDA {_e(format_bytes(m.cuda_bytes))} allocated"
        out.append(f'<dt>peak memory</dt><dd class="memory">RSS {_e(format_bytes(m.rss_bytes))}{how}{cuda}</dd>')
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


def _durations(report: Report) -> list[str]:
    """Every claim, slowest first: its time and peak memory (setup, call and teardown)."""
    rows = duration_rows(report)
    if not rows:
        return []
    cuda = any(r.peak_cuda != "-" for r in rows)
    out = ['<section id="durations">', "<h2>Durations</h2>",
           "<p>Every claim, slowest first: the time of its setup, call and teardown and the peak "
           "memory over them (RSS; CUDA&#x27;s max allocated where a GPU was in use).</p>",
           '<table class="durations"><thead><tr><th>time</th><th>peak RSS</th>'
           + ("<th>peak CUDA</th>" if cuda else "") + "<th>outcome</th><th>claim</th></tr></thead><tbody>"]
    for r in rows:
        out.append(f'<tr><td class="num">{_e(r.duration)}</td><td class="num">{_e(r.peak_rss)}</td>'
                   + (f'<td class="num">{_e(r.peak_cuda)}</td>' if cuda else "")
                   + f"<td>{_e(r.outcome)}</td><td><code>{_e(r.nodeid)}</code></td></tr>")
    out += ["</tbody></table>", "</section>"]
    return out
