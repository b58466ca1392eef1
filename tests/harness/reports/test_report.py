"""Tests for `harness.reports.report`: the report as data, its JSON round trip, atomic writes, the table."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
from pathlib import Path

import pytest
from rich.console import Console

from harness.errors import HarnessError
from harness.verdicts.evidence import DatasetRecord, Evidence, ModelRecord
from harness.reports import (
    SCHEMA_VERSION,
    ClaimResult,
    StudyRow,
    GitInfo,
    Report,
    ReportError,
    build_report,
    column_widths,
    collect_versions,
    format_ci,
    git_state,
    header_lines,
    read_report,
    render_terminal,
    report_to_json,
    table_rows,
    write_report,
)
from tests._support.paths import ROOT

STARTED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def evidence(**changes) -> Evidence:
    fields = dict(statistic="slope near 0", value=0.5, ci_low=0.2, ci_high=0.8, level=0.95, n=500,
                  method="bootstrap BCa", unit="examples", site="encoder.12.resid_post", seed=7,
                  fingerprint="3f2a9c0d1e2b", expectation="ci_excludes(0)", held=True,
                  status="ok", reason="")
    fields.update(changes)
    return Evidence(**fields)


def claim(**changes) -> ClaimResult:
    fields = dict(nodeid="claims/test_steer.py::test_moves[layer12]",
                  text="Class-mean steering moves the score", source="notebook 000",
                  params={"layer": 12}, outcome="passed", message="", duration_s=0.25, seed=99,
                  evidence=(evidence(), evidence(expectation="positive()")))
    fields.update(changes)
    return ClaimResult(**fields)


def report(**changes) -> Report:
    fields = dict(
        seed=0, resamples=9999, command="pytest claims/ --claims-seed=0", started=STARTED,
        duration_s=12.5,
        claims=[claim(), claim(nodeid="claims/test_steer.py::test_control", params={}, outcome="failed",
                               message="expected ...", evidence=(evidence(held=False),)),
                claim(nodeid="claims/test_steer.py::test_plain", params={}, evidence=())],
        models=[ModelRecord("tacgen", "fixture:tacgen", "3f2a9c0d1e2b4a5f6789", "cpu", "float32")],
        datasets=[DatasetRecord("mbpp", "data/mbpp.jsonl", "sha256:9b1c00112233445566778899")],
        versions={"python": "3.11.7", "torch": "2.3.0", "transformers": None, "harness": "0.1.0"},
        git=GitInfo(commit="a" * 40, dirty=True),
        studies=[StudyRow("tacgen", "fixture:tacgen", "fixture:tacgen", "the model's spec")],
    )
    fields.update(changes)
    return build_report(**fields)


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# --- building ----------------------------------------------------------------------------------


def test_a_report_carries_the_schema_version_and_the_run():
    r = report()
    assert r.schema_version == SCHEMA_VERSION == 3
    assert (r.run.seed, r.run.resamples, r.run.started, r.run.duration_s) == (0, 9999, "2026-01-02T03:04:05+00:00", 12.5)


def test_counts_give_claims_per_outcome():
    assert report().counts() == {"passed": 2, "failed": 1}


def test_build_report_wants_an_aware_start_time():
    with pytest.raises(ReportError, match=r"`started` must be timezone-aware, got naive .*; use datetime.now\(timezone.utc\)"):
        report(started=dt.datetime(2026, 1, 1))


def test_build_report_rejects_an_unknown_outcome():
    with pytest.raises(ReportError, match=r"claim 'x' has outcome 'passd'; outcomes are passed, failed, error, skipped, xfailed, xpassed"):
        report(claims=[claim(nodeid="x", outcome="passd")])


def test_a_report_error_is_a_harness_error():
    assert issubclass(ReportError, HarnessError)


def test_versions_are_read_from_package_metadata():
    versions = collect_versions()
    assert set(versions) == {"python", "torch", "transformers", "harness"}
    assert versions["harness"] == "0.1.0"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", versions["python"])


def test_git_state_is_none_outside_a_git_repo(tmp_path):
    assert git_state(tmp_path) is None


def test_git_state_names_the_commit_inside_a_git_repo():
    root = ROOT
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    state = git_state(root)
    assert state is not None and re.fullmatch(r"[0-9a-f]{40}", state.commit)
    assert isinstance(state.dirty, bool)


# --- JSON --------------------------------------------------------------------------------------


def test_the_json_has_every_documented_field():
    data = report_to_json(report())
    assert list(data) == ["schema_version", "run", "models", "datasets", "claims", "studies"]
    assert list(data["run"]) == ["seed", "resamples", "command", "started", "duration_s", "versions", "git",
                                 "notes"]
    assert data["run"]["git"] == {"commit": "a" * 40, "dirty": True}
    assert list(data["models"][0]) == ["name", "spec", "fingerprint", "device", "dtype", "source"]
    assert list(data["datasets"][0]) == ["name", "path", "content_hash"]
    assert list(data["claims"][0]) == ["nodeid", "identity", "text", "source", "params", "outcome", "message",
                                       "duration_s", "memory", "seed", "family", "family_size", "correction",
                                       "level", "notes", "evidence"]
    assert list(data["claims"][0]["evidence"][0]) == [
        "statistic", "value", "ci_low", "ci_high", "level", "n", "method", "unit", "site", "seed",
        "fingerprint", "expectation", "held", "status", "reason", "resamples"]


def test_a_written_report_reads_back_equal(tmp_path):
    r = report()
    path = write_report(r, tmp_path / "latest")
    assert path == tmp_path / "latest" / "report.json"
    assert read_report(path) == r


def test_a_report_without_git_or_models_reads_back_equal(tmp_path):
    r = report(git=None, models=[], datasets=[], versions={})
    assert read_report(write_report(r, tmp_path)) == r


def test_non_finite_numbers_are_written_as_null(tmp_path):
    r = report(claims=[claim(evidence=(evidence(value=float("nan"), ci_low=float("-inf"),
                                                ci_high=float("inf"), status="degenerate",
                                                reason="constant data", held=False),))])
    data = json.loads(write_report(r, tmp_path).read_text())
    ev = data["claims"][0]["evidence"][0]
    assert (ev["value"], ev["ci_low"], ev["ci_high"]) == (None, None, None)
    assert read_report(tmp_path / "report.json").claims[0].evidence[0].value is None


def test_writing_leaves_no_temporary_files(tmp_path):
    write_report(report(), tmp_path)
    write_report(report(seed=1), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    assert read_report(tmp_path / "report.json").run.seed == 1


def test_the_previous_report_survives_a_failure_during_serialisation(tmp_path):
    first = report()
    write_report(first, tmp_path)
    broken = report(claims=[claim(params={"model": object()})])
    with pytest.raises(ReportError, match=r"cannot write '.*report\.json': the report is not JSON-serialisable \(.*object.*\); claim parameters and evidence must be str, int, float, bool or None"):
        write_report(broken, tmp_path)
    assert read_report(tmp_path / "report.json") == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_the_previous_report_survives_a_failure_to_replace_it(tmp_path, monkeypatch):
    first = report()
    write_report(first, tmp_path)

    def refuse(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk on fire"):
        write_report(report(seed=5), tmp_path)
    monkeypatch.undo()
    assert read_report(tmp_path / "report.json") == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_writing_into_a_file_path_names_the_directory_and_the_fix(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ReportError, match=r"cannot create the report directory '.*file/latest': .*; choose a writable one with --claims-report DIR"):
        write_report(report(), blocker / "latest")


def test_the_written_report_is_readable_by_others(tmp_path):
    path = write_report(report(), tmp_path)
    assert path.stat().st_mode & 0o044 == 0o044


# --- reading bad reports -----------------------------------------------------------------------


def test_a_report_from_a_future_schema_version_names_the_file_and_the_versions(tmp_path):
    data = report_to_json(report())
    data["schema_version"] = 4
    path = write_json(tmp_path / "report.json", data)
    with pytest.raises(ReportError, match=re.escape(
        f"report '{path}' has schema_version 4; this harness reads schema_version 1 or 2 or 3; upgrade "
        "interp-claims to read a newer report, or re-run the study with this version to write it again"
    )):
        read_report(path)


def test_a_report_without_a_schema_version_is_refused(tmp_path):
    path = write_json(tmp_path / "report.json", {"claims": []})
    with pytest.raises(ReportError, match=r"report '.*report\.json' has no `schema_version`; this harness reads schema_version 1"):
        read_report(path)


def test_a_report_missing_a_field_names_the_field(tmp_path):
    data = report_to_json(report())
    del data["claims"][1]["evidence"][0]["held"]
    path = write_json(tmp_path / "report.json", data)
    with pytest.raises(ReportError, match=r"report '.*report\.json' is missing the field `claims\[1\]\.evidence\[0\]\.held`; .*re-run the study to write it again"):
        read_report(path)


def test_a_report_missing_the_run_names_it(tmp_path):
    data = report_to_json(report())
    del data["run"]
    with pytest.raises(ReportError, match=r"is missing the field `run`"):
        read_report(write_json(tmp_path / "report.json", data))


def test_a_field_of_the_wrong_type_names_the_field_and_the_value(tmp_path):
    data = report_to_json(report())
    data["run"]["seed"] = "zero"
    with pytest.raises(ReportError, match=r"has `run\.seed` = 'zero', expected int"):
        read_report(write_json(tmp_path / "report.json", data))


def test_a_boolean_is_not_taken_for_a_number(tmp_path):
    data = report_to_json(report())
    data["claims"][0]["evidence"][0]["n"] = True
    with pytest.raises(ReportError, match=r"has `claims\[0\]\.evidence\[0\]\.n` = True, expected int"):
        read_report(write_json(tmp_path / "report.json", data))


def test_an_unknown_outcome_in_a_file_is_refused(tmp_path):
    data = report_to_json(report())
    data["claims"][0]["outcome"] = "sort of"
    with pytest.raises(ReportError, match=r"has `claims\[0\]\.outcome` = 'sort of', expected one of"):
        read_report(write_json(tmp_path / "report.json", data))


def test_a_file_that_is_not_json_names_the_line(tmp_path):
    path = tmp_path / "report.json"
    path.write_text('{"schema_version": 1,\n oops}')
    with pytest.raises(ReportError, match=r"report '.*report\.json' is not valid JSON \(line 2, column 2: .*\); re-run the study"):
        read_report(path)


def test_a_json_list_is_not_a_report(tmp_path):
    with pytest.raises(ReportError, match=r"holds a JSON list, expected an object"):
        read_report(write_json(tmp_path / "report.json", []))


def test_a_missing_file_names_the_path_and_the_default(tmp_path):
    with pytest.raises(ReportError, match=r"cannot read report '.*nowhere\.json': No such file or directory; pass the path of a report\.json .*reports/latest/report\.json"):
        read_report(tmp_path / "nowhere.json")


# --- the terminal table ------------------------------------------------------------------------


def test_the_same_estimate_held_twice_is_one_row_listing_both_expectations():
    (row,) = table_rows(report(claims=[claim()]))
    assert (row.claim, row.params, row.verdict) == (
        "Class-mean steering moves the score", "layer=12", "held: ci_excludes(0), positive()")
    assert (row.statistic, row.value, row.ci, row.n) == (
        "slope near 0 @ encoder.12.resid_post", "0.5", "95% [0.2, 0.8]", "500")


def test_the_same_numbers_judged_again_with_another_verdict_show_only_the_verdict():
    rows = table_rows(report(claims=[claim(outcome="failed", evidence=(
        evidence(), evidence(expectation="at_least(0.9)", held=False)))]))
    first, again = rows[0], rows[1]
    assert first.verdict == "held: ci_excludes(0)"
    assert (again.statistic, again.value, again.ci, again.n, again.verdict) == (
        "", "", "", "", "NOT HELD: at_least(0.9)")


def test_a_site_already_shown_as_a_parameter_is_not_repeated():
    (row,) = table_rows(report(claims=[claim(params={"site": "encoder.12.resid_post"})]))
    assert row.statistic == "slope near 0"


def test_a_claim_without_evidence_still_gets_a_row():
    (row,) = table_rows(report(claims=[claim(evidence=())]))
    assert (row.claim, row.verdict, row.ok) == ("Class-mean steering moves the score", "passed (no evidence recorded)", True)


def test_a_claim_that_failed_outside_its_evidence_gets_an_outcome_row():
    rows = table_rows(report(claims=[claim(outcome="error", message="error in setup: OSError: no weights")]))
    assert rows[-1].verdict == "ERROR: error in setup: OSError: no weights"
    assert rows[-1].ok is False


def test_a_skipped_claim_is_neither_held_nor_failed():
    (row,) = table_rows(report(claims=[claim(outcome="skipped", message="no GPU", evidence=())]))
    assert (row.verdict, row.ok) == ("SKIPPED: no GPU", None)


def test_a_degenerate_evidence_row_says_why():
    rows = table_rows(report(claims=[claim(outcome="failed", evidence=(
        evidence(held=False, status="degenerate", reason="constant data", value=None),))]))
    assert [(r.value, r.verdict) for r in rows] == [("-", "NOT HELD: ci_excludes(0) (degenerate: constant data)")]


def test_the_header_has_the_seed_models_and_the_command():
    lines = header_lines(report(), path="reports/latest/report.json")
    assert lines[0] == "claims: seed 0, resamples 9999; 3 claims (2 passed, 1 failed) in 12.5s"
    assert "model tacgen: fixture:tacgen  fingerprint 3f2a9c0d1e2b  (cpu, float32)" in lines
    assert "data mbpp: data/mbpp.jsonl  hash sha256:9b1c00112233" in lines
    assert f"git {'a' * 10} (dirty); python 3.11.7, torch 2.3.0, harness 0.1.0" in lines
    assert lines[-2:] == ("reproduce: pytest claims/ --claims-seed=0", "report: reports/latest/report.json")


def render(r: Report) -> str:
    buffer = io.StringIO()
    render_terminal(r, Console(file=buffer, width=160, color_system=None))
    return buffer.getvalue()


def test_the_rendered_table_has_the_columns_and_numbers():
    text = render(report())
    header = next(line for line in text.splitlines() if "verdict" in line)
    assert header.split() == ["claim", "parameters", "statistic", "value", "CI", "n", "verdict"]
    assert "95% [0.2, 0.8]" in text and "NOT HELD: ci_excludes(0)" in text
    assert "slope near 0 @ encoder.12.resid_post" in text
    assert max(len(line) for line in text.splitlines()) <= 160


def test_rich_markup_in_claim_text_is_shown_literally():
    text = render(report(claims=[claim(text="CI [16.81, 18.59] is [bold]wide[/bold]")]))
    assert "CI [16.81, 18.59] is [bold]wide[/bold]" in text


def test_the_readme_documents_every_field_of_the_json():
    readme = (ROOT / "reports" / "README.md").read_text()
    data = report_to_json(report())
    keys = (set(data) | set(data["run"]) | set(data["run"]["git"]) | set(data["run"]["versions"])
            | set(data["models"][0]) | set(data["datasets"][0]) | set(data["claims"][0])
            | set(data["claims"][0]["evidence"][0]) | set(data["studies"][0]))
    assert sorted(k for k in keys if f"`{k}`" not in readme) == []
    assert f"schema version {SCHEMA_VERSION}" in readme


def test_columns_are_as_wide_as_their_content_when_it_fits():
    rows = table_rows(report(claims=[claim()]))
    widths = column_widths(rows, total=160)
    assert widths["claim"] == len("Class-mean steering moves the score")
    assert widths["statistic"] == len("slope near 0 @ encoder.12.resid_post")


def test_long_columns_share_the_width_and_short_parameters_stay_whole():
    long = claim(text="x" * 200, params={"site": "blocks.4.block_out"},
                 evidence=(evidence(statistic="s" * 120, site=None, expectation="e" * 90),))
    widths = column_widths(table_rows(report(claims=[long])), total=160)
    assert sum(widths.values()) + 3 * 6 <= 160
    assert widths["parameters"] == len("site=blocks.4.block_out")
    assert widths["verdict"] == 32
    assert min(widths["claim"], widths["statistic"]) >= 16


def test_a_schema_1_report_reads_as_families_of_one_uncorrected(tmp_path):
    data = report_to_json(report())
    data["schema_version"] = 1
    for c in data["claims"]:
        for key in ("family", "family_size", "correction", "level"):
            del c[key]
    got = read_report(write_json(tmp_path / "report.json", data))
    assert [(c.family, c.family_size, c.correction, c.level) for c in got.claims] == [
        (c.nodeid.split("[", 1)[0], 1, "none", None) for c in report().claims]


def test_a_corrected_level_prints_with_four_significant_digits():
    assert format_ci(evidence(level=1 - 0.05 / 3, ci_low=0.1, ci_high=0.3)) == "98.33% [0.1, 0.3]"
    assert format_ci(evidence(level=0.95, ci_low=0.1, ci_high=0.3)) == "95% [0.1, 0.3]"
