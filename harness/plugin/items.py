"""The per-test hooks: each claim test from collection to its `ClaimResult`.

At collection the ``claim`` marker is checked and families are counted (before ``-k`` / ``-m``
deselect); around the call the test's evidence is recorded under its family's level; from the
start of setup to the end of teardown its peak memory is measured and the run notes recorded
(`harness.resources`); at teardown its phases become a `ClaimResult`, attached to the teardown
report (see `transport`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from harness.verdicts.families import Family, claim_correction, judging
from harness.verdicts.evidence import recording
from harness.reports import ClaimResult

from harness.verdicts.context import run_context
from harness.resources import PeakMemory, start_span, take_notes

from .fixtures import derive_seed, item_identity, plain_nodeid
from .marker import ClaimMark, ClaimMarkerError, family_name, parse_claim_mark
from .outcomes import NO_EVIDENCE, PhaseResult, _short_message, claim_outcome, json_safe_params
from .state import CLAIM_KEY, EVIDENCE_KEY, FAMILY_KEY, PHASES_KEY, RESULT_KEY, SETTINGS_KEY
from .studies import StudyError, study_of_path
from .thresholds import check_names, mark_refuted, register
from .transport import claim_properties
from .workers import started_properties

_STUDY_ERROR = pytest.StashKey[StudyError]()   # a bad study declaration, raised when collection finishes
_CHECKED = pytest.StashKey[bool]()              # the controller checked the names (once, not per worker)


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Any:
    result = yield
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, pytest.Function):
            _group_by_study(item)
            marker = item.get_closest_marker("claim")
            if marker is None:
                continue
            try:
                item.stash[CLAIM_KEY] = parse_claim_mark(marker.args, marker.kwargs)
            except ClaimMarkerError as exc:
                raise pytest.Collector.CollectError(f"{item.nodeid}: {exc}") from exc
    return result


def _group_by_study(item: pytest.Function) -> None:
    """Mark a test of a study ``xdist_group(STUDY)`` (unless it names a group itself): under
    ``-n N --dist loadgroup`` one worker runs a study's tests, so each study's model and its
    session fixtures are built once, not once per worker."""
    if item.get_closest_marker("xdist_group") is not None:
        return
    try:
        study = study_of_path(item.path)
    except StudyError:   # reported once collection finishes
        return
    if study is not None:
        item.add_marker(pytest.mark.xdist_group(study.name))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # Families are counted over everything collected, before -k / -m deselect (this hook runs
    # first), so a slice judges each claim at the same level as the full run.
    settings = config.stash[SETTINGS_KEY]
    names: dict[pytest.Item, str] = {}
    for item in items:
        mark = item.stash.get(CLAIM_KEY, None)
        if mark is not None:
            names[item] = family_name(plain_nodeid(item), mark)
    sizes: dict[str, int] = {}
    for name in names.values():
        sizes[name] = sizes.get(name, 0) + 1
    for item, name in names.items():
        item.stash[FAMILY_KEY] = Family(name, size=sizes[name], correction=settings.correction)
    for item in items:
        item_identity(item)
    mark_refuted(items, config)


def pytest_collect_file(file_path: Any, parent: pytest.Collector) -> None:
    """Register the study (the nearest ``study.py`` that sets ``STUDY``) of every file pytest
    looks at, before its test module is imported: a module that parametrizes by the study's
    threshold row at import finds the study by name."""
    if file_path.suffix != ".py" or parent.config.stash.get(_STUDY_ERROR, None) is not None:
        return
    try:
        study = study_of_path(file_path)
        if study is not None:
            register(parent.config, study)
    except StudyError as exc:   # ends the run as one usage error once collection finishes
        parent.config.stash[_STUDY_ERROR] = exc


def pytest_collection_finish(session: pytest.Session) -> None:
    """Every name on the command line is checked, and the row of each study with selected tests
    resolved, once collection finishes and before any fixture runs: a bad one ends the run as one
    usage error (exit code 4). Under xdist the controller checks (below): a worker's usage error
    would crash it."""
    if hasattr(session.config, "workerinput"):
        return
    error = session.config.stash.get(_STUDY_ERROR, None)
    if error is not None:
        raise error
    check_names(session.config, _selected_studies(session.config, (item.path for item in session.items)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """`pytest_collection_finish` for ``-n N``, on the controller, from the first worker's selected
    ids (every worker collects the same tests)."""
    config = node.config
    if config.stash.get(_CHECKED, False):
        return
    config.stash[_CHECKED] = True
    selected = _selected_studies(config, {config.rootpath / nodeid.split("::")[0] for nodeid in ids})
    for study in selected:
        register(config, study)
    check_names(config, selected)


def _selected_studies(config: pytest.Config, paths: Any) -> list:
    """The studies the files at `paths` belong to (each once)."""
    found = {}
    for path in set(paths):
        study = study_of_path(path)
        if study is not None:
            found[study.name] = study
    return list(found.values())


def _family_of(item: pytest.Item) -> Family | None:
    """The item's family (counted at collection; a claim marker added later is a family of one)."""
    family = item.stash.get(FAMILY_KEY, None)
    if family is None:
        mark = _claim_of(item)
        settings = item.config.stash.get(SETTINGS_KEY, None)
        if mark is None or settings is None:
            return None
        family = Family(family_name(plain_nodeid(item), mark), size=1, correction=settings.correction)
        item.stash[FAMILY_KEY] = family
    return family


def _claim_of(item: pytest.Item) -> ClaimMark | None:
    """The item's claim (parsed at collection, or now for a marker added later)."""
    mark = item.stash.get(CLAIM_KEY, None)
    if mark is None:
        marker = item.get_closest_marker("claim")
        if marker is None:
            return None
        mark = parse_claim_mark(marker.args, marker.kwargs)
        item.stash[CLAIM_KEY] = mark
    return mark


