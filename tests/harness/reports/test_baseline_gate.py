"""The CI gate: --claims-update-baseline writes a baseline, --claims-baseline compares a run with
it and fails the session on a regression; `claims diff` says the same from two files."""

from __future__ import annotations

import json

import pytest

from harness.cli import main

STUDY = '''
import os

import numpy as np
import pytest

from harness import stats
from harness.verdicts.evidence import register_model
from harness.verdicts.expect import expect

SHIFT = float(os.environ.get("TOY_SHIFT", "1.0"))


@pytest.fixture(scope="session", autouse=True)
def model():
    register_model("toy", spec="fixture:toy", fingerprint=os.environ.get("TOY_FP", "ab" * 32),
                   device="cpu", dtype="float32")


@pytest.mark.claim("The effect is positive")
def test_effect(claim_seed):
    x = np.random.default_rng(claim_seed).normal(SHIFT, 1.0, 400)
    expect(stats.bootstrap_mean(x, seed=claim_seed, n_resamples=999).with_context(statistic="effect")).positive()
'''


def run(pytester, monkeypatch, *args, shift="1.0", fp="ab" * 32):
    monkeypatch.setenv("TOY_SHIFT", shift)
    monkeypatch.setenv("TOY_FP", fp)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", *args)


def test_the_same_run_against_its_own_baseline_passes(pytester, monkeypatch):
    pytester.makepyfile(test_study=STUDY)
    first = run(pytester, monkeypatch, "--claims-update-baseline", "--claims-baseline", "base.json")
    assert first.ret == 0
    first.stdout.fnmatch_lines(["*baseline written: *base.json*"])
    again = run(pytester, monkeypatch, "--claims-baseline", "base.json")
    assert again.ret == 0
    again.stdout.fnmatch_lines(["*claims vs baseline*", "claims diff: 1 matched, 0 regressed, 0 fixed, 0 moved*ok"])


def test_a_changed_model_that_breaks_a_claim_fails_the_session_with_a_readable_diff(pytester, monkeypatch):
    pytester.makepyfile(test_study=STUDY)
    run(pytester, monkeypatch, "--claims-update-baseline", "--claims-baseline", "base.json")
    broken = run(pytester, monkeypatch, "--claims-baseline", "base.json", shift="-1.0", fp="cd" * 32)
    assert broken.ret == 1
    broken.stdout.fnmatch_lines([
        "*claims vs baseline*",
        "claims diff: 1 matched, 1 regressed*REGRESSED",
        "*regressed (held -> failed):*",
        "*test_study.py::test_effect: passed -> failed*",
        "*model toy: fingerprint abababababab -> cdcdcdcdcdcd*",
    ])


def test_an_effect_that_moves_beyond_the_tolerance_fails_even_if_the_claim_holds(pytester, monkeypatch):
    pytester.makepyfile(test_study=STUDY)
    run(pytester, monkeypatch, "--claims-update-baseline", "--claims-baseline", "base.json")
    moved = run(pytester, monkeypatch, "--claims-baseline", "base.json", shift="2.0")
    assert moved.ret == 1  # every claim passed, but the effect moved ~10 half-widths
    moved.stdout.fnmatch_lines(["*1 passed*"])
    moved.stdout.fnmatch_lines(["*moved effects*"])
    tolerant = run(pytester, monkeypatch, "--claims-baseline", "base.json", "--claims-tolerance", "100", shift="2.0")
    assert tolerant.ret == 0


def test_a_missing_baseline_is_a_usage_error_that_says_how_to_write_one(pytester, monkeypatch):
    pytester.makepyfile(test_study=STUDY)
    result = run(pytester, monkeypatch, "--claims-baseline", "nope.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--claims-baseline nope.json: no such file; write one with*--claims-update-baseline*"])


def test_claims_diff_exits_1_on_a_regression_0_otherwise_and_2_on_a_bad_report(pytester, monkeypatch, capsys):
    pytester.makepyfile(test_study=STUDY)
    run(pytester, monkeypatch, "--claims-report", "a")
    run(pytester, monkeypatch, "--claims-report", "b", shift="-1.0")
    a, b = pytester.path / "a" / "report.json", pytester.path / "b" / "report.json"
    assert main(["diff", str(a), str(a)]) == 0
    assert main(["diff", str(a), str(b)]) == 1
    assert "1 regressed" in capsys.readouterr().out
    future = pytester.path / "future.json"
    future.write_text(json.dumps({**json.loads(a.read_text()), "schema_version": 99}))
    assert main(["diff", str(a), str(future)]) == 2
    assert "schema_version" in capsys.readouterr().err
    assert main(["diff", str(a), str(a), "--tolerance", "0"]) == 2
