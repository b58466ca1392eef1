"""Tests for `harness.verdicts.evidence`: evidence records, the recorder, and the session registry."""

from __future__ import annotations

import contextvars
import json
import math
import re
import subprocess
import sys

import pytest

from harness.errors import HarnessError
from harness.stats.estimate import Estimate
from harness.verdicts.evidence import (
    DatasetRecord,
    Evidence,
    ModelRecord,
    RegistryError,
    close_registry,
    current_records,
    open_registry,
    record,
    recording,
    register_dataset,
    register_model,
    registered_datasets,
    registered_models,
)


def estimate(**changes) -> Estimate:
    fields = dict(value=0.012, ci_low=-0.031, ci_high=0.055, level=0.95, n=500,
                  method="bootstrap BCa", seed=1234, statistic="slope near 0",
                  site="encoder.12.resid_post", fingerprint="3f2a9c0d1e2b4a5f")
    fields.update(changes)
    return Estimate(**fields)


def evidence(**changes) -> Evidence:
    return Evidence.from_estimate(estimate(**changes), expectation="ci_excludes(0)", held=False)


@pytest.fixture
def registry():
    """A fresh registry for the test, closed afterwards, so tests do not see each other's."""
    reg = open_registry()
    yield reg
    close_registry(reg)


# --- Evidence ---------------------------------------------------------------------------------


def test_evidence_from_an_estimate_copies_its_numbers_and_provenance():
    ev = Evidence.from_estimate(estimate(), expectation="ci_excludes(0)", held=False)
    assert ev == Evidence(
        statistic="slope near 0", value=0.012, ci_low=-0.031, ci_high=0.055, level=0.95, n=500,
        method="bootstrap BCa", unit="examples", site="encoder.12.resid_post", seed=1234,
        fingerprint="3f2a9c0d1e2b4a5f", expectation="ci_excludes(0)", held=False,
        status="ok", reason="",
    )


def test_evidence_from_a_degenerate_estimate_keeps_the_status_and_reason():
    ev = evidence(status="degenerate", reason="constant data")
    assert (ev.status, ev.reason) == ("degenerate", "constant data")


def test_evidence_is_frozen():
    with pytest.raises(AttributeError):
        evidence().held = True  # type: ignore[misc]


def test_evidence_to_dict_writes_non_finite_numbers_as_none():
    ev = evidence(value=math.nan, ci_low=-math.inf, ci_high=math.inf)
    d = ev.to_dict()
    assert (d["value"], d["ci_low"], d["ci_high"]) == (None, None, None)


def test_evidence_to_dict_and_from_dict_round_trip():
    ev = evidence()
    assert Evidence.from_dict(ev.to_dict()) == ev


def test_evidence_needs_an_expectation_string():
    with pytest.raises(TypeError, match=r"`expectation` must be a non-empty string such as 'ci_excludes\(0\)', got ''"):
        Evidence.from_estimate(estimate(), expectation="", held=True)


def test_evidence_needs_a_boolean_verdict():
    with pytest.raises(TypeError, match=r"`held` must be True or False, got 1"):
        Evidence.from_estimate(estimate(), expectation="positive()", held=1)  # type: ignore[arg-type]


# --- the recorder -----------------------------------------------------------------------------


def outside_any_recorder(fn):
    """Run `fn` in a fresh context, as a notebook would (the plugin records around each test)."""
    return contextvars.Context().run(fn)


def test_record_outside_a_recorder_does_nothing_and_does_not_fail():
    def notebook_cell():
        record(evidence())
        return current_records()

    assert outside_any_recorder(notebook_cell) is None


def test_the_plugin_records_around_every_test_call():
    assert current_records() == ()


def test_recording_collects_every_record_made_inside_the_block():
    with recording() as records:
        record(evidence(value=1.0))
        record(evidence(value=2.0))
    assert [ev.value for ev in records] == [1.0, 2.0]


def test_recorders_nest_and_the_outer_one_resumes_after_the_inner_block():
    with recording() as outer:
        record(evidence(value=1.0))
        with recording() as inner:
            record(evidence(value=2.0))
        record(evidence(value=3.0))
    assert [ev.value for ev in outer] == [1.0, 3.0]
    assert [ev.value for ev in inner] == [2.0]


def test_the_recorder_is_closed_even_when_the_block_raises():
    def cell():
        with pytest.raises(RuntimeError):
            with recording():
                raise RuntimeError("boom")
        return current_records()

    assert outside_any_recorder(cell) is None


def test_record_takes_only_evidence():
    with pytest.raises(TypeError, match=r"record\(\) takes an Evidence, got Estimate .*Evidence.from_estimate"):
        record(estimate())  # type: ignore[arg-type]


# --- the registry -----------------------------------------------------------------------------


def register_tacgen(**changes) -> ModelRecord:
    fields = dict(spec="fixture:tacgen", fingerprint="3f2a9c0d1e2b", device="cpu", dtype="float32")
    fields.update(changes)
    return register_model("tacgen", **fields)


def test_a_registered_model_is_listed(registry):
    register_tacgen()
    assert registered_models() == (ModelRecord("tacgen", "fixture:tacgen", "3f2a9c0d1e2b", "cpu", "float32"),)


def test_registering_the_same_model_twice_is_a_no_op(registry):
    register_tacgen()
    register_tacgen()
    assert len(registered_models()) == 1


def test_registering_a_name_again_with_other_details_raises(registry):
    register_tacgen()
    with pytest.raises(
        RegistryError,
        match=r"model 'tacgen' is already registered in this session with different details "
        r"\(fingerprint='3f2a9c0d1e2b' -> 'ffff'\); register each name once per session.*"
        r"--claims-model tacgen=",
    ):
        register_tacgen(fingerprint="ffff")


