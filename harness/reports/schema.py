"""The report of a claims run as data: the dataclasses that ``report.json`` holds.

Contents:

- `Report` (`RunInfo`, `GitInfo`, `ClaimResult`; models and data sets are
  `harness.verdicts.evidence.ModelRecord` / `DatasetRecord`; evidence is `harness.verdicts.evidence.Evidence`).
- `SCHEMA_VERSION`, `SUPPORTED_SCHEMA_VERSIONS`, `REPORT_FILENAME`, `OUTCOMES`.
- `ReportError`: a report that cannot be written or read back.

Building, writing and reading a report is `harness.reports.report`. The JSON schema is
documented field by field in ``reports/README.md``; `SCHEMA_VERSION` is bumped on any change
that an old reader could misread.
"""

from __future__ import annotations

from collections.abc import Mapping
import dataclasses
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError
from harness.resources import PeakMemory
from harness.verdicts.evidence import DatasetRecord, Evidence, ModelRecord

__all__ = [
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "REPORT_FILENAME",
    "OUTCOMES",
    "ReportError",
    "GitInfo",
    "RunInfo",
    "ClaimResult",
    "StudyRow",
    "Report",
]

SCHEMA_VERSION = 3
SUPPORTED_SCHEMA_VERSIONS: tuple[int, ...] = (1, 2, 3)
REPORT_FILENAME = "report.json"
OUTCOMES: tuple[str, ...] = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


class ReportError(HarnessError, ValueError):
    """A report that cannot be written or read back (bad file, unknown schema version)."""


@dataclass(frozen=True)
class GitInfo:
    """The commit the study ran at, and whether the working tree had changes."""

    commit: str
    dirty: bool


@dataclass(frozen=True)
class RunInfo:
    """How the run was made: seed, resamples, the command that reproduces it, when, and with
    which versions. `started` is an ISO 8601 UTC timestamp; `git` is None outside a git repo.
    `notes`: what the run had to do that its numbers should be read with (a batch halved when
    memory ran out), each once (absent, read as none, in older reports)."""

    seed: int
    resamples: int
    command: str
    started: str
    duration_s: float
    versions: Mapping[str, str | None]
    git: GitInfo | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClaimResult:
    """One claim (one test with the `claim` marker) and what it observed.

    `outcome` is one of `OUTCOMES` ("error" is a failure in setup or teardown); `message` is a
    short failure or skip message ("" when passed); `seed` is the claim seed that the
    `claim_seed` fixture hands the test. `family` names the family the claim was judged in
    (`harness.verdicts.families`), `family_size` its number of claims, `correction` the rule its
    verdict used and `level` the confidence level its CI was judged at (None without
    evidence; schema 1 reports read as families of one, uncorrected). `check` is True for a
    plain check (``@pytest.mark.claim(..., check=True)``), which may pass without evidence;
    any other claim that records no evidence ends as an error. `memory` is the peak memory of
    its setup, call and teardown together (`harness.resources.PeakMemory`; None where not
    measured, and in older reports); `notes` the run notes recorded while it ran.
    """

    nodeid: str
    text: str
    source: str | None
    params: Mapping[str, Any]
    outcome: str
    message: str
    duration_s: float
    seed: int
    evidence: tuple[Evidence, ...] = ()
    family: str = ""
    family_size: int = 1
    correction: str = "none"
    level: float | None = None
    identity: str = ""
    check: bool = False
    memory: PeakMemory | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "identity": self.identity,
            "text": self.text,
            "source": self.source,
            "params": dict(self.params),
            "outcome": self.outcome,
            "message": self.message,
            "duration_s": self.duration_s,
            "memory": None if self.memory is None else self.memory.to_dict(),
            "seed": self.seed,
            "family": self.family,
            "family_size": self.family_size,
            "correction": self.correction,
            "level": self.level,
            **({"check": True} if self.check else {}),   # written for a plain check only
            "notes": list(self.notes),
            "evidence": [ev.to_dict() for ev in self.evidence],
        }


@dataclass(frozen=True)
class StudyRow:
    """The threshold row a study's claims were judged by: the study, its model's spec, the row's
    name and why that row (``the model's spec``, ``--claims-thresholds``, a config's
    ``_name_or_path``...)."""

    study: str
    model: str
    row: str
    why: str

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Report:
    """Everything a claims run produced. See ``reports/README.md`` for the JSON form."""

    schema_version: int
    run: RunInfo
    models: tuple[ModelRecord, ...] = ()
    datasets: tuple[DatasetRecord, ...] = ()
    claims: tuple[ClaimResult, ...] = ()
    studies: tuple[StudyRow, ...] = ()

    def counts(self) -> dict[str, int]:
        """Claims per outcome, in `OUTCOMES` order, zero counts left out."""
        found = [c.outcome for c in self.claims]
        return {o: found.count(o) for o in OUTCOMES if o in found}
