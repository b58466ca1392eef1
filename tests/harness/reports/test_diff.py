"""Tests for `harness.reports.diff`: comparing a baseline report with a new one.

``tests/data/diff_base.json`` and ``diff_new.json`` are five claims of two real runs of the
tacgen study: the trained model (base) and the untrained ``fixture:tacgen-null`` model (new,
999 resamples). They were trimmed from full reports with `read_report`, `dataclasses.replace`
(keeping the claims named in `REAL_CLAIMS`) and `report_to_json`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math

import pytest

from harness.reports import (
    DiffError,
    check_tolerance,
    diff_files,
    diff_reports,
    render_diff,
    write_baseline,
)
from harness.errors import HarnessError
from harness.verdicts.evidence import DatasetRecord, Evidence, ModelRecord
from harness.reports import (
    ClaimResult,
    GitInfo,
    Report,
    ReportError,
    build_report,
    read_report,
    report_to_json,
)
from tests._support.paths import TESTS

DATA = TESTS / "data"
STARTED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
STEER = "claims/test_steer.py::test_moves[layer12]"
CONTROL = "claims/test_steer.py::test_control"


def evidence(**changes) -> Evidence:
    fields = dict(statistic="slope", value=0.5, ci_low=0.4, ci_high=0.6, level=0.95, n=500,
                  method="bootstrap BCa", unit="examples", site="encoder.12.resid_post", seed=7,
                  fingerprint="3f2a9c0d1e2b", expectation="ci_excludes(0)", held=True,
                  status="ok", reason="")
    fields.update(changes)
    return Evidence(**fields)


def claim(nodeid: str = STEER, **changes) -> ClaimResult:
    fields = dict(nodeid=nodeid, text="Steering moves the score", source=None, params={},
                  outcome="passed", message="", duration_s=0.25, seed=99,
                  evidence=(evidence(), evidence(expectation="positive()")))
    fields.update(changes)
    return ClaimResult(**fields)


def report(claims=None, **changes) -> Report:
    fields = dict(
        seed=0, resamples=9999, command="pytest claims/ --claims-seed=0", started=STARTED,
        duration_s=12.5,
        claims=claims if claims is not None else [
            claim(),
            claim(CONTROL, evidence=(evidence(statistic="control slope", value=0.0, ci_low=-0.1,
                                              ci_high=0.1, expectation="within(-0.2, 0.2)"),)),
        ],
        models=[ModelRecord("tacgen", "fixture:tacgen", "4cc1e7ef5881" + "0" * 52, "cpu", "float32")],
        datasets=[DatasetRecord("bench", "data/bench.json", "sha256:9b1c00112233445566778899")],
        versions={"python": "3.11.7", "torch": "2.3.0", "transformers": None, "harness": "0.1.0"},
        git=GitInfo(commit="a" * 40, dirty=False),
    )
    fields.update(changes)
    return build_report(**fields)


def with_claim(rep: Report, nodeid: str, **changes) -> Report:
    claims = tuple(dataclasses.replace(c, **changes) if c.nodeid == nodeid else c for c in rep.claims)
    return dataclasses.replace(rep, claims=claims)


def steer_value(value: float, **more) -> tuple[Evidence, ...]:
    return (evidence(value=value, ci_low=value - 0.1, ci_high=value + 0.1, **more),
            evidence(value=value, ci_low=value - 0.1, ci_high=value + 0.1, expectation="positive()", **more))


# --- verdicts -------------------------------------------------------------------------------------


def test_identical_reports_do_not_regress():
    diff = diff_reports(report(), report())
    assert not diff.regressed and diff.exit_status == 0
    assert [c.change for c in diff.claims] == ["unchanged", "unchanged"]
    assert diff.added == diff.removed == diff.provenance == ()
    assert all(e.shift == 0 and e.overlap and not e.moved for c in diff.claims for e in c.evidence)
    text = render_diff(diff)
    assert text.splitlines()[0].startswith("claims diff: 2 matched, 0 regressed, 0 fixed, 0 moved")
    assert text.splitlines()[0].endswith(": ok")
    assert "regressed (" not in text and "provenance" not in text


def test_a_claim_that_held_and_now_fails_regresses_and_is_listed_first():
    base = report()
    new = with_claim(base, CONTROL, outcome="failed", message="expected within(-0.2, 0.2); measured 0.05",
                     evidence=(evidence(statistic="control slope", value=0.05, ci_low=-0.05, ci_high=0.15,
                                        expectation="within(-0.2, 0.2)", held=False),))
    new = dataclasses.replace(new, claims=new.claims + (claim("claims/test_new.py::test_added"),))
    diff = diff_reports(base, new)
    assert diff.regressed and diff.exit_status == 1
    (reg,) = diff.regressions
    assert (reg.nodeid, reg.base_outcome, reg.new_outcome, reg.change) == (CONTROL, "passed", "failed", "regressed")
    (ev,) = reg.evidence
    assert ev.verdict_changed and ev.match == "statistic+expectation"
    assert ev.shift == pytest.approx(0.5) and ev.overlap is True and not ev.moved
    lines = render_diff(diff, width=300).splitlines()
    assert lines[0].startswith("claims diff: 2 matched, 1 regressed") and lines[0].endswith("REGRESSED")
    body = [line for line in lines[1:] if line.strip()]
    assert body[0] == "regressed (held -> failed):"
    assert body[1].strip() == f"{CONTROL}: passed -> failed"
    assert "0 95% [-0.1, 0.1] -> 0.05 95% [-0.05, 0.15]" in body[2]
    assert "shift +0.50 half-widths, CIs overlap" in body[2]
    assert "within(-0.2, 0.2) held -> NOT HELD" in "\n".join(lines)
    assert "message: expected within(-0.2, 0.2); measured 0.05" in "\n".join(lines)
    # sections come in order: regressions before added claims
    assert lines.index("regressed (held -> failed):") < lines.index("added (1):")


def test_an_error_after_passing_is_a_regression_too():
    base = report()
    diff = diff_reports(base, with_claim(base, STEER, outcome="error", evidence=(),
                                         message="error in setup: ModelLoadError: gone"))
    assert [c.nodeid for c in diff.regressions] == [STEER]
    assert diff.exit_status == 1
    # the evidence the new run never recorded is listed as only in the baseline, not moved
    assert {e.match for e in diff.regressions[0].evidence} == {"unmatched"}
    assert not any(e.moved for e in diff.regressions[0].evidence)
    assert "-> not measured" in render_diff(diff)


def test_a_claim_that_failed_and_now_holds_is_fixed_and_does_not_fail():
    new = report()
    base = with_claim(new, STEER, outcome="failed", message="no",
                      evidence=(evidence(held=False), evidence(expectation="positive()", held=False)))
    diff = diff_reports(base, new)
    assert [c.nodeid for c in diff.fixed] == [STEER] and diff.fixed[0].change == "fixed"
    assert not diff.regressed and diff.exit_status == 0
    text = render_diff(diff)
    assert "fixed (failed -> passed):" in text and "ci_excludes(0) NOT HELD -> held" in text


def test_other_outcome_changes_are_listed_but_do_not_fail():
    base = report()
    diff = diff_reports(base, with_claim(base, STEER, outcome="skipped", message="no GPU", evidence=()))
    assert [c.change for c in diff.claims] == ["changed", "unchanged"]
    assert diff.exit_status == 0
    assert f"other outcome changes:\n  {STEER}: passed -> skipped" in render_diff(diff)


# --- effect movement ------------------------------------------------------------------------------


def test_a_value_moving_five_half_widths_moves_beyond_tolerance_three_but_not_ten():
    base = report()
    new = with_claim(base, STEER, evidence=steer_value(1.0))  # half-width 0.1, shift 0.5 / 0.1 = 5
    diff = diff_reports(base, new, tolerance=3)
    assert diff.regressions == ()
    assert diff.regressed and diff.exit_status == 1
    (c,) = [c for c in diff.claims if c.nodeid == STEER]
    assert [e.shift for e in c.evidence] == pytest.approx([5.0, 5.0])
    assert all(e.moved and e.overlap is False for e in c.evidence)
    # the same estimate judged twice counts as one moved effect
    assert len(diff.moved) == 1
    text = render_diff(diff, width=300)
    assert "0 regressed, 0 fixed, 1 moved (tolerance 3 CI half-widths)" in text
    assert "moved effects (|shift| > 3 half-widths of the baseline CI):" in text
    assert "0.5 95% [0.4, 0.6] -> 1 95% [0.9, 1.1]  shift +5.00 half-widths, CIs disjoint [MOVED]" in text
    assert "(ci_excludes(0) held; positive() held)" in text

    loose = diff_reports(base, new, tolerance=10)
    assert not loose.regressed and loose.exit_status == 0 and loose.moved == ()
    assert "moved effects" not in render_diff(loose)


def test_overlapping_and_disjoint_cis():
    base = report()
    near = diff_reports(base, with_claim(base, STEER, evidence=steer_value(0.65)))
    far = diff_reports(base, with_claim(base, STEER, evidence=steer_value(0.75)))
    touching = diff_reports(base, with_claim(base, STEER, evidence=steer_value(0.7)))
    assert near.claims[0].evidence[0].overlap is True
    assert near.claims[0].evidence[0].shift == pytest.approx(1.5) and not near.regressed
    assert far.claims[0].evidence[0].overlap is False
    assert far.claims[0].evidence[0].shift == pytest.approx(2.5) and not far.regressed
    assert touching.claims[0].evidence[0].overlap is True  # [0.4, 0.6] and [0.6, 0.8] share 0.6
    strict = diff_reports(base, with_claim(base, STEER, evidence=steer_value(0.75)), tolerance=2)
    assert strict.exit_status == 1
    assert "shift +2.50 half-widths, CIs disjoint [MOVED]" in render_diff(strict, width=300)
    assert "shift +1.50 half-widths, CIs overlap [MOVED]" in render_diff(
        diff_reports(base, with_claim(base, STEER, evidence=steer_value(0.65)), tolerance=1), width=300)


def test_a_zero_width_baseline_ci_is_compared_with_an_absolute_tolerance():
    base = report(claims=[claim(evidence=(evidence(value=0.5, ci_low=0.5, ci_high=0.5),))])
    same = diff_reports(base, base).claims[0].evidence[0]
    assert same.delta == 0 and same.atol == pytest.approx(1e-6) and not same.moved and same.compared
    changed = diff_reports(base, report(claims=[claim(evidence=(evidence(value=0.51, ci_low=0.5, ci_high=0.52),))]))
    e = changed.claims[0].evidence[0]
    assert math.isnan(e.shift) and e.delta == pytest.approx(0.01) and e.moved and "zero width" in e.shift_note
    assert changed.exit_status == 1
    assert ("change +0.01 (the baseline CI has zero width; absolute tolerance 1e-06), CIs overlap [MOVED]"
            in render_diff(changed, width=300))
    rounding = diff_reports(base, report(claims=[claim(evidence=(evidence(value=0.5000001, ci_low=0.4, ci_high=0.6),))]))
    assert not rounding.claims[0].evidence[0].moved and not rounding.regressed


def test_a_near_zero_width_baseline_ci_never_moves_by_millions_of_half_widths():
    # a bootstrap of near-constant data: 3.92 with a CI 2e-09 wide (float noise); the new run
    # measures 3.905. In half-widths of the baseline that was a shift of -14821789.65.
    base = report(claims=[claim(evidence=(evidence(value=3.92, ci_low=3.92 - 1e-9, ci_high=3.92 + 1e-9,
                                                   expectation="within(3, 5)"),))])
    new = report(claims=[claim(evidence=(evidence(value=3.905, ci_low=3.90, ci_high=3.91,
                                                  expectation="within(3, 5)"),))])
    diff = diff_reports(base, new)
    e = diff.claims[0].evidence[0]
    assert math.isnan(e.shift) and e.atol == pytest.approx(3.92e-6) and e.delta == pytest.approx(-0.015)
    assert e.moved and diff.exit_status == 1
    text = render_diff(diff, width=300)
    assert "half-widths, CIs" not in text
    assert "change -0.015 (the baseline CI has zero width; absolute tolerance 3.92e-06), CIs disjoint [MOVED]" in text
    jitter = report(claims=[claim(evidence=(evidence(value=3.920001, ci_low=3.91, ci_high=3.93,
                                                     expectation="within(3, 5)"),))])
    assert not diff_reports(base, jitter).regressed   # 1e-06 is within 3.92e-06


def exact(value: float = 1.0, **changes) -> Evidence:
    fields = dict(statistic="recovery", value=value, ci_low=value, ci_high=value, level=1.0, n=60,
                  method="exact", unit="values", site=None, seed=None, fingerprint=None,
                  expectation="equals(1, tol=1e-06)", held=abs(value - 1.0) <= 1e-6, kind="exact",
                  expected=1.0, tolerance=1e-6, deviation=abs(value - 1.0))
    fields.update(changes)
    return Evidence(**fields)


def test_exact_evidence_is_compared_with_its_own_tolerance():
    base = report(claims=[claim(evidence=(exact(1.0),))])
    same = diff_reports(base, report(claims=[claim(evidence=(exact(1.0 + 5e-7),))]))
    assert not same.regressed and same.claims[0].evidence[0].atol == 1e-6
    looser = exact(1.0004, tolerance=1e-3, held=True, expectation="equals(1, tol=0.001)")
    moved = diff_reports(base, report(claims=[claim(evidence=(looser,))]))
    e = moved.claims[0].evidence[0]
    assert e.moved and e.delta == pytest.approx(4e-4) and moved.exit_status == 1   # beyond the baseline's 1e-06
    assert "change +0.0004 (an exact comparison; absolute tolerance 1e-06)" in render_diff(moved, width=300)


def test_an_exact_comparison_that_held_and_now_does_not_is_a_regression():
    base = report(claims=[claim(evidence=(exact(1.0),))])
    new = report(claims=[claim(outcome="failed", message="expected `recovery` (60 values) to equal 1 within 1e-06",
                               evidence=(exact(0.93),))])
    diff = diff_reports(base, new)
    assert diff.regressed and diff.claims[0].change == "regressed" and diff.claims[0].evidence[0].moved
    text = render_diff(diff, width=300)
    assert ("recovery: 1 exact (max |dev| 0, tol 1e-06) -> 0.93 exact (max |dev| 0.07, tol 1e-06)  "
            "change -0.07 (an exact comparison; absolute tolerance 1e-06) [MOVED]  "
            "(equals(1, tol=1e-06) held -> NOT HELD)") in text
    # held -> not held alone moves it, even inside the tolerance (a claim kept passing by pytest.raises, say)
    flipped = diff_reports(base, report(claims=[claim(evidence=(exact(1.0, held=False),))]))
    assert flipped.claims[0].evidence[0].moved and flipped.regressed


def test_missing_values_give_a_nan_shift_that_never_moves():
    base = report(claims=[claim(evidence=(evidence(value=None, ci_low=None, ci_high=None,
                                                   status="degenerate", reason="constant", held=False),))])
    new = report(claims=[claim(evidence=(evidence(value=0.9, ci_low=0.8, ci_high=1.0),))])
    e = diff_reports(base, new).claims[0].evidence[0]
    assert math.isnan(e.shift) and e.shift_note == "no value in the baseline" and e.overlap is None
    assert not e.moved
    no_ci = report(claims=[claim(evidence=(evidence(value=0.5, ci_low=None, ci_high=None),))])
    e = diff_reports(no_ci, new).claims[0].evidence[0]
    assert math.isnan(e.shift) and e.shift_note == "the baseline has no CI" and not e.moved
    text = render_diff(diff_reports(no_ci, new), width=300)
    assert "effects that could not be compared (no value or no baseline CI):" in text
    assert "0.5 95% [-, -] -> 0.9 95% [0.8, 1]  shift n/a (the baseline has no CI)" in text


def test_evidence_is_matched_by_statistic_and_expectation_then_statistic_then_position():
    base_ev = (evidence(statistic="a", expectation="positive()"),
               evidence(statistic="b", expectation="exceeds(0.1 [0.05, 0.15])"),
               evidence(statistic="c", expectation="x()"),
               evidence(statistic="d", expectation="y()"))
    # reordered, b's expectation text changed, c renamed, d dropped, e new
    new_ev = (evidence(statistic="b", expectation="exceeds(0.2 [0.1, 0.3])"),
              evidence(statistic="a", expectation="positive()"),
              evidence(statistic="c2", expectation="x()"))
    diff = diff_reports(report(claims=[claim(evidence=base_ev)]), report(claims=[claim(evidence=new_ev)]))
    pairs = [(e.index_base, e.index_new, e.match) for e in diff.claims[0].evidence]
    assert pairs == [(0, 1, "statistic+expectation"), (1, 0, "statistic"), (2, 2, "position"),
                     (3, None, "unmatched")]
    assert not diff.regressed


# --- added, removed, provenance -----------------------------------------------------------------


def test_added_and_removed_claims_are_listed_and_do_not_fail():
    base = report()
    new = dataclasses.replace(base, claims=(base.claims[0], claim("claims/test_more.py::test_new")))
    diff = diff_reports(base, new)
    assert diff.added == ("claims/test_more.py::test_new",) and diff.removed == (CONTROL,)
    assert diff.exit_status == 0
    text = render_diff(diff)
    assert "1 matched, 0 regressed, 0 fixed, 0 moved" in text and "1 added, 1 removed: ok" in text
    assert "added (1):\n  claims/test_more.py::test_new" in text
    assert f"removed (1):\n  {CONTROL}" in text


def test_provenance_changes_are_listed_and_do_not_fail():
    base = report()
    new = report(
        seed=1, resamples=999,
        models=[ModelRecord("tacgen", "fixture:tacgen", "9a0b1c2d3e4f" + "1" * 52, "cpu", "float32"),
                ModelRecord("extra", "gpt2", "ff" * 32, "cuda:0", "float16")],
        datasets=[DatasetRecord("bench", "data/bench.json", "sha256:0011aabbccddeeff")],
        versions={"python": "3.11.7", "torch": "2.4.0", "transformers": "4.1", "harness": "0.1.0"},
        git=GitInfo(commit="b" * 40, dirty=True),
    )
    diff = diff_reports(base, new)
    assert diff.exit_status == 0
    got = {(p.kind, p.name, p.field): (p.base, p.new) for p in diff.provenance}
    assert got[("model", "tacgen", "fingerprint")] == (base.models[0].fingerprint, new.models[0].fingerprint)
    assert got[("model", "extra", "added")][0] is None
    assert got[("dataset", "bench", "content_hash")] == ("sha256:9b1c00112233445566778899", "sha256:0011aabbccddeeff")
    assert got[("version", "torch", "version")] == ("2.3.0", "2.4.0")
    assert got[("version", "transformers", "version")] == (None, "4.1")
    assert got[("run", "run", "seed")] == ("0", "1")
    assert got[("run", "run", "resamples")] == ("9999", "999")
    assert got[("run", "run", "git commit")] == ("a" * 40, "b" * 40)
    assert got[("run", "run", "git dirty")] == ("false", "true")
    text = render_diff(diff)
    provenance = text[text.index("provenance:"):]
    assert "model tacgen: fingerprint 4cc1e7ef5881 -> 9a0b1c2d3e4f\n" in provenance
    assert "model extra: added (spec gpt2, fingerprint ffffffffffff, device cuda:0, dtype float16)" in provenance
    assert "dataset bench: content_hash sha256:9b1c00112233 -> sha256:0011aabbccdd" in provenance
    assert "version torch: 2.3.0 -> 2.4.0" in provenance
    assert "version transformers: (none) -> 4.1" in provenance
    assert "run: git commit aaaaaaaaaaaa -> bbbbbbbbbbbb" in provenance
    removed = diff_reports(new, base)
    assert ("model", "extra", "removed") in {(p.kind, p.name, p.field) for p in removed.provenance}
    assert "model extra: removed (was spec gpt2," in render_diff(removed)


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, "three", None, True])
def test_tolerance_must_be_a_positive_number(bad):
    with pytest.raises(DiffError, match="--tolerance") as info:
        diff_reports(report(), report(), tolerance=bad)
    assert isinstance(info.value, HarnessError) and isinstance(info.value, ValueError)
    with pytest.raises(DiffError, match="--tolerance"):
        diff_files(DATA / "diff_base.json", DATA / "diff_new.json", tolerance=bad)


def test_check_tolerance_accepts_positive_numbers():
    assert check_tolerance(3) == 3.0 and check_tolerance("0.5") == 0.5


def test_reports_of_an_unknown_schema_version_are_refused(tmp_path):
    data = report_to_json(report())
    data["schema_version"] = 4
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ReportError, match="schema_version 4"):
        diff_files(path, DATA / "diff_new.json")
    with pytest.raises(DiffError, match="schema_version 4"):
        diff_reports(dataclasses.replace(report(), schema_version=4), report())


def test_a_report_listing_a_claim_twice_is_refused():
    rep = report()
    twice = dataclasses.replace(rep, claims=rep.claims + rep.claims[:1])
    with pytest.raises(DiffError, match="twice"):
        diff_reports(twice, rep)


def test_render_respects_the_width_where_words_allow():
    base = report()
    diff = diff_reports(base, with_claim(base, STEER, outcome="failed", message="word " * 80,
                                         evidence=steer_value(2.0, held=False)))
    for width in (60, 100):
        lines = render_diff(diff, width=width).splitlines()
        assert all(len(line) <= width for line in lines if "::" not in line)
    with pytest.raises(DiffError, match="width"):
        render_diff(diff, width=10)


# --- a real study: the trained tacgen model against the untrained null model -----------------


REAL_CLAIMS = {
    "claims/tacgen/test_baseline.py::test_baseline_score_classifies_test500": "regressed",
    "claims/tacgen/test_baseline.py::test_class_mean_direction_separates_held_out_states[layer11]": "unchanged",
    "claims/tacgen/test_rmsnorm.py::test_rmsnorm_suppresses_edits_inside_the_encoder": "regressed",
    "claims/tacgen/test_rmsnorm.py::test_rms_scaled_injection_inside_the_encoder_moves_the_score[goal]": "regressed",
    "claims/tacgen/test_steering.py::test_control_directions_stay_near_zero[layer12-within-intro]": "unchanged",
}


def test_the_null_model_regresses_against_the_trained_one():
    diff = diff_files(DATA / "diff_base.json", DATA / "diff_new.json")
    assert {c.nodeid: c.change for c in diff.claims} == REAL_CLAIMS
    assert diff.exit_status == 1 and diff.added == diff.removed == ()
    by_id = {c.nodeid: c for c in diff.claims}
    accuracy = by_id["claims/tacgen/test_baseline.py::test_baseline_score_classifies_test500"].evidence[0]
    assert accuracy.shift == pytest.approx(-8.56, abs=0.01) and accuracy.overlap is False and accuracy.moved
    # [goal] failed on the null model although its slope barely moved (a control grew instead)
    goal = by_id["claims/tacgen/test_rmsnorm.py::test_rms_scaled_injection_inside_the_encoder_moves_the_score[goal]"]
    assert abs(goal.evidence[0].shift) < 1 and goal.evidence[0].overlap
    # the failed claim stopped early: its last evidence entries are only in the baseline
    norm = by_id["claims/tacgen/test_rmsnorm.py::test_rmsnorm_suppresses_edits_inside_the_encoder"]
    assert [e.match for e in norm.evidence][-2:] == ["unmatched", "unmatched"]
    # a control that still holds but moved far beyond the tolerance
    control = by_id["claims/tacgen/test_steering.py::test_control_directions_stay_near_zero[layer12-within-intro]"]
    assert control.evidence[0].shift == pytest.approx(-4.88, abs=0.01) and control.moved
    assert not diff_files(DATA / "diff_base.json", DATA / "diff_new.json", tolerance=5).claims[4].moved

    fields = {(p.kind, p.field) for p in diff.provenance}
    assert ("model", "fingerprint") in fields and ("model", "spec") in fields
    assert ("dataset", "content_hash") not in fields  # same data set
    text = render_diff(diff)
    lines = text.splitlines()
    assert lines[0] == ("claims diff: 5 matched, 3 regressed, 0 fixed, 3 moved (tolerance 3 CI half-widths), "
                        "0 added, 0 removed: REGRESSED")
    assert "  model tacgen: fingerprint 1f32328c8198 -> 776e6745aabf" in lines
    assert "  model tacgen: spec fixture:tacgen -> fixture:tacgen-null" in lines
    assert "  run: resamples 9999 -> 999" in lines
    assert text.index("regressed (held -> failed):") < text.index("moved effects") < text.index("provenance:")


def test_a_report_compared_with_itself_is_clean():
    diff = diff_files(DATA / "diff_new.json", DATA / "diff_new.json")
    assert not diff.regressed and diff.provenance == () and diff.exit_status == 0


def test_write_baseline_round_trips_under_any_name(tmp_path):
    rep = report()
    path = write_baseline(rep, tmp_path / "baselines" / "tacgen.json")
    assert path == tmp_path / "baselines" / "tacgen.json"
    assert read_report(path) == rep
    assert [p.name for p in path.parent.iterdir()] == ["tacgen.json"]  # no temporary left behind
    assert diff_files(path, path).exit_status == 0