def test_a_registry_error_is_a_harness_error():
    assert issubclass(RegistryError, HarnessError)


def test_registered_data_sets_are_listed_and_conflicts_raise(registry):
    register_dataset("mbpp", path="data/mbpp.jsonl", content_hash="sha256:9b1c")
    register_dataset("mbpp", path="data/mbpp.jsonl", content_hash="sha256:9b1c")
    assert registered_datasets() == (DatasetRecord("mbpp", "data/mbpp.jsonl", "sha256:9b1c"),)
    with pytest.raises(RegistryError, match=r"data set 'mbpp' is already registered .*content_hash="):
        register_dataset("mbpp", path="data/mbpp.jsonl", content_hash="sha256:0000")


def test_models_keep_their_registration_order(registry):
    register_model("b", spec="fixture:b", fingerprint="2", device="cpu", dtype="float32")
    register_model("a", spec="fixture:a", fingerprint="1", device="cpu", dtype="float32")
    assert [m.name for m in registered_models()] == ["b", "a"]


def test_a_closed_registry_leaves_the_one_before_it_current(registry):
    register_tacgen()
    inner = open_registry()
    assert registered_models() == ()
    close_registry(inner)
    assert [m.name for m in registered_models()] == ["tacgen"]


def test_register_model_names_a_missing_field():
    with pytest.raises(TypeError, match=r"`fingerprint` must be a non-empty string such as '3f2a9c0d1e', got ''"):
        register_model("tacgen", spec="fixture:tacgen", fingerprint="", device="cpu", dtype="float32")


def test_register_dataset_names_a_missing_field():
    with pytest.raises(TypeError, match=r"`content_hash` must be a non-empty string such as 'sha256:9b1c...', got None"):
        register_dataset("mbpp", path="x", content_hash=None)  # type: ignore[arg-type]


def test_device_and_dtype_objects_are_recorded_as_their_names(registry):
    class Dtype:
        def __str__(self) -> str:
            return "torch.bfloat16"

    rec = register_model("m", spec="fixture:m", fingerprint="1", device="cuda:0", dtype=Dtype())  # type: ignore[arg-type]
    assert rec.dtype == "torch.bfloat16"


def test_importing_evidence_loads_neither_numpy_nor_torch():
    code = "import sys, harness.verdicts.evidence; print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- evidence kinds: estimates and exact comparisons ---------------------------------------------

from harness.verdicts.evidence import EVIDENCE_KINDS, ZERO_WIDTH_RTOL, zero_width  # noqa: E402


def exact_evidence(**changes) -> Evidence:
    fields = dict(statistic="recovery", value=1.0, ci_low=1.0, ci_high=1.0, level=1.0, n=60, method="exact",
                  unit="values", site=None, seed=None, fingerprint=None, expectation="equals(1, tol=1e-06)",
                  held=True, kind="exact", expected=1.0, tolerance=1e-6, deviation=0.0)
    fields.update(changes)
    return Evidence(**fields)


@pytest.mark.parametrize(
    ("low", "high", "zero"),
    [(0.0, 0.0, True), (3.92, 3.92, True), (3.919999917, 3.920000378, True), (-5.0, -5.0 + 4e-6, True),
     (0.0, 1e-9, False), (3.9, 3.94, False), (None, 1.0, False), (math.nan, math.nan, False),
     (math.inf, math.inf, False)],
)
def test_zero_width_is_narrower_than_a_millionth_of_the_magnitude(low, high, zero):
    assert ZERO_WIDTH_RTOL == 1e-6
    assert zero_width(low, high) is zero


def test_the_evidence_of_an_estimate_is_kind_estimate_and_writes_no_exact_fields():
    ev = evidence()
    assert (ev.kind, ev.exact, ev.expected, ev.tolerance, ev.deviation) == ("estimate", False, None, None, None)
    assert not {"kind", "expected", "tolerance", "deviation"} & set(ev.to_dict())
    assert Evidence.from_dict(ev.to_dict()) == ev


def test_the_evidence_of_an_exact_comparison_round_trips_with_its_fields():
    ev = exact_evidence()
    assert ev.exact and EVIDENCE_KINDS == ("estimate", "exact")
    d = ev.to_dict()
    assert list(d)[-4:] == ["kind", "expected", "tolerance", "deviation"]
    assert (d["kind"], d["expected"], d["tolerance"], d["deviation"]) == ("exact", 1.0, 1e-6, 0.0)
    assert Evidence.from_dict(d) == ev
    assert exact_evidence(deviation=math.inf).to_dict()["deviation"] is None


def test_a_report_reads_exact_evidence_and_plain_checks_back(tmp_path):
    from harness.reports import ClaimResult, ReportError, build_report, read_report, write_report

    claims = [ClaimResult(nodeid="t.py::test_exact", text="exact", source=None, params={}, outcome="passed",
                          message="", duration_s=0.1, seed=1, evidence=(exact_evidence(), evidence())),
              ClaimResult(nodeid="t.py::test_check", text="check", source=None, params={}, outcome="passed",
                          message="", duration_s=0.1, seed=2, check=True)]
    report = build_report(seed=0, resamples=9, command="pytest", started="2026-01-02T03:04:05+00:00",
                          duration_s=1.0, claims=claims)
    path = write_report(report, tmp_path)
    assert read_report(path) == report
    data = json.loads(path.read_text())
    assert "check" not in data["claims"][0] and data["claims"][1]["check"] is True
    data["claims"][0]["evidence"][0]["kind"] = "guess"
    path.write_text(json.dumps(data))
    with pytest.raises(ReportError, match=re.escape(
            "has `claims[0].evidence[0].kind` = 'guess', expected one of ('estimate', 'exact')")):
        read_report(path)
