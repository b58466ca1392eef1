"""What the plugin keeps on pytest's stashes: the per-item keys and the session's state.

On ``config.stash``: `SETTINGS_KEY` (the run's `ClaimsSettings`) and `SESSION_KEY` (the mutable
`_SessionState`, filled as tests finish). On each item's stash: `CLAIM_KEY` (its `ClaimMark`),
`FAMILY_KEY`, `EVIDENCE_KEY`, `PHASES_KEY`, `RESULT_KEY` (its `ClaimResult`) and
`IDENTITY_KEY` (its stable identity, `harness.plugin.studies.claim_identity`).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.verdicts.families import Family
from harness.verdicts.evidence import Evidence, Registry
from harness.reports import ClaimResult, Report

from .marker import ClaimMark
from .options import ClaimsSettings
from .outcomes import PhaseResult


@dataclass
class _SessionState:
    """Mutable per-session state (on ``config.stash``): filled as tests finish."""

    started: _dt.datetime
    t0: float
    registry: Registry
    results: list[ClaimResult] = field(default_factory=list)
    run_notes: list[str] = field(default_factory=list)   # recorded outside any claim (from each process)
    report: Report | None = None
    report_path: Path | None = None
    report_error: str | None = None
    html_path: Path | None = None
    html_error: str | None = None
    diff: Any = None          # harness.reports.diff.ReportDiff against --claims-baseline
    baseline_note: str | None = None


SETTINGS_KEY = pytest.StashKey[ClaimsSettings]()
SESSION_KEY = pytest.StashKey[_SessionState]()
CLAIM_KEY = pytest.StashKey[ClaimMark]()
EVIDENCE_KEY = pytest.StashKey[tuple[Evidence, ...]]()
PHASES_KEY = pytest.StashKey[list[PhaseResult]]()
RESULT_KEY = pytest.StashKey[ClaimResult]()
FAMILY_KEY = pytest.StashKey[Family]()
IDENTITY_KEY = pytest.StashKey[str]()