_SETUP_CONTEXT = pytest.StashKey[contextlib.ExitStack]()
_MEMORY_SPAN = pytest.StashKey[Any]()                 # the claim's peak-memory measurement in progress
_MEMORY_KEY = pytest.StashKey[PeakMemory]()           # ... and its result, read at teardown
_NOTES_KEY = pytest.StashKey[tuple[str, ...]]()       # the run notes recorded while the claim ran
_BEFORE_KEY = pytest.StashKey[tuple[str, ...]]()      # ... and those recorded since the last claim, outside any


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # A claim marker added after collection (item.add_marker) is checked here: a bad one is an
    # error in setup, with the same message a decorator would get at collection.
    settings = item.config.stash.get(SETTINGS_KEY, None)
    if _claim_of(item) is None or settings is None:
        return
    item.stash[_BEFORE_KEY] = take_notes()   # notes from before the claim are not the claim's, but the run's
    item.stash[_MEMORY_SPAN] = start_span()   # setup, call and teardown: the span its duration covers
    # A claim's fixtures (session fixtures included) take the run's base seed and resamples, the
    # same whichever claim happens to set them up first; closed when the setup report is made.
    stack = contextlib.ExitStack()
    stack.enter_context(run_context(seed=settings.seed, resamples=settings.resamples))
    item.stash[_SETUP_CONTEXT] = stack


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    try:
        family = _family_of(item)
    except ClaimMarkerError:
        family = None
    with recording() as records, judging(family), _claim_context(item):
        try:
            return (yield)
        finally:
            item.stash[EVIDENCE_KEY] = tuple(records)


def _claim_context(item: pytest.Item) -> Any:
    """A claim's call runs with its own seed and the run's resamples in force (every harness
    bootstrap and seeded draw takes them by default); a plain test runs with none."""
    settings = item.config.stash.get(SETTINGS_KEY, None)
    try:
        mark = _claim_of(item)
    except ClaimMarkerError:
        mark = None
    if mark is None or settings is None:
        return contextlib.nullcontext()
    identity = item_identity(item)
    return run_context(seed=derive_seed(settings.seed, identity), resamples=settings.resamples, identity=identity)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    if call.when == "setup" and _SETUP_CONTEXT in item.stash:
        item.stash[_SETUP_CONTEXT].close()
        del item.stash[_SETUP_CONTEXT]
    if call.when == "teardown" and _MEMORY_SPAN in item.stash:   # teardown has finished
        item.stash[_MEMORY_KEY] = item.stash[_MEMORY_SPAN].stop()
        del item.stash[_MEMORY_SPAN]
        item.stash[_NOTES_KEY] = take_notes()
    rep = yield
    message = ""
    if rep.outcome != "passed":
        exc = call.excinfo
        if exc is not None and rep.outcome == "failed" and not isinstance(exc.value, AssertionError):
            message = f"{exc.typename}: {exc.value}"
        elif exc is not None:
            message = str(exc.value)
        else:
            message = rep.longreprtext
    wasxfail = getattr(rep, "wasxfail", None)
    if wasxfail is not None:
        message = wasxfail or "xfail"
    item.stash.setdefault(PHASES_KEY, []).append(
        PhaseResult(when=rep.when, outcome=rep.outcome, duration_s=float(rep.duration),
                    message=_short_message(message), xfail=wasxfail is not None)
    )
    if rep.when == "setup" and rep.passed and hasattr(item.config, "workerinput"):
        claim = _claim_result(item, keep=False)   # reaches the controller even if this worker dies
        if claim is not None:
            rep.user_properties.extend(started_properties(claim))
    if rep.when == "teardown":
        claim = _claim_result(item)
        if claim is not None:
            rep.user_properties.extend(claim_properties(claim, run_notes=item.stash.get(_BEFORE_KEY, ())))
            if claim.message == NO_EVIDENCE and rep.passed:  # pytest counts it as the error it is
                rep.outcome, rep.longrepr = "failed", claim.message
    return rep


def _claim_result(item: pytest.Item, *, keep: bool = True) -> ClaimResult | None:
    """The item's claim from its phases so far (kept on its stash unless `keep` is False)."""
    settings = item.config.stash.get(SETTINGS_KEY, None)
    try:
        mark = _claim_of(item)
    except ClaimMarkerError:
        return None  # already reported as an error in setup
    if mark is None or settings is None:
        return None
    phases = item.stash.get(PHASES_KEY, [])
    outcome, message = claim_outcome(phases, evidence=item.stash.get(EVIDENCE_KEY, ()), check=mark.check)
    callspec = getattr(item, "callspec", None)
    evidence = item.stash.get(EVIDENCE_KEY, ())
    family = _family_of(item)
    correction, level = claim_correction(family, evidence)
    claim = ClaimResult(
        nodeid=plain_nodeid(item),
        text=mark.text,
        source=mark.source,
        params=json_safe_params(callspec.params if callspec is not None else {}),
        outcome=outcome,
        message=message,
        duration_s=sum(p.duration_s for p in phases),
        seed=derive_seed(settings.seed, item_identity(item)),
        identity=item_identity(item),
        evidence=evidence,
        check=mark.check,
        family=family.name if family is not None else "",
        family_size=family.size if family is not None else 1,
        correction=correction,
        level=level,
        memory=item.stash.get(_MEMORY_KEY, None),
        notes=item.stash.get(_NOTES_KEY, ()),
    )
    if keep:
        item.stash[RESULT_KEY] = claim
    return claim
