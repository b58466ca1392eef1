"""Tests for `harness.plugin`, run through `pytester`: write a tiny claim file, run it, read the report.

The claim files build `Estimate`s by hand, so nothing here needs torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import hypothesis.strategies  # noqa: F401
import pytest
import rich.box  # noqa: F401
import rich.console  # noqa: F401
import rich.table  # noqa: F401

# Modules that the in-process runs below would import: imported once here, so pytester's
# sys.modules snapshot keeps them and each run does not import (and assert-rewrite) them again.
import harness.stats.estimate  # noqa: F401
import harness.verdicts.expect  # noqa: F401
from harness.plugin import (
    ClaimMark,
    ClaimMarkerError,
    ClaimsOptionError,
    ClaimsSettings,
    PhaseResult,
    claim_outcome,
    derive_seed,
    json_safe_params,
    parse_claim_mark,
    reproduce_command,
    settings_from_options,
)
from harness.reports import read_report

STUDY = '''
import random
from statistics import NormalDist

import pytest

from harness.stats.estimate import Estimate
from harness.verdicts.expect import expect


def estimate(center, half_width, *, seed, statistic="slope near 0", site=None, level=0.95):
    # a normal-theory interval that can be recomputed at a family's corrected level
    def again(other):
        z = NormalDist().inv_cdf((1 + other) / 2) / NormalDist().inv_cdf((1 + level) / 2)
        return estimate(center, half_width * z, seed=seed, statistic=statistic, site=site, level=other)

    return Estimate(value=center, ci_low=center - half_width, ci_high=center + half_width,
                    level=level, n=500, method="bootstrap BCa", seed=seed, statistic=statistic,
                    site=site, fingerprint="3f2a9c0d1e2b4a5f", recompute=again)


@pytest.mark.claim("Class-mean steering moves the score", source="notebook 000, cell 12")
@pytest.mark.parametrize("layer", [11, 12], ids=lambda layer: f"layer{layer}")
def test_steering_moves_the_score(layer, claim_seed):
    center = random.Random(claim_seed).uniform(0.3, 0.6)
    expect(estimate(center, 0.2, seed=claim_seed, site=f"encoder.{layer}.resid_post")).ci_excludes(0).positive()


@pytest.mark.claim("The random-direction control moves the score")
def test_control_moves_the_score():
    est = Estimate(value=0.012, ci_low=-0.031, ci_high=0.055, level=0.95, n=500,
                   method="bootstrap BCa", seed=1234, statistic="slope near 0",
                   site="encoder.12.resid_post")
    expect(est).within(-0.1, 0.1).ci_excludes(0)


@pytest.mark.claim("A claim that records no evidence")
def test_nothing_recorded():
    pass


def test_not_a_claim():
    pass
'''

QUIET = ("-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*QUIET, *args)


def report_of(pytester: pytest.Pytester, directory: str = "reports/latest") -> dict:
    return json.loads((pytester.path / directory / "report.json").read_text())


def claims_by_nodeid(report: dict) -> dict[str, dict]:
    return {c["nodeid"]: c for c in report["claims"]}


def claims_section(result: pytest.RunResult) -> list[str]:
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if line.strip("= ") == "claims")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("=")), len(lines))
    return lines[start + 1:end]


@pytest.fixture
def study(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_study=STUDY)
    return pytester


# --- the terminal table ------------------------------------------------------------------------


def test_a_claims_run_prints_the_table_with_the_seed_and_the_reproduce_command(study):
    result = run(study, "--claims-seed", "7")
    result.assert_outcomes(passed=4, failed=1, errors=1)   # the claim without evidence passes its call, errs after
    section = claims_section(result)
    assert section[0].startswith("claims: seed 7, resamples 9999; 4 claims (2 passed, 1 failed, 1 error) in ")
    reproduce = next(line for line in section if line.startswith("reproduce: "))
    assert reproduce.startswith("reproduce: pytest -p no:cacheprovider")
    assert reproduce.endswith(" --claims-seed=7")
    assert reproduce.count("--claims-seed") == 1
    assert f"report: {study.path / 'reports/latest/report.json'}" in section
    header = next(line for line in section if "verdict" in line)
    assert header.split() == ["claim", "parameters", "statistic", "value", "CI", "n", "verdict"]
    text = "\n".join(section)
    assert "Class-mean steering moves" in text and "layer=11" in text
    # the parametrized claim is a family of 2: its effect expectations are judged at 97.5%
    assert "family of 2: bonferroni" in text and "97.5% [" in text
    assert "held: ci_excludes(0)" in text and "NOT HELD: ci_excludes(0)" in text
    assert "ERROR: claim recorded no" in text   # the verdict column wraps the rest of the message
    assert max(len(line) for line in section) <= 160


def test_the_table_has_one_row_per_estimate_and_verdict_and_one_for_a_claim_without_evidence(study):
    result = run(study)
    section = claims_section(result)
    rows = [line for line in section if "held" in line or "HELD" in line or "ERROR: claim recorded no" in line]
    # two claims whose estimate held twice (one row each), one control held once then not held
    # (two rows), one claim without evidence
    assert len(rows) == 1 + 1 + 2 + 1


def test_a_failing_claim_says_what_was_expected_and_what_was_measured(study):
    result = run(study)
    expected = ("expected the 95% CI of `slope near 0` at encoder.12.resid_post to exclude 0; "
                "measured 0.012, 95% CI [-0.031, 0.055], n=500 (bootstrap BCa over examples, seed 1234)")
    assert any(line.startswith("E ") and line.endswith(f"AssertionError: {expected}") for line in result.outlines)
    claim = claims_by_nodeid(report_of(study))["test_study.py::test_control_moves_the_score"]
    assert (claim["outcome"], claim["message"]) == ("failed", expected)


# --- report.json -------------------------------------------------------------------------------


def test_report_json_holds_the_run(study):
    run(study, "--claims-seed", "3", "--claims-resamples", "199")
    report = report_of(study)
    assert report["schema_version"] == 3
    r = report["run"]
    assert (r["seed"], r["resamples"]) == (3, 199)
    assert r["command"].startswith("pytest -p no:cacheprovider") and r["command"].endswith("--claims-seed=3")
    assert r["started"].endswith("+00:00") and r["duration_s"] >= 0
    assert set(r["versions"]) == {"python", "torch", "transformers", "harness"}
    assert r["versions"]["harness"] == "0.1.0"
    assert r["git"] is None  # pytester's directory is not a git repo
    assert report["models"] == [] and report["datasets"] == []


def test_report_json_holds_one_entry_per_claim_and_none_for_other_tests(study):
    run(study)
    claims = claims_by_nodeid(report_of(study))
    assert list(claims) == [
        "test_study.py::test_steering_moves_the_score[layer11]",
        "test_study.py::test_steering_moves_the_score[layer12]",
        "test_study.py::test_control_moves_the_score",
        "test_study.py::test_nothing_recorded",
    ]


def test_report_json_holds_each_claims_text_source_params_outcome_and_evidence(study):
    run(study, "--claims-seed", "5")
    nodeid = "test_study.py::test_steering_moves_the_score[layer12]"
    claim = claims_by_nodeid(report_of(study))[nodeid]
    seed = derive_seed(5, nodeid)   # outside a study the identity is the file below its package root
    assert claim["identity"] == nodeid
    assert claim["text"] == "Class-mean steering moves the score"
    assert claim["source"] == "notebook 000, cell 12"
    assert claim["params"] == {"layer": 12}
    assert (claim["outcome"], claim["message"], claim["seed"]) == ("passed", "", seed)
    assert 0 <= claim["duration_s"] < 60
    first, second = claim["evidence"]
    assert first == {
        "statistic": "slope near 0", "value": first["value"], "ci_low": first["ci_low"],
        "ci_high": first["ci_high"], "level": 0.975, "n": 500, "method": "bootstrap BCa",
        "unit": "examples", "site": "encoder.12.resid_post", "seed": seed,
        "fingerprint": "3f2a9c0d1e2b4a5f", "expectation": "ci_excludes(0)", "held": True,
        "status": "ok", "reason": "", "resamples": None,   # an Estimate built by hand: no distribution
    }
    # judged at the Bonferroni level of its family of 2: the interval is recomputed at 97.5%
    assert first["ci_low"] == pytest.approx(first["value"] - 0.2 * 2.2414 / 1.9600, rel=1e-4)
    assert (claim["family"], claim["family_size"]) == ("test_study.py::test_steering_moves_the_score", 2)
    assert (claim["correction"], claim["level"]) == ("bonferroni", 0.975)
    assert second["expectation"] == "positive()" and second["held"] is True


def test_evidence_recorded_before_a_failure_is_kept(study):
    run(study)
    claim = claims_by_nodeid(report_of(study))["test_study.py::test_control_moves_the_score"]
    assert [(e["expectation"], e["held"]) for e in claim["evidence"]] == [
        ("within(-0.1, 0.1)", True), ("ci_excludes(0)", False)]


def test_the_report_reads_back_through_read_report(study):
    run(study)
    report = read_report(study.path / "reports/latest/report.json")
    assert report.counts() == {"passed": 2, "failed": 1, "error": 1}


def test_the_report_goes_to_the_directory_given_with_claims_report(study, tmp_path):
    run(study, "--claims-report", "out/study")
    assert (study.path / "out/study/report.json").is_file()
    assert not (study.path / "reports").exists()
    run(study, "--claims-report", str(tmp_path / "elsewhere"))
    assert read_report(tmp_path / "elsewhere/report.json").run.seed == 0


def test_a_report_that_cannot_be_written_is_said_in_the_summary(study):
    (study.path / "blocker").write_text("a file, not a directory")
    result = run(study, "--claims-report", "blocker/latest")
    result.stdout.fnmatch_lines(["claims: report not written: cannot create the report directory *"])


def test_a_session_without_claims_writes_no_report_and_prints_no_table(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run(pytester)
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()
    assert not any(line.strip("= ") == "claims" for line in result.outlines)


# --- claim seeds -------------------------------------------------------------------------------


def test_a_k_slice_gives_the_same_claim_seeds_and_evidence_as_the_full_run(study):
    run(study, "--claims-report", "full")
    run(study, "-k", "layer12", "--claims-report", "slice")
    full = claims_by_nodeid(report_of(study, "full"))
    sliced = claims_by_nodeid(report_of(study, "slice"))
    assert list(sliced) == ["test_study.py::test_steering_moves_the_score[layer12]"]
    for nodeid, claim in sliced.items():
        assert claim["seed"] == full[nodeid]["seed"]
        assert claim["evidence"] == full[nodeid]["evidence"]


def test_the_claim_seed_follows_the_base_seed(study):
    run(study, "--claims-seed", "1", "--claims-report", "one")
    run(study, "--claims-seed", "2", "--claims-report", "two")
    one = claims_by_nodeid(report_of(study, "one"))
    two = claims_by_nodeid(report_of(study, "two"))
    nodeid = "test_study.py::test_steering_moves_the_score[layer11]"
    assert one[nodeid]["seed"] == derive_seed(1, nodeid) != two[nodeid]["seed"] == derive_seed(2, nodeid)
    assert one[nodeid]["evidence"][0]["value"] != two[nodeid]["evidence"][0]["value"]


def test_derive_seed_is_a_32_bit_function_of_the_base_seed_and_the_node_id():
    assert derive_seed(0, "a.py::t") == derive_seed(0, "a.py::t")
    assert len({derive_seed(0, "a.py::t"), derive_seed(1, "a.py::t"), derive_seed(0, "a.py::u")}) == 3
    assert all(0 <= derive_seed(s, "x") < 2**32 for s in range(50))


# --- fixtures ----------------------------------------------------------------------------------


TWO_STUDIES = '''
    from harness.plugin import Study

    STUDY = Study("tacgen", model="fixture:tacgen", thresholds={"fixture:tacgen": "row"},
                  models=("tacgen", "arith"), data=("mbpp", "lean"))
'''


def test_claims_settings_carry_the_options(pytester):
    pytester.makepyfile(study=TWO_STUDIES)
    pytester.makepyfile(test_settings='''
        from pathlib import Path

        def test_settings(claims_settings, pytestconfig):
            s = claims_settings
            assert (s.seed, s.resamples) == (11, 499)
            assert dict(s.models) == {"tacgen": "/models/tacgen", "arith": "fixture:arith"}
            assert dict(s.data) == {"mbpp": "data/mbpp.jsonl"}
            assert s.model_spec("tacgen", "fixture:tacgen") == "/models/tacgen"
            assert s.model_spec("tracer", "fixture:tracer") == "fixture:tracer"
            assert s.data_path("mbpp", "x") == "data/mbpp.jsonl"
            assert s.data_path("lean", "fixture:lean") == "fixture:lean"
            assert s.data_path("lean") is None
            assert s.report_dir == Path(pytestconfig.rootpath) / "reports/latest"
    ''')
    result = run(pytester, "--claims-seed=11", "--claims-resamples=499",
                 "--claims-model", "tacgen=/models/tacgen", "--claims-model", "arith=fixture:arith",
                 "--claims-data", "mbpp=data/mbpp.jsonl", "--claims-thresholds", "tacgen=fixture:tacgen")
    result.assert_outcomes(passed=1)


def test_the_claim_seed_fixture_is_the_derived_seed(pytester):
    pytester.makepyfile(test_seed='''
        from harness.plugin import derive_seed

        def test_seed(claim_seed, request):
            assert claim_seed == derive_seed(4, request.node.nodeid)
    ''')
    run(pytester, "--claims-seed", "4").assert_outcomes(passed=1)


def test_registered_models_and_data_sets_appear_in_the_header_and_the_report(pytester):
    pytester.makepyfile(study=TWO_STUDIES)
    pytester.makeconftest('''
        import pytest
        from harness.verdicts.evidence import register_dataset, register_model

        @pytest.fixture(scope="session")
        def tacgen(claims_settings):
            spec = claims_settings.model_spec("tacgen", "fixture:tacgen")
            register_model("tacgen", spec=spec, fingerprint="3f2a9c0d1e2b4a5f6789",
                           device="cpu", dtype="float32")
            register_dataset("lean", path="data/lean.jsonl", content_hash="sha256:0123456789abcdef0123")
            return spec
    ''')
    pytester.makepyfile(test_uses_model='''
        import pytest

        @pytest.mark.claim("The model loads", check=True)
        def test_loads(tacgen):
            assert tacgen
    ''')
    result = run(pytester, "--claims-model", "tacgen=/models/mine", "--claims-thresholds", "tacgen=fixture:tacgen")
    result.assert_outcomes(passed=1)
    assert "model tacgen: /models/mine  fingerprint 3f2a9c0d1e2b  (cpu, float32)" in claims_section(result)
    report = report_of(pytester)
    assert report["models"] == [{"name": "tacgen", "spec": "/models/mine", "fingerprint": "3f2a9c0d1e2b4a5f6789",
                                 "device": "cpu", "dtype": "float32", "source": ""}]
    assert report["studies"] == [{"study": "tacgen", "model": "/models/mine", "row": "fixture:tacgen",
                                  "why": "--claims-thresholds"}]
    assert "study tacgen: thresholds row 'fixture:tacgen' (--claims-thresholds)" in claims_section(result)
    assert report["datasets"] == [{"name": "lean", "path": "data/lean.jsonl",
                                   "content_hash": "sha256:0123456789abcdef0123"}]


def test_each_session_starts_with_an_empty_registry(pytester):
    pytester.makepyfile(test_register='''
        import pytest
        from harness.verdicts.evidence import register_model, registered_models

        @pytest.mark.claim("Registers a model", check=True)
        def test_register():
            assert registered_models() == ()
            register_model("m", spec="fixture:m", fingerprint="1", device="cpu", dtype="float32")
    ''')
    run(pytester).assert_outcomes(passed=1)
    run(pytester).assert_outcomes(passed=1)


# --- outcomes and parameters -------------------------------------------------------------------


OUTCOMES = '''
import pytest


@pytest.fixture
def no_weights():
    raise OSError("no weights at /models/x")


@pytest.fixture
def messy():
    yield
    raise RuntimeError("cleanup failed")


@pytest.mark.claim("setup fails")
def test_setup_error(no_weights):
    pass


@pytest.mark.claim("teardown fails")
def test_teardown_error(messy):
    pass


@pytest.mark.claim("skipped")
def test_skipped():
    pytest.skip("no GPU here")


@pytest.mark.claim("known broken")
@pytest.mark.xfail(reason="checkpoint 3 regressed")
def test_xfail():
    assert False


@pytest.mark.claim("crashes")
def test_crash():
    raise ValueError("bad shape [3, 4]")


class Site:
    def __repr__(self):
        return "Site('encoder.12.resid_post')"


@pytest.mark.claim("parameters")
@pytest.mark.parametrize("site", [Site()], ids=["site"])
@pytest.mark.parametrize("value", [1.5, None, "x", (1, 2), float("nan")], ids=["f", "none", "s", "t", "nan"])
def test_params(site, value):
    pass
'''


@pytest.fixture
def outcomes(pytester: pytest.Pytester) -> dict[str, dict]:
    pytester.makepyfile(test_outcomes=OUTCOMES)
    run(pytester)
    return {c["nodeid"].split("::")[1]: c for c in report_of(pytester)["claims"]}


def test_a_failure_in_setup_is_an_error(outcomes):
    c = outcomes["test_setup_error"]
    assert (c["outcome"], c["message"]) == ("error", "error in setup: OSError: no weights at /models/x")


def test_a_failure_in_teardown_is_an_error(outcomes):
    c = outcomes["test_teardown_error"]
    assert (c["outcome"], c["message"]) == ("error", "error in teardown: RuntimeError: cleanup failed")


def test_a_skip_is_skipped_with_its_reason(outcomes):
    assert (outcomes["test_skipped"]["outcome"], outcomes["test_skipped"]["message"]) == ("skipped", "no GPU here")


def test_an_xfail_is_xfailed_with_its_reason(outcomes):
    assert (outcomes["test_xfail"]["outcome"], outcomes["test_xfail"]["message"]) == ("xfailed", "checkpoint 3 regressed")


def test_an_exception_in_the_call_is_a_failure_with_its_type(outcomes):
    assert (outcomes["test_crash"]["outcome"], outcomes["test_crash"]["message"]) == ("failed", "ValueError: bad shape [3, 4]")


def test_parameters_are_json_primitives_or_their_repr(outcomes):
    params = [outcomes[f"test_params[{v}-site]"]["params"] for v in ("f", "none", "s", "t", "nan")]
    assert params == [
        {"value": 1.5, "site": "Site('encoder.12.resid_post')"},
        {"value": None, "site": "Site('encoder.12.resid_post')"},
        {"value": "x", "site": "Site('encoder.12.resid_post')"},
        {"value": "(1, 2)", "site": "Site('encoder.12.resid_post')"},
        {"value": "nan", "site": "Site('encoder.12.resid_post')"},
    ]


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        ([PhaseResult("setup", "passed", 0.1), PhaseResult("call", "passed", 0.1), PhaseResult("teardown", "passed", 0.1)], ("passed", "")),
        ([PhaseResult("setup", "failed", 0.1, "E: x"), PhaseResult("teardown", "passed", 0.1)], ("error", "error in setup: E: x")),
        ([PhaseResult("setup", "passed", 0), PhaseResult("call", "failed", 0, "m"), PhaseResult("teardown", "failed", 0, "t")], ("failed", "m")),
        ([PhaseResult("setup", "passed", 0), PhaseResult("call", "passed", 0), PhaseResult("teardown", "failed", 0, "t")], ("error", "error in teardown: t")),
        ([PhaseResult("setup", "skipped", 0, "why")], ("skipped", "why")),
        ([PhaseResult("setup", "passed", 0), PhaseResult("call", "skipped", 0, "r", xfail=True)], ("xfailed", "r")),
        ([PhaseResult("setup", "passed", 0), PhaseResult("call", "passed", 0, "r", xfail=True)], ("xpassed", "r")),
    ],
    ids=["passed", "setup-error", "call-failure-wins-over-teardown", "teardown-error", "skipped", "xfailed", "xpassed"],
)
def test_claim_outcome_reads_the_phases(phases, expected):
    assert claim_outcome(phases) == expected


def test_json_safe_params_keep_primitives_and_repr_the_rest():
    assert json_safe_params({"a": 1, "b": True, "c": None, "d": [1], "e": float("inf")}) == {
        "a": 1, "b": True, "c": None, "d": "[1]", "e": "inf"}


# --- the claim marker --------------------------------------------------------------------------


def test_the_claim_marker_is_registered_with_its_signature_and_an_example(pytester):
    result = run(pytester, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.claim(text, *, source=None, family=None, check=False): this test "
                                 "states a finding *`check=True` a plain check that may record no evidence*"
                                 "Example: @pytest.mark.claim(*"])


def test_a_claim_marker_passes_under_strict_markers_and_a_typo_fails(pytester):
    pytester.makepyfile(test_markers='''
        import pytest

        @pytest.mark.claim("Spelled right", check=True)
        def test_right():
            pass
    ''')
    run(pytester, "--strict-markers").assert_outcomes(passed=1)
    pytester.makepyfile(test_markers='''
        import pytest

        @pytest.mark.cliam("Spelled wrong")
        def test_wrong():
            pass
    ''')
    result = run(pytester, "--strict-markers")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*'cliam' not found in `markers` configuration option*"])


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("claim()", "@pytest.mark.claim needs the finding as its text, got no text; e.g. @pytest.mark.claim(*"),
        ("claim(3)", "@pytest.mark.claim text must be a string, got int 3; e.g. *"),
        ("claim('   ')", "@pytest.mark.claim text must state the finding, got '   '; e.g. *"),
        ("claim('a', 'b')", "@pytest.mark.claim takes one text, got 2: ('a', 'b'); give the source as a keyword, e.g. *"),
        ("claim('a', sources='nb')", "@pytest.mark.claim got unexpected keyword argument(s) 'sources'; did you mean "
                                     "source=? it takes the text and source=, family=, check=, e.g. *"),
        ("claim('a', source=12)", "@pytest.mark.claim source must be a string or None, got int 12; e.g. *"),
    ],
    ids=["no-text", "int-text", "blank-text", "two-texts", "unknown-keyword", "int-source"],
)
def test_a_malformed_claim_marker_is_a_collection_error(pytester, marker, message):
    assert_marker_collection_error(pytester, marker, message)


def assert_marker_collection_error(pytester, marker: str, message: str) -> None:
    """A test file whose one test carries `marker` fails collection with `message`."""
    pytester.makepyfile(test_bad=f'''
        import pytest

        @pytest.mark.{marker}
        def test_bad():
            pass
    ''')
    result = run(pytester)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting test_bad.py*", f"test_bad.py::test_bad: {message}"])


def test_a_malformed_claim_marker_added_after_collection_is_an_error_in_setup(pytester):
    pytester.makeconftest('''
        import pytest

        def pytest_collection_modifyitems(items):
            for item in items:
                item.add_marker(pytest.mark.claim(42))
    ''')
    pytester.makepyfile(test_late="def test_late():\n    pass\n")
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ClaimMarkerError: @pytest.mark.claim text must be a string, got int 42*"])


def test_parse_claim_mark_accepts_the_text_as_a_keyword():
    assert parse_claim_mark((), {"text": "t", "source": "s"}) == ClaimMark("t", "s")


def test_a_claim_marker_error_is_a_harness_error():
    from harness.errors import HarnessError

    assert issubclass(ClaimMarkerError, HarnessError) and issubclass(ClaimsOptionError, HarnessError)


# --- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--claims-model", "tacgen"], "*argument --claims-model: expected NAME=SPEC such as --claims-model tacgen=* got 'tacgen'"),
        (["--claims-model", "=fixture:tacgen"], "*argument --claims-model: expected NAME=SPEC such as * got '=fixture:tacgen'"),
        (["--claims-model", "1st=x"], "*argument --claims-model: NAME in NAME=SPEC must start with a letter or '_'* got '1st' in '1st=x'*"),
        (["--claims-data", "mbpp"], "*argument --claims-data: expected NAME=PATH such as --claims-data mbpp=data/mbpp.jsonl, got 'mbpp'"),
        (["--claims-seed", "abc"], "*argument --claims-seed: expected an integer >= 0 such as --claims-seed=1234, got 'abc'"),
        (["--claims-seed", "-1"], "*argument --claims-seed: expected an integer >= 0 such as --claims-seed=1234, got '-1'"),
        (["--claims-resamples", "0"], "*argument --claims-resamples: expected an integer >= 1 such as --claims-resamples=9999, got '0'"),
        (["--claims-threads", "0"], "*argument --claims-threads: expected an integer >= 1 such as --claims-threads=1, got '0'"),
        (["--claims-model", "a=x", "--claims-model", "a=y"], "ERROR: --claims-model gives 'a' twice (a=x and a=y); give each name once"),
    ],
    ids=["model-without-equals", "model-without-name", "model-bad-name", "data-without-equals",
         "seed-not-int", "seed-negative", "resamples-zero", "threads-zero", "model-twice"],
)
def test_a_bad_option_value_is_a_usage_error_naming_the_option_and_the_value(pytester, args, message):
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_the_options_are_listed_in_one_claims_group(pytester):
    result = run(pytester, "--help")
    result.stdout.fnmatch_lines([
        "interpretability claims (harness.plugin):",
        "*--claims-seed=SEED*",
        "*--claims-resamples=N*",
        "*--claims-model=NAME=SPEC*",
        "*--claims-data=NAME=PATH*",
        "*--claims-threads=N*",
        "*--claims-report=DIR*",
    ])


def test_claims_threads_sets_torchs_thread_count_for_the_run(pytester):
    pytester.makepyfile(test_threads="""
