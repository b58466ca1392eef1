"""A report as plain text: numbers, CIs, and the terminal table's rows and column widths.

Contents:

- `format_number(x)`, `format_ci(evidence)`: numbers as every view shows them (terminal, HTML, diff);
  an exact comparison's evidence shows ``exact (max |dev| ..., tol ...)`` where a CI would be.
- `table_rows(report)`: the rows of the terminal table, as `Row` values.
- `column_widths(rows, total=...)`: the table's column widths within a terminal's width, none
  narrower than its longest word (up to `UNBROKEN` characters), so the table wraps only at spaces.
- `duration_rows(report, top=...)`: the durations table (slowest claims first, with each
  claim's peak memory) as `DurationRow` values; `format_bytes(n)`.

No Rich here: the terminal renderer is `harness.reports.terminal`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness.verdicts.evidence import Evidence
from harness.reports.schema import Report

__all__ = [
    "Row",
    "format_number",
    "format_ci",
    "table_rows",
    "column_widths",
    "DurationRow",
    "duration_rows",
    "format_bytes",
    "PRECISION_BOUNDS",
    "precision_note",
]

PRECISION_BOUNDS = {"bfloat16": 0.03, "float16": 0.005}
"""dtype -> how far a claim's effect may move from a float32 run of the same model, as a share of
the effect's span: the bound ``tests/harness/models/test_placement.py`` pins for a steering sweep
of tiny GPT-2, Llama and Qwen2 models in that dtype (measured at most: bfloat16 1.0% of the span,
float16 0.07%), with room for larger models."""


@dataclass(frozen=True)
class Row:
    """One row of the terminal table. `claim` is empty on a claim's second and later rows;
    `ok` is True (held / passed), False (not held / failed / error) or None (skipped)."""

    claim: str
    nodeid: str
    params: str
    statistic: str
    value: str
    ci: str
    n: str
    verdict: str
    ok: bool | None


def table_rows(report: Report) -> tuple[Row, ...]:
    """One row per evidence record; a claim without evidence, or one that failed for a reason
    its evidence does not show, also gets a row with its outcome and message (a plain check
    that passed without evidence: ``check passed``). A record that judges the same numbers as
    the row above it shows only its verdict, and a claim skipped for the reason the claim above it
    was skipped says ``SKIPPED: as above`` (a study whose model does not meet a precondition skips
    dozens of claims with one message)."""
    rows: list[Row] = []
    last_skip = None   # the message of the claim above, when it was skipped
    for c in report.claims:
        params = ", ".join(f"{k}={v}" for k, v in c.params.items())
        if c.family_size > 1:
            params = f"{params}\n" if params else ""
            params += f"family of {c.family_size}: {c.correction}"
        param_values = {str(v) for v in c.params.values()}
        first = True

        def add(**cells: Any) -> None:
            nonlocal first
            rows.append(Row(claim=c.text if first else "", nodeid=c.nodeid if first else "",
                            params=params if first else "", **cells))
            first = False

        previous = None
        for ev in c.evidence:
            if ev.status != "ok":
                verdict = f"NOT HELD: {ev.expectation} (degenerate: {ev.reason or 'no reason'})"
            else:
                verdict = f"{'held' if ev.held else 'NOT HELD'}: {ev.expectation}"
            stat = _stat(ev, shown=param_values)
            numbers = (stat, format_number(ev.value), format_ci(ev), str(ev.n))
            if numbers == previous and rows[-1].ok == ev.held and ev.status == "ok":
                # the same estimate judged again with the same verdict: one row lists both
                rows[-1] = dataclasses.replace(rows[-1], verdict=f"{rows[-1].verdict}, {ev.expectation}")
            elif numbers == previous:  # judged again, another verdict: show only the verdict
                add(statistic="", value="", ci="", n="", verdict=verdict, ok=ev.held)
            else:
                add(statistic=stat, value=numbers[1], ci=numbers[2], n=numbers[3],
                    verdict=verdict, ok=ev.held)
            previous = numbers
        shown_failure = any(not ev.held for ev in c.evidence)
        if not c.evidence or (c.outcome != "passed" and not shown_failure):
            if c.outcome != "passed":
                verdict = c.outcome.upper()
            else:  # a plain check; a claim without evidence passed only in reports from before that was an error
                verdict = "check passed" if c.check else "passed (no evidence recorded)"
            if c.message and c.outcome == "skipped" and c.message == last_skip:
                verdict += ": as above"
            elif c.message:
                verdict += f": {_shorten(c.message, 160)}"
            ok = None if c.outcome in ("skipped", "xfailed") else c.outcome == "passed"
            add(statistic="", value="", ci="", n="", verdict=verdict, ok=ok)
        last_skip = c.message if c.outcome == "skipped" else None
    return tuple(rows)


def _stat(ev: Evidence, *, shown: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """The statistic's name, with '@ site' unless a parameter already shows the site."""
    name = ev.statistic or "estimate"
    return f"{name} @ {ev.site}" if ev.site and ev.site not in shown else name


def format_number(x: float | None) -> str:
    """A number as the tables show it: 4 significant digits, ``-`` for None."""
    if x is None:
        return "-"
    return f"{x:.4g}" if math.isfinite(x) else str(x)


