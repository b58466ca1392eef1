"""Claims under pytest-xdist reach the one report the controller writes, equal to a serial run;
JUnit XML carries each claim's words and evidence as properties."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

STUDY = '''
import numpy as np
import pytest

from harness import stats
from harness.verdicts.evidence import register_dataset, register_model
from harness.verdicts.expect import expect


@pytest.fixture(scope="session", autouse=True)
def registered():
    register_model("toy", spec="fixture:toy", fingerprint="ab" * 32, device="cpu", dtype="float32")
    register_dataset("toy", path="data/toy.jsonl", content_hash="sha256:" + "cd" * 32)


@pytest.mark.claim("The mean effect is positive", source="toy study")
@pytest.mark.parametrize("shift", [0.5, 1.0, 2.0, 3.0])
def test_effect(claim_seed, shift):
    x = np.random.default_rng(claim_seed).normal(shift, 1.0, 200)
    expect(stats.bootstrap_mean(x, seed=claim_seed, n_resamples=999).with_context(statistic="mean effect")).positive()


@pytest.mark.claim("A control stays near zero")
@pytest.mark.parametrize("control", ["a", "b", "c"])
def test_control(claim_seed, control):
    x = np.random.default_rng(claim_seed).normal(0.0, 1.0, 200)
    expect(stats.bootstrap_mean(x, seed=claim_seed, n_resamples=999)).within(-0.1, 0.1)
'''


def _claims(report: dict) -> list[dict]:
    out = []
    for claim in report["claims"]:
        claim = dict(claim)
        claim.pop("duration_s")
        claim.pop("memory")   # measured, as timings are: differs between runs
        out.append(claim)
    return out


def test_an_xdist_run_writes_the_same_claims_and_provenance_as_a_serial_run(pytester):
    pytester.makepyfile(test_study=STUDY)
    serial = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--claims-report=serial", "-q")
    parallel = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--claims-report=parallel", "-q", "-n", "2")
    assert serial.ret == parallel.ret
    a = json.loads((pytester.path / "serial" / "report.json").read_text())
    b = json.loads((pytester.path / "parallel" / "report.json").read_text())
    assert len(a["claims"]) == 7
    assert _claims(a) == _claims(b)  # same order (collection order), values, verdicts
    assert a["models"] == b["models"] and a["datasets"] == b["datasets"]
    assert [m["name"] for m in b["models"]] == ["toy"]
    assert not list(pytester.path.glob("parallel/*.tmp*"))


def test_junit_xml_carries_each_claims_words_verdict_and_evidence(pytester):
    pytester.makepyfile(test_study=STUDY)
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--junitxml=junit.xml", "-q")
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["test_effect[1.0]"].iter("property")}
    assert props["claim"] == "The mean effect is positive"
    assert props["claim_source"] == "toy study"
    assert props["claim_verdict"] == "passed"
    assert props["claim_params"] == '{"shift": 1.0}'
    assert props["claim_evidence_0"].startswith("mean effect = ")
    assert "held: positive()" in props["claim_evidence_0"]
    assert json.loads(props["claims_result_json"])["nodeid"] == "test_study.py::test_effect[1.0]"


@pytest.mark.parametrize("n", ["2"])
def test_a_failing_claim_under_xdist_fails_the_session_and_is_in_the_report(pytester, n):
    pytester.makepyfile(test_study=STUDY)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--claims-report=r", "-q", "-n", n)
    report = json.loads((pytester.path / "r" / "report.json").read_text())
    outcomes = {c["nodeid"].split("::")[1]: c["outcome"] for c in report["claims"]}
    assert result.ret == (1 if "failed" in outcomes.values() else 0)
    assert set(outcomes) == {f"test_effect[{s}]" for s in ("0.5", "1.0", "2.0", "3.0")} | {
        f"test_control[{c}]" for c in "abc"}


STUDY_DECLARATION = '''
from dataclasses import dataclass
from harness.plugin import Study


@dataclass(frozen=True)
class Row:
    shift: float = 1.0


STUDY = Study("toy", model="fixture:toy", thresholds={"fixture:toy": Row()})
'''

SESSION_FIXTURE = '''
import os
import pytest


@pytest.fixture(scope="session")
def model_load():
    """Stands in for a study's model: each process that builds it appends its pid."""
    with open(os.environ["LOADS_FILE"], "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    return 1.0
'''


def test_under_loadgroup_each_study_runs_on_one_worker_with_the_serial_runs_report(pytester, monkeypatch):
    """``-n 2 --dist loadgroup``: the plugin groups a study's tests (``xdist_group(STUDY)``), so
    its session fixtures are built once; node ids, identities, seeds, families and the order of
    the report are a serial run's (xdist's ``@GROUP`` suffix is not)."""
    for name in ("alpha", "beta"):
        folder = pytester.path / name
        folder.mkdir()
        (folder / "study.py").write_text(STUDY_DECLARATION.replace('"toy"', repr(name)))
        (folder / "conftest.py").write_text(SESSION_FIXTURE)
        for part in ("one", "two"):
            (folder / f"test_{name}_{part}.py").write_text(
                STUDY.replace("def test_effect(claim_seed, shift):", "def test_effect(claim_seed, shift, model_load):"))
    runs = {}
    for label, args in (("serial", []), ("grouped", ["-n", "2", "--dist", "loadgroup"])):
        loads = pytester.path / f"{label}.loads"
        monkeypatch.setenv("LOADS_FILE", str(loads))
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly",
                                               f"--claims-report={label}", "-q", *args)
        assert result.ret in (0, 1), result.stdout.str()[-2000:]   # some controls fail: that is the same in both
        runs[label] = (json.loads((pytester.path / label / "report.json").read_text()), loads.read_text().split())
    (serial, serial_loads), (grouped, grouped_loads) = runs["serial"], runs["grouped"]
    assert len(serial["claims"]) == 28 and _claims(serial) == _claims(grouped)
    assert not any("@" in c["nodeid"] for c in grouped["claims"])
    assert len(serial_loads) == 2 and len(grouped_loads) == 2   # one build per study, not one per worker


DYING = '''
import os
import signal

import pytest

from harness import stats
from harness.verdicts.expect import expect


@pytest.mark.claim("The mean effect is positive")
@pytest.mark.parametrize("shift", [0.5, 1.0, 2.0])
def test_effect(claim_seed, shift):
    if shift == 1.0:   # as the kernel's out-of-memory killer ends a worker
        with open("ran_1.0", "a") as fh:
            fh.write("x")
        os.kill(os.getpid(), signal.SIGKILL)
    expect(stats.bootstrap_mean([shift + i / 100 for i in range(50)], seed=claim_seed, n_resamples=99)).positive()
'''


@pytest.mark.parametrize("dist", ["loadgroup", "loadfile", "load"])
def test_a_claim_whose_worker_dies_is_failed_with_the_reason_and_run_once(pytester, dist):
    """A worker killed mid-claim: the claim is in report.json as failed, naming the worker and the
    signal, and a failure in JUnit; xdist's loadgroup/loadfile schedulers would run it again on each replacement
    worker until --max-worker-restart is spent (the plugin's schedulers do not); the other
    claims ran; no half-written report is left."""
    pytester.makepyfile(test_study=DYING)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", "--claims-report=r",
                                           "--junitxml=junit.xml", "-q", "-n", "2", "--dist", dist)
    out = result.stdout.str()
    assert result.ret == 1, out[-3000:]
    assert (pytester.path / "ran_1.0").read_text() == "x", out[-3000:]   # run once, not once per replacement
    claims = {c["nodeid"]: c for c in json.loads((pytester.path / "r" / "report.json").read_text())["claims"]}
    assert [c["outcome"] for c in claims.values()] == ["passed", "failed", "passed"]
    died = claims["test_study.py::test_effect[1.0]"]
    assert died["text"] == "The mean effect is positive" and died["params"] == {"shift": 1.0}
    assert died["message"].startswith("worker gw") and "died while running this claim" in died["message"]
    assert "killed by SIGKILL" in died["message"]
    assert not list((pytester.path / "r").glob("*.tmp*"))
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    [failure] = [e for e in cases["test_effect[1.0]"] if e.tag in ("failure", "error")]   # xdist's own words
    assert "crashed while running" in failure.text, ET.tostring(cases["test_effect[1.0]"])


def test_claims_never_run_for_want_of_a_worker_are_named_in_a_note(pytester):
    pytester.makepyfile(test_study=DYING, test_later=DYING.replace("shift == 1.0", "shift == 9.0"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", "--claims-report=r",
                                           "-q", "-n", "1", "--max-worker-restart", "0",
                                           "test_study.py", "test_later.py")
    assert result.ret == 1
    report = json.loads((pytester.path / "r" / "report.json").read_text())
    assert [(c["nodeid"], c["outcome"]) for c in report["claims"]] == [
        ("test_study.py::test_effect[0.5]", "passed"), ("test_study.py::test_effect[1.0]", "failed")]
    [said] = [n for n in report["run"]["notes"] if "never ran" in n]
    assert said.startswith("4 collected tests never ran: workers died (1)")
    assert "test_study.py::test_effect[2.0], test_later.py::test_effect[0.5]" in said


NOTED = '''
import pytest

from harness import stats
from harness.resources import note
from harness.verdicts.expect import expect


def test_a_plain_test_notes_something():
    note("recorded by a plain test, outside any claim")


@pytest.mark.claim("A claim after it")
def test_claim(claim_seed):
    note("recorded by the claim")
    expect(stats.bootstrap_mean([1.0 + i / 100 for i in range(50)], seed=claim_seed, n_resamples=99)).positive()
'''


@pytest.mark.parametrize("workers", [[], ["-n", "1"]], ids=["serial", "xdist"])
def test_a_note_recorded_outside_any_claim_is_a_run_note_in_a_serial_and_an_xdist_run(pytester, workers):
    pytester.makepyfile(test_noted=NOTED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", "--claims-report=r", "-q",
                                           *workers)
    assert result.ret == 0, result.stdout.str()[-2000:]
    report = json.loads((pytester.path / "r" / "report.json").read_text())
    assert report["run"]["notes"] == ["recorded by a plain test, outside any claim", "recorded by the claim"]
    assert report["claims"][0]["notes"] == ["recorded by the claim"]
