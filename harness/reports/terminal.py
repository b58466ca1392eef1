"""The report in the terminal: the header lines and the one function that touches Rich.

Contents:

- `header_lines(report, path=None)`: seed, counts, models (with the precision of one in bfloat16 or
  float16, `precision_note`), data sets, versions, reproduce command.
- `render_terminal(report, console)`: the header and the table (`harness.reports.formatting`)
  printed to a Rich console (Rich is imported lazily), wrapped at spaces only: a site name,
  parameter or number is never split across lines; then the durations table (the
  `DURATIONS_SHOWN` slowest claims with their peak memory).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from harness.reports.formatting import column_widths, duration_rows, precision_note, table_rows
from harness.reports.schema import Report

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

__all__ = [
    "header_lines",
    "render_terminal",
    "DURATIONS_SHOWN",
]

DURATIONS_SHOWN = 10   # claims in the terminal's durations table (the HTML page lists every claim)


def header_lines(report: Report, *, path: str | os.PathLike[str] | None = None) -> tuple[str, ...]:
    """The lines above the table: seed, models, data sets, versions, reproduce command."""
    run = report.run
    counts = ", ".join(f"{n} {o}" for o, n in report.counts().items()) or "none"
    lines = [f"claims: seed {run.seed}, resamples {run.resamples}; "
             f"{len(report.claims)} claims ({counts}) in {run.duration_s:.1f}s"]
    families = {c.family: c for c in report.claims if c.family_size > 1}
    if families:
        rules = sorted({c.correction for c in report.claims if c.family_size > 1})
        lines.append(f"families: {len(families)} of 2 or more claims; rules used: {', '.join(rules)} "
                     "(bonferroni: an effect claim of a family of m is judged at 1 - 0.05/m; bounds need none)")
    for s in report.studies:
        lines.append(f"study {s.study}: thresholds row {s.row!r} ({s.why})")
    for m in report.models:
        source = f"  from {m.source}" if m.source and m.source.partition(": ")[2] != m.spec else ""
        lines.append(f"model {m.name}: {m.spec}  fingerprint {m.fingerprint[:12]}  ({m.device}, {m.dtype}){source}")
        if (said := precision_note(m.name, m.dtype)) is not None:
            lines.append(said)
    for d in report.datasets:
        algo, sep, digest = d.content_hash.rpartition(":")
        lines.append(f"data {d.name}: {d.path}  hash {algo}{sep}{digest[:12]}")
    versions = ", ".join(f"{k} {v}" for k, v in run.versions.items() if v)
    git = ""
    if run.git is not None:
        git = f"git {run.git.commit[:10]}{' (dirty)' if run.git.dirty else ''}; "
    if git or versions:
        lines.append(f"{git}{versions}")
    for note in run.notes:
        lines.append(f"note: {note}")
    lines.append(f"reproduce: {run.command}")
    if path is not None:
        lines.append(f"report: {path}")
    return tuple(lines)


def render_terminal(
    report: Report, console: "Console", *, path: str | os.PathLike[str] | None = None
) -> None:
    """Print the report's header and table to a Rich `console`.

    Example::

        render_terminal(read_report("reports/latest/report.json"), Console(width=160))
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    for line in header_lines(report, path=path):
        style = "bold" if line.startswith(("claims:", "reproduce:")) else ""
        console.print(Text(line, style=style), soft_wrap=True)
    rows = table_rows(report)
    widths = column_widths(rows, total=console.width)
    needed = sum(widths.values()) + 3 * (len(widths) - 1)
    # wider than the console only where the columns' longest words do not fit: then the table
    # keeps its widths (lines run past the console) rather than Rich squeezing words apart
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False,
                  width=needed if needed > console.width else None)
    for name, width in widths.items():
        numeric = name in ("value", "n")
        # wrapped at spaces only: no column is narrower than its longest word (see column_widths);
        # "fold" splits only a word longer than `UNBROKEN` (a path in a message)
        table.add_column(name, width=width, justify="right" if numeric else "left",
                         overflow="fold", no_wrap=name in ("value", "CI", "n"))
    styles = {True: "green", False: "bold red", None: "yellow"}
    for row in rows:
        table.add_row(
            Text(row.claim), Text(row.params), Text(row.statistic), Text(row.value),
            Text(row.ci), Text(row.n), Text(row.verdict, style=styles[row.ok]),
        )
    console.print(table, crop=needed <= console.width)
    _render_durations(report, console)


def _render_durations(report: Report, console: "Console") -> None:
    """The slowest claims, with the peak memory each reached (setup, call and teardown)."""
    from rich import box
    from rich.table import Table

    rows = duration_rows(report, top=DURATIONS_SHOWN)
    if not rows:
        return
    cuda = any(r.peak_cuda != "-" for r in rows)
    shown = f"{len(rows)} slowest" if len(report.claims) > len(rows) else "all"
    console.print()
    console.print(f"durations ({shown} of {len(report.claims)} claims; time and peak memory of setup, call and teardown):",
                  soft_wrap=True)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("peak RSS", justify="right", no_wrap=True)
    if cuda:
        table.add_column("peak CUDA", justify="right", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("claim", overflow="fold")
    for r in rows:
        table.add_row(r.duration, r.peak_rss, *([r.peak_cuda] if cuda else []), r.outcome, r.nodeid)
    console.print(table)
