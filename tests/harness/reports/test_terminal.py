"""The terminal table wraps only at spaces: a site name, a parameter or a number is never split
across lines (`encoder.12.resid_p` / `ost` was)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io

import pytest
from rich.console import Console

from harness.reports import ClaimResult, build_report, column_widths, render_terminal, table_rows
from harness.reports.formatting import UNBROKEN
from harness.verdicts.evidence import Evidence

SITES = ["encoder.12.resid_post", "decoder.12.cross_attn_out", "blocks.23.attn.head13", "encoder.11.block_out"]
LONG_CLAIM = ("Adding alpha x the class-mean direction at every encoder position moves logP(intro) - "
              "logP(apply) with a positive slope near 0, well above norm-matched random directions there")


def evidence(site: str, **changes) -> Evidence:
    fields = dict(statistic="slope vs alpha, |alpha| <= 0.25", value=0.7981, ci_low=0.7626, ci_high=0.8474,
                  level=0.975, n=500, method="bootstrap BCa", unit="examples", site=site, seed=7,
                  fingerprint="3f2a9c0d1e2b", expectation="exceeds(-0.1156 [-0.148, -0.09492], factor=1.5)",
                  held=True, status="ok", reason="")
    fields.update(changes)
    return Evidence(**fields)


def long_site_report():
    claims = []
    for i, site in enumerate(SITES):
        other = SITES[(i + 1) % len(SITES)]
        claims.append(ClaimResult(
            nodeid=f"claims/test_steer.py::test_moves[{site}]", text=LONG_CLAIM, source="notebook 000",
            params={"site": site, "layer": 12, "control": "random2"}, outcome="failed", message="",
            duration_s=0.5, seed=99, family="steer", family_size=4, correction="bonferroni", level=0.9875,
            evidence=(evidence(site),
                      evidence(other, statistic="slope vs alpha, |alpha| <= 0.25 of the RMS-scaled injection",
                               held=False, expectation="within(-0.35, 0.35)"))))
    return build_report(seed=0, resamples=9999, command="pytest claims/", started=dt.datetime(
        2026, 1, 2, tzinfo=dt.timezone.utc), duration_s=1.0, claims=claims, models=[], datasets=[],
        versions={}, git=None)


def render(report, width: int) -> str:
    buffer = io.StringIO()
    render_terminal(report, Console(file=buffer, width=width, color_system=None))
    return buffer.getvalue()


def cells(report) -> list[str]:
    return [cell for row in table_rows(report)
            for cell in (row.claim, row.params, row.statistic, row.value, row.ci, row.n, row.verdict)]


@pytest.mark.parametrize("width", [160, 120])
def test_every_site_name_appears_unbroken_in_the_table(width):
    report = long_site_report()
    text = render(report, width)
    for site in SITES:
        shown = sum(cell.count(site) for cell in cells(report))
        assert shown >= 2 and text.count(site) == shown, (site, text)


@pytest.mark.parametrize("width", [160, 120, 90])
def test_every_word_of_every_cell_stays_on_one_line(width):
    report = long_site_report()
    words = set(" ".join(cells(report)).split())
    rendered = set(render(report, width).split())
    assert words - rendered == set()


def test_at_160_columns_the_table_fits_the_console():
    lines = render(long_site_report(), 160).splitlines()
    assert max(len(line) for line in lines if not line.startswith("─")) <= 160


def test_a_console_too_narrow_for_the_longest_words_gets_a_wider_table_not_split_words():
    text = render(long_site_report(), 60)
    assert "site=decoder.12.cross_attn_out," in text and "-0.09492]," in text


def test_no_column_is_narrower_than_its_longest_word_up_to_the_limit():
    report = long_site_report()
    rows = table_rows(report)
    widths = column_widths(rows, total=160)
    by_column = {"claim": [r.claim for r in rows], "parameters": [r.params for r in rows],
                 "statistic": [r.statistic for r in rows], "verdict": [r.verdict for r in rows]}
    for name, column in by_column.items():
        longest = max(min(len(w), UNBROKEN) for c in column for w in c.split())
        assert widths[name] >= longest, name
    assert widths["parameters"] == len("site=decoder.12.cross_attn_out,")


def test_a_multi_line_cell_is_as_wide_as_its_longest_line():
    report = long_site_report()
    claim = report.claims[0]
    short = dataclasses.replace(report, claims=[dataclasses.replace(claim, params={"layer": 12})])
    rows = table_rows(short)
    assert rows[0].params == "layer=12\nfamily of 4: bonferroni"
    assert column_widths(rows, total=160)["parameters"] == len("family of 4: bonferroni")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_the_header_states_the_tolerance_a_reduced_precision_model_warrants(dtype, tmp_path):
    from harness.reports import write_html
    from harness.reports.formatting import PRECISION_BOUNDS
    from harness.verdicts.evidence import ModelRecord

    report = dataclasses.replace(long_site_report(), models=(
        ModelRecord("tracer", spec="fixture:tracer", fingerprint="ab" * 32, device="cpu", dtype=dtype),))
    text = render(report, 160)
    said = [line for line in text.splitlines() if line.startswith("precision:")]
    page = write_html(report, tmp_path).read_text()
    if dtype == "float32":
        assert said == [] and 'class="precision"' not in page
        return
    assert f'<p class="precision">precision: model tracer runs in {dtype}: ' in page
    assert said == [f"precision: model tracer runs in {dtype}: its effects may differ from a float32 run's by up to "
                    f"{PRECISION_BOUNDS[dtype]:.0%} of their span (the bound tests/harness/models/test_placement.py "
                    "pins); a CI whose end lies that close to its bar is not decided by this run, and a float32 "
                    "baseline shows such claims as moved"]


def test_a_claim_skipped_for_the_reason_of_the_claim_above_says_as_above():
    why = "the model does not meet the study's selection rule: no length of at least 6 steps ..."
    base = long_site_report().claims[0]
    claims = [dataclasses.replace(base, nodeid=f"claims/t.py::test_{i}", outcome="skipped", message=message,
                                  evidence=(), family_size=1)
              for i, message in enumerate([why, why, why, "another reason", why])]
    report = dataclasses.replace(long_site_report(), claims=tuple(claims))
    assert [r.verdict for r in table_rows(report)] == [
        f"SKIPPED: {why}", "SKIPPED: as above", "SKIPPED: as above", "SKIPPED: another reason", f"SKIPPED: {why}"]
