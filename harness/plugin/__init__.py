"""The pytest plugin: every test marked `claim` is a finding, and the run ends with a report.

Registered through the ``pytest11`` entry point ``claims = "harness.plugin"``; pytest registers
this module, so it imports every hook and fixture from the modules that define them:

- `options` -- options (group "claims"): ``--claims-seed``, ``--claims-resamples``,
  ``--claims-model NAME=SPEC``, ``--claims-data NAME=PATH``, ``--claims-report DIR`` and the
  rest (`pytest_addoption`), and the `ClaimsSettings` they make (`settings_from_options`);
- `marker` -- the marker ``claim(text, *, source=None, family=None)``, checked at collection
  (`parse_claim_mark`), and the family a claim belongs to (`family_name`);
- `studies` -- a study is a folder whose ``study.py`` sets ``STUDY = Study(...)`` (its default
  model, threshold rows, the data and SAE names it reads); the plugin finds each test's study
  and gives each claim a stable identity (`claim_identity`);
- `thresholds` -- each study's threshold row (`resolve_row`, `thresholds_for`), every name on the
  command line checked, the claims a row lists as refuted run as strict xfails;
- `fixtures` -- fixtures ``claims_settings`` (session, a `ClaimsSettings`) and ``claim_seed``
  (per test, derived from the base seed and the claim's identity by `derive_seed`, so ``-k``
  slices and runs from any folder reproduce the full run);
- `state` -- per-item state under `pytest.StashKey`s: `CLAIM_KEY`, `FAMILY_KEY`,
  `EVIDENCE_KEY`, `PHASES_KEY`, `RESULT_KEY`; the session's state under `SESSION_KEY` and the
  settings under `SETTINGS_KEY` on ``config.stash``;
- `outcomes` -- a test's outcome from its phases (`PhaseResult`, `claim_outcome`,
  `json_safe_params`);
- `items` -- the per-test hooks, from collection (families counted) through the call
  (evidence recorded) to teardown (the `ClaimResult`);
- `scheduling` -- under ``-n N --dist loadgroup`` one worker runs each study's tests (its model
  and session fixtures built once);
- `hosts` -- gateways on other hosts (``--tx ssh=...``) probed before their workers start: one
  not reached is dropped with an error naming it, one with another harness, fixtures or
  numeric packages refused;
- `workers` -- a claim whose xdist worker died is failed with the worker and how it ended
  (not run again, not missing from the report); tests left without a worker named in a note;
- `transport` -- the claim carried on its teardown report (in-process, from pytest-xdist
  workers, into JUnit XML) and collected into the session's state;
- `live` -- the live status line of long work (`harness.progress`) in the terminal, ``--claims-progress``;
- `session` -- configure, session start and, at session end, ``report.json`` (atomic) in the
  report directory, the baseline comparison and a Rich table in the terminal summary.

The hooks are thin; the work is in pure functions (`parse_claim_mark`, `derive_seed`,
`settings_from_options`, `claim_outcome`, `json_safe_params`, `reproduce_command`). This package
imports neither torch, transformers nor numpy; Rich is imported only to render the summary.
"""

from __future__ import annotations

from .fixtures import claim_seed, claims_settings, derive_seed
from .items import (
    pytest_collect_file,
    pytest_collection_finish,
    pytest_collection_modifyitems,
    pytest_xdist_node_collection_finished,
    pytest_pycollect_makeitem,
    pytest_runtest_call,
    pytest_runtest_makereport,
    pytest_runtest_setup,
)
from .marker import MARKER_HELP, ClaimMark, ClaimMarkerError, family_name, parse_claim_mark
from .options import (
    DEFAULT_REPORT_DIR,
    ClaimsOptionError,
    ClaimsSettings,
    pytest_addoption,
    settings_from_options,
)
from .outcomes import PhaseResult, claim_outcome, json_safe_params
from .session import (
    TERMINAL_WIDTH,
    pytest_configure,
    pytest_sessionfinish,
    pytest_sessionstart,
    pytest_terminal_summary,
    reproduce_command,
)
from .state import (
    CLAIM_KEY,
    EVIDENCE_KEY,
    FAMILY_KEY,
    PHASES_KEY,
    RESULT_KEY,
    SESSION_KEY,
    SETTINGS_KEY,
)
from .hosts import pytest_xdist_setupnodes
from .scheduling import pytest_xdist_make_scheduler
from .studies import Study, StudyError, claim_identity, study_of_path
from .thresholds import Choice, resolve_row, threshold_row, thresholds_for
from .transport import REGISTRY_PROPERTY, RESULT_PROPERTY

__all__ = [
    "Study",
    "StudyError",
    "Choice",
    "resolve_row",
    "study_of_path",
    "thresholds_for",
    "threshold_row",
    "claim_identity",
    "ClaimsSettings",
    "ClaimMark",
    "ClaimMarkerError",
    "ClaimsOptionError",
    "PhaseResult",
    "CLAIM_KEY",
    "EVIDENCE_KEY",
    "PHASES_KEY",
    "RESULT_KEY",
    "FAMILY_KEY",
    "family_name",
    "SETTINGS_KEY",
    "SESSION_KEY",
    "parse_claim_mark",
    "derive_seed",
    "settings_from_options",
    "claim_outcome",
    "json_safe_params",
    "reproduce_command",
]