import torch

def test_threads():
    assert torch.get_num_threads() == 2
""")
    # a child process: this one runs with one thread (OMP_NUM_THREADS=1, inherited by the child)
    result = pytester.runpytest_subprocess(*QUIET, "--claims-threads", "2")
    result.assert_outcomes(passed=1)
    result = pytester.runpytest_subprocess(*QUIET)
    result.assert_outcomes(failed=1)


def test_settings_from_options_resolve_the_report_directory():
    common = dict(seed=0, resamples=9, models=None, data=None, rootdir=Path("/root"), invocation_dir=Path("/here"))
    assert settings_from_options(report=None, **common).report_dir == Path("/root/reports/latest")
    assert settings_from_options(report="out", **common).report_dir == Path("/here/out")
    assert settings_from_options(report="/abs", **common).report_dir == Path("/abs")


def test_settings_are_frozen_and_their_tables_read_only():
    s = settings_from_options(seed=0, resamples=9, models=[("a", "x")], data=None, report=None,
                              rootdir=Path("/r"), invocation_dir=Path("/r"))
    with pytest.raises(AttributeError):
        s.seed = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.models["b"] = "y"  # type: ignore[index]
    assert isinstance(s, ClaimsSettings)


def test_the_same_name_given_twice_with_the_same_value_is_accepted():
    s = settings_from_options(seed=0, resamples=9, models=[("a", "x"), ("a", "x")], data=None,
                              report=None, rootdir=Path("/r"), invocation_dir=Path("/r"))
    assert dict(s.models) == {"a": "x"}


def test_claims_sae_is_read_per_study_and_a_conflict_is_a_usage_error():
    common = dict(seed=0, resamples=9, models=None, data=None, report=None, rootdir=Path("/r"),
                  invocation_dir=Path("/r"))
    s = settings_from_options(saes=[("codegen", "/saes/l12"), ("codegen", "/saes/l12")], **common)
    assert s.sae_spec("codegen") == "/saes/l12"
    assert s.sae_spec("tracer", "fallback") == "fallback"
    with pytest.raises(ClaimsOptionError, match=r"--claims-sae gives 'codegen' twice"):
        settings_from_options(saes=[("codegen", "a"), ("codegen", "b")], **common)


def test_reproduce_command_replaces_any_seed_option_with_the_run_seed():
    assert reproduce_command(["claims/", "-k", "layer 12", "--claims-seed", "3", "--claims-seed=4"], 5) == (
        "pytest claims/ -k 'layer 12' --claims-seed=5")


# --- import weight -----------------------------------------------------------------------------


def test_importing_the_plugin_loads_neither_torch_transformers_nor_numpy():
    code = ("import sys, harness.plugin; "
            "print(sorted(m for m in ('torch', 'transformers', 'numpy', 'scipy', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# =============================================================================================
# Evidence that says what it is: a claim without evidence, plain checks, exact findings.
# (One block; tests added by others go below or above it, not inside.)

from harness.plugin.outcomes import NO_EVIDENCE  # noqa: E402

EVIDENCE_STUDY = '''
import numpy as np
import pytest

from harness.stats.estimate import Estimate
from harness.verdicts.expect import expect


@pytest.mark.claim("Patching the only differing token restores every pair")
def test_exact():
    expect(np.ones(60), name="recovery").equals(1.0, tol=1e-6)


@pytest.mark.claim("A claim that forgot its expect")
def test_forgot():
    assert 1 + 1 == 2


@pytest.mark.claim("The controls are what they say", check=True)
def test_plain_check():
    assert "random" != "shuffled"


@pytest.mark.claim("A check may still record evidence", check=True)
def test_check_with_evidence():
    expect(Estimate(value=0.5, ci_low=0.4, ci_high=0.6, level=0.95, n=500, method="wilson",
                    statistic="accuracy")).at_least(0.3)
'''


@pytest.fixture
def evidence_study(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_evidence_study=EVIDENCE_STUDY)
    return pytester


def test_a_claim_that_records_no_evidence_ends_as_an_error_that_says_so(evidence_study):
    result = run(evidence_study)
    result.assert_outcomes(passed=4, errors=1)   # its call passed; pytest reports the error at teardown
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_forgot*", NO_EVIDENCE.replace("[", "[[]")])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    claim = claims_by_nodeid(report_of(evidence_study))["test_evidence_study.py::test_forgot"]
    assert (claim["outcome"], claim["message"], claim["evidence"]) == ("error", NO_EVIDENCE, [])
    assert NO_EVIDENCE == ("claim recorded no evidence: state the finding with expect(...), or mark it check=True "
                           'if it is a plain check (@pytest.mark.claim("...", check=True))')
    assert "check" not in claim
    assert any("ERROR: claim recorded no" in line for line in claims_section(result))


def test_a_plain_check_passes_without_evidence_and_shows_as_check_passed(evidence_study):
    result = run(evidence_study)
    claims = claims_by_nodeid(report_of(evidence_study))
    check = claims["test_evidence_study.py::test_plain_check"]
    assert (check["outcome"], check["message"], check["evidence"], check["check"]) == ("passed", "", [], True)
    row = next(line for line in claims_section(result) if line.startswith("The controls are what"))
    assert row.rstrip().endswith("check passed")
    with_evidence = claims["test_evidence_study.py::test_check_with_evidence"]
    assert with_evidence["check"] is True and [e["held"] for e in with_evidence["evidence"]] == [True]
    read = read_report(evidence_study.path / "reports/latest/report.json")
    assert [c.check for c in read.claims] == [False, False, True, True]


def test_an_exact_finding_is_reported_as_exact_in_the_table_the_json_and_the_html(evidence_study):
    result = run(evidence_study)
    claim = claims_by_nodeid(report_of(evidence_study))["test_evidence_study.py::test_exact"]
    assert claim["outcome"] == "passed"
    (ev,) = claim["evidence"]
    assert {k: ev[k] for k in ("statistic", "value", "ci_low", "ci_high", "level", "n", "method", "unit",
                               "expectation", "held", "status", "kind", "expected", "tolerance", "deviation")} == {
        "statistic": "recovery", "value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "level": 1.0, "n": 60,
        "method": "exact", "unit": "values", "expectation": "equals(1, tol=1e-06)", "held": True, "status": "ok",
        "kind": "exact", "expected": 1.0, "tolerance": 1e-06, "deviation": 0.0}
    row = next(line for line in claims_section(result) if "recovery" in line)
    assert "exact (max |dev| 0, tol 1e-06)" in row and "held: equals(1, tol=1e-06)" in row
    html = (evidence_study.path / "reports/latest/report.html").read_text()
    assert "exact (max |dev| 0, tol 1e-06)" in html and "equals(1, tol=1e-06)" in html


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("claim('a', chek=True)", "@pytest.mark.claim got unexpected keyword argument(s) 'chek'; did you mean check=? "
                                  "it takes the text and source=, family=, check=, e.g. *"),
        ("claim('a', famly='f', sorce='s')", "@pytest.mark.claim got unexpected keyword argument(s) 'famly', 'sorce'; "
                                             "did you mean family=, source=? it takes the text and *"),
        ("claim('a', checks=1)", "*unexpected keyword argument(s) 'checks'; did you mean check=? *"),
        ("claim('a', check='yes')", "@pytest.mark.claim check must be True or False, got str 'yes'; e.g. check=True "
                                    "for a plain check that states no finding with expect(...)"),
        ("claim('a', zzz=1)", "@pytest.mark.claim got unexpected keyword argument(s) 'zzz'; it takes the text and "
                              "source=, family=, check=, e.g. *"),
    ],
    ids=["misspelt-check", "two-misspelt", "plural-check", "check-not-bool", "unknown-keyword-without-a-match"],
)
def test_a_misspelt_or_mistyped_check_keyword_is_a_collection_error(pytester, marker, message):
    assert_marker_collection_error(pytester, marker, message)


def test_parse_claim_mark_reads_check():
    assert parse_claim_mark(("t",), {"check": True}) == ClaimMark("t", check=True)
    assert parse_claim_mark(("t",), {}).check is False
    with pytest.raises(ClaimMarkerError, match=r"check must be True or False, got int 1"):
        parse_claim_mark(("t",), {"check": 1})


PASSED = [PhaseResult("setup", "passed", 0), PhaseResult("call", "passed", 0), PhaseResult("teardown", "passed", 0)]


@pytest.mark.parametrize(
    ("phases", "evidence", "check", "expected"),
    [
        (PASSED, (), False, ("error", NO_EVIDENCE)),
        (PASSED, (), True, ("passed", "")),
        (PASSED, ("an evidence record",), False, ("passed", "")),
        (PASSED, None, False, ("passed", "")),   # evidence not known: not checked
        ([*PASSED[:1], PhaseResult("call", "failed", 0, "m"), PASSED[2]], (), False, ("failed", "m")),
        ([PhaseResult("setup", "skipped", 0, "why")], (), False, ("skipped", "why")),
        ([*PASSED[:1], PhaseResult("call", "skipped", 0, "r", xfail=True)], (), False, ("xfailed", "r")),
    ],
    ids=["no-evidence", "plain-check", "evidence", "unknown", "failed", "skipped", "xfailed"],
)
def test_claim_outcome_makes_a_passing_claim_without_evidence_an_error(phases, evidence, check, expected):
    assert claim_outcome(phases, evidence=evidence, check=check) == expected
