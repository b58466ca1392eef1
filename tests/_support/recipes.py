"""Shared by the fixture-family and study tests: a family's recipe module (their build cache is
the `cache` fixture in conftest.py), and running a study's claims on another model."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence
from tests._support.paths import ROOT

FIXTURES = ROOT / "fixtures"


def load_recipe(family: str) -> ModuleType:
    """``fixtures/<family>/recipe.py``: the module ``fixtures.<family>.recipe``."""
    return importlib.import_module(f"fixtures.{family}.recipe")


def run_study_on(study: str, model: str, names: Sequence[str], report_dir: Path, *,
                 returncodes: Sequence[int], extra: Sequence[str] = (), skip: str | None = None) -> dict[str, dict]:
    """Run the claims of `study` named in `names` (test functions) on `model` in a child pytest
    (999 resamples, report into `report_dir`, `extra` options appended), leaving out those whose id
    matches the keyword `skip` (e.g. ``"layer11"``); its exit code must be in `returncodes`.
    Returns each claim of the report by test name (``test_x[id]``)."""
    keyword = " or ".join(names) if skip is None else f"({' or '.join(names)}) and not {skip}"
    cmd = [sys.executable, "-m", "pytest", f"claims/{study}", "-q", "-p", "no:cacheprovider", "--claims-resamples=999",
           f"--claims-report={report_dir}", "--claims-model", f"{study}={model}", "-k", keyword, *extra]
    proc = subprocess.run(cmd, cwd=FIXTURES.parent, capture_output=True, text=True, env={**os.environ}, timeout=900)
    assert proc.returncode in returncodes, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((Path(report_dir) / "report.json").read_text())
    return {c["nodeid"].split("::")[-1]: c for c in report["claims"]}


def by_kind(claims: dict, names: Sequence[str]) -> dict:
    """The entries of `claims` whose test function is one of `names`."""
    return {k: v for k, v in claims.items() if k.split("[")[0] in names}


def assert_replays_the_shipped_run(replayed: Sequence[float], shipped: Sequence[float], *, platform: object,
                                   shipped_platform: object) -> None:
    """A recipe's replayed losses are the shipped run's: bit for bit on the platform that built
    it; elsewhere float reductions may differ in the last bits, so to two decimals."""
    import pytest

    if platform == shipped_platform:
        assert list(replayed) == list(shipped)
    else:
        assert list(replayed) == pytest.approx(list(shipped), abs=0.01)
