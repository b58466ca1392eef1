"""Tests for `harness.cli`: the `claims` command's subcommands, arguments and errors."""

from __future__ import annotations

import datetime as dt
import json
import sys
import tomllib
import types
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ModelLoadError
from harness.verdicts.evidence import Evidence
from harness.reports import ClaimResult, build_report, write_report
from tests._support.paths import ROOT


def a_report(tmp_path: Path) -> Path:
    ev = Evidence(statistic="slope near 0", value=0.5, ci_low=0.2, ci_high=0.8, level=0.95, n=500,
                  method="bootstrap BCa", unit="examples", site=None, seed=7, fingerprint=None,
                  expectation="ci_excludes(0)", held=True)
    r = build_report(
        seed=42, resamples=999, command="pytest claims/ --claims-seed=42",
        started=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), duration_s=1.0,
        claims=[ClaimResult(nodeid="claims/test_a.py::test_a", text="Steering moves the score",
                            source=None, params={}, outcome="passed", message="", duration_s=0.1,
                            seed=1, evidence=(ev,))],
    )
    return write_report(r, tmp_path)


@pytest.fixture
def fake_fixtures(monkeypatch):
    """A stand-in `harness.models.fixtures` whose build() records its calls."""
    calls: list[tuple[str, int | None]] = []

    def build(name: str, *, seed: int | None = None) -> Path:
        if name not in ("tacgen", "arith"):
            raise ModelLoadError(f"unknown fixture {name!r}; available fixtures are ['arith', 'tacgen']")
        calls.append((name, seed))
        return Path("/cache") / name

    module = types.ModuleType("harness.models.fixtures")
    module.build = build  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "harness.models.fixtures", module)
    return calls


# --- claims report -----------------------------------------------------------------------------


def test_claims_report_prints_the_table_from_the_json_alone(tmp_path, capsys):
    path = a_report(tmp_path)
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "claims: seed 42, resamples 999; 1 claims (1 passed)" in out
    assert "reproduce: pytest claims/ --claims-seed=42" in out
    assert "Steering moves the score" in out and "held: ci_excludes(0)" in out


def test_claims_report_on_a_missing_file_is_an_error_naming_it(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope.json")]) == 1
    assert "claims: error: cannot read report '" in capsys.readouterr().err


def test_claims_report_on_a_future_schema_version_says_so(tmp_path, capsys):
    path = a_report(tmp_path)
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    assert main(["report", str(path)]) == 1
    assert "has schema_version 99; this harness reads schema_version 1" in capsys.readouterr().err


def test_claims_without_a_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err


def test_claims_report_without_a_path_is_a_usage_error(capsys):
    assert main(["report"]) == 2
    assert "the following arguments are required: PATH" in capsys.readouterr().err


# --- claims fixtures build ---------------------------------------------------------------------


def test_fixtures_build_passes_the_name_and_seed(fake_fixtures, capsys):
    assert main(["fixtures", "build", "tacgen", "--seed", "3"]) == 0
    assert fake_fixtures == [("tacgen", 3)]
    assert "built fixture 'tacgen' with seed 3: /cache/tacgen" in capsys.readouterr().out


def test_fixtures_build_leaves_the_seed_to_the_recipe_by_default(fake_fixtures, capsys):
    assert main(["fixtures", "build", "arith"]) == 0
    assert fake_fixtures == [("arith", None)]
    assert "with the recipe's seed" in capsys.readouterr().out


def test_fixtures_build_of_an_unknown_name_is_a_clear_error(fake_fixtures, capsys):
    assert main(["fixtures", "build", "tacgenn"]) == 1
    assert "claims: error: unknown fixture 'tacgenn'; available fixtures are ['arith', 'tacgen']" in capsys.readouterr().err


def test_fixtures_build_without_a_name_is_a_usage_error(fake_fixtures, capsys):
    assert main(["fixtures", "build"]) == 2
    assert "the following arguments are required: NAME" in capsys.readouterr().err
    assert fake_fixtures == []


def test_fixtures_build_with_a_negative_seed_is_a_usage_error(fake_fixtures, capsys):
    assert main(["fixtures", "build", "tacgen", "--seed", "-1"]) == 2
    assert "argument --seed: expected an integer >= 0 such as --seed 1234, got '-1'" in capsys.readouterr().err


def test_fixtures_without_an_action_is_a_usage_error(capsys):
    assert main(["fixtures"]) == 2
    assert "the following arguments are required: ACTION" in capsys.readouterr().err


def test_fixtures_build_says_when_the_fixtures_module_cannot_be_imported(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "harness.models.fixtures", None)
    assert main(["fixtures", "build", "tacgen"]) == 1
    assert "claims: error: cannot build fixture 'tacgen': harness.models.fixtures could not be imported" in capsys.readouterr().err


# --- packaging ---------------------------------------------------------------------------------


def test_the_console_script_points_at_main():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["claims"] == "harness.cli:main"


def test_claims_report_html_writes_the_page_again_from_the_json(tmp_path, capsys):
    from tests.harness.reports.test_report import report

    from harness.reports import write_report

    path = write_report(report(), tmp_path)
    assert main(["report", str(path), "--html"]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "Class-mean steering moves the score" in page
    assert f"html report: {tmp_path / 'report.html'}" in capsys.readouterr().out