def format_ci(ev: Evidence) -> str:
    """``95% [low, high]`` of an evidence record; ``exact (max |dev| 0, tol 1e-06)`` for the
    evidence of an exact comparison (kind ``"exact"``), which has no interval."""
    if ev.kind == "exact":
        dev = "" if ev.deviation is None else f"max |dev| {format_number(ev.deviation)}, "
        tol = "-" if ev.tolerance is None else f"{ev.tolerance:g}"
        return f"exact ({dev}tol {tol})"
    level = ev.level * 100 if ev.level <= 1 else ev.level
    return f"{level:.4g}% [{format_number(ev.ci_low)}, {format_number(ev.ci_high)}]"


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


COLUMNS: tuple[str, ...] = ("claim", "parameters", "statistic", "value", "CI", "n", "verdict")

# The longest run of characters without a space that a column is made wide enough to keep on
# one line: every site name (``decoder.12.cross_attn_out``), ``name=value`` parameter and number
# is shorter. A longer run (a path in an error message) may be folded.
UNBROKEN = 32


def _longest_line(cells: Iterable[str]) -> int:
    return max((len(line) for c in cells for line in c.split("\n")), default=0)


def _longest_word(cells: Iterable[str]) -> int:
    return max((min(len(word), UNBROKEN) for c in cells for word in c.split()), default=0)


def column_widths(rows: Iterable[Row], *, total: int) -> dict[str, int]:
    """Widths of the table's columns within `total` characters.

    value, CI and n are as wide as their content; parameters up to 28 and verdict up to 32;
    claim and statistic share the rest, each as wide as its content when that fits, else in
    proportion to their content (never below 16). No column is narrower than its longest word
    (up to `UNBROKEN` characters), so the table wraps only at spaces: a site name, a parameter
    or a number is never split across lines. Where even those widths do not fit in `total`,
    claim, statistic, parameters and verdict give way down to their longest words, in that
    order, and the table is as wide as they are.
    """
    rows = tuple(rows)
    cells = {
        "claim": [r.claim for r in rows], "parameters": [r.params for r in rows],
        "statistic": [r.statistic for r in rows], "value": [r.value for r in rows],
        "CI": [r.ci for r in rows], "n": [r.n for r in rows], "verdict": [r.verdict for r in rows],
    }
    widths = {k: max(len(k), _longest_line(v)) for k, v in cells.items()}
    floors = {k: max(len(k), _longest_word(v)) for k, v in cells.items()}
    widths["parameters"] = max(min(widths["parameters"], 28), floors["parameters"])
    widths["verdict"] = max(min(widths["verdict"], 32), floors["verdict"])
    shared = ("claim", "statistic")
    space = total - 3 * (len(COLUMNS) - 1) - sum(widths[k] for k in COLUMNS if k not in shared)
    wanted = sum(widths[k] for k in shared)
    if wanted > space:
        for k in shared:
            widths[k] = max(floors[k], min(widths[k], max(16, space * widths[k] // wanted)))
    excess = sum(widths.values()) + 3 * (len(COLUMNS) - 1) - total
    for k in ("claim", "statistic", "parameters", "verdict"):
        if excess <= 0:
            break
        give = min(excess, widths[k] - floors[k])
        widths[k] -= give
        excess -= give
    return widths


@dataclass(frozen=True)
class DurationRow:
    """One row of the durations table: a claim's node id, its outcome, its time (setup, call
    and teardown) and its peak memory over that time (``-`` where not measured; a getrusage
    RSS is the process's peak so far, marked ``<=``)."""

    nodeid: str
    outcome: str
    duration: str
    peak_rss: str
    peak_cuda: str


def duration_rows(report: Report, *, top: int | None = None) -> tuple[DurationRow, ...]:
    """The claims slowest first (ties in report order), `top` of them (None: all)."""
    ranked = sorted(report.claims, key=lambda c: -c.duration_s)
    rows = []
    for c in ranked[:top] if top is not None else ranked:
        m = c.memory
        rss = "-" if m is None else ("" if m.rss_method == "VmHWM" else "<= ") + format_bytes(m.rss_bytes)
        rows.append(DurationRow(nodeid=c.nodeid, outcome=c.outcome, duration=f"{c.duration_s:.2f}s",
                                peak_rss=rss, peak_cuda="-" if m is None or m.cuda_bytes is None
                                else format_bytes(m.cuda_bytes)))
    return tuple(rows)


def format_bytes(n: int | None) -> str:
    """Bytes as the tables show them: ``812 MiB``, ``1.42 GiB`` (binary units), ``-`` for None."""
    if n is None:
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            value = n / size
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n} B"


def precision_note(name: str, dtype: str) -> str | None:
    """The header's line for a model of the run loaded in reduced precision (`PRECISION_BOUNDS`):
    how far its numbers may sit from a float32 run's, and what that means for a verdict; None for
    float32 and float64."""
    bound = PRECISION_BOUNDS.get(str(dtype).removeprefix("torch."))
    if bound is None:
        return None
    return (f"precision: model {name} runs in {str(dtype).removeprefix('torch.')}: its effects may differ from a "
            f"float32 run's by up to {bound:.0%} of their span (the bound tests/harness/models/test_placement.py "
            "pins); a CI whose end lies that close to its bar is not decided by this run, and a float32 baseline "
            "shows such claims as moved")
