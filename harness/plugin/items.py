"""The per-test hooks: each claim test from collection to its `ClaimResult`.

At collection the ``claim`` marker is checked and families are counted (before ``-k`` / ``-m``
deselect); around the call the test's evidence is recorded under its family's level; at
teardown its phases become a `ClaimResult`, attached to the teardown report (see `transport`).
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.verdicts.families import Family, claim_correction, judging
from harness.verdicts.evidence import recording
from harness.reports import ClaimResult

from .fixtures import derive_seed
from .marker import ClaimMark, ClaimMarkerError, family_name, parse_claim_mark
from .outcomes import PhaseResult, _short_message, claim_outcome, json_safe_params
from .state import CLAIM_KEY, EVIDENCE_KEY, FAMILY_KEY, PHASES_KEY, RESULT_KEY, SETTINGS_KEY
from .transport import _claim_properties


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Any:
    result = yield
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, pytest.Function):
            marker = item.get_closest_marker("claim")
            if marker is None:
                continue
            try:
                item.stash[CLAIM_KEY] = parse_claim_mark(marker.args, marker.kwargs)
            except ClaimMarkerError as exc:
                raise pytest.Collector.CollectError(f"{item.nodeid}: {exc}") from exc
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # Families are counted over everything collected, before -k / -m deselect (this hook runs
    # first), so a slice judges each claim at the same level as the full run.
    settings = config.stash[SETTINGS_KEY]
    names: dict[pytest.Item, str] = {}
    for item in items:
        mark = item.stash.get(CLAIM_KEY, None)
        if mark is not None:
            names[item] = family_name(item.nodeid, mark)
    sizes: dict[str, int] = {}
    for name in names.values():
        sizes[name] = sizes.get(name, 0) + 1
    for item, name in names.items():
        item.stash[FAMILY_KEY] = Family(name, size=sizes[name], correction=settings.correction)


def _family_of(item: pytest.Item) -> Family | None:
    """The item's family (counted at collection; a claim marker added later is a family of one)."""
    family = item.stash.get(FAMILY_KEY, None)
    if family is None:
        mark = _claim_of(item)
        settings = item.config.stash.get(SETTINGS_KEY, None)
        if mark is None or settings is None:
            return None
        family = Family(family_name(item.nodeid, mark), size=1, correction=settings.correction)
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


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # A claim marker added after collection (item.add_marker) is checked here: a bad one is an
    # error in setup, with the same message a decorator would get at collection.
    _claim_of(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    try:
        family = _family_of(item)
    except ClaimMarkerError:
        family = None
    with recording() as records, judging(family):
        try:
            return (yield)
        finally:
            item.stash[EVIDENCE_KEY] = tuple(records)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
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
    if rep.when == "teardown":
        claim = _claim_result(item)
        if claim is not None:
            rep.user_properties.extend(_claim_properties(claim))
    return rep


def _claim_result(item: pytest.Item) -> ClaimResult | None:
    settings = item.config.stash.get(SETTINGS_KEY, None)
    try:
        mark = _claim_of(item)
    except ClaimMarkerError:
        return None  # already reported as an error in setup
    if mark is None or settings is None:
        return None
    phases = item.stash.get(PHASES_KEY, [])
    outcome, message = claim_outcome(phases)
    callspec = getattr(item, "callspec", None)
    evidence = item.stash.get(EVIDENCE_KEY, ())
    family = _family_of(item)
    correction, level = claim_correction(family, evidence)
    claim = ClaimResult(
        nodeid=item.nodeid,
        text=mark.text,
        source=mark.source,
        params=json_safe_params(callspec.params if callspec is not None else {}),
        outcome=outcome,
        message=message,
        duration_s=sum(p.duration_s for p in phases),
        seed=derive_seed(settings.seed, item.nodeid),
        evidence=evidence,
        family=family.name if family is not None else "",
        family_size=family.size if family is not None else 1,
        correction=correction,
        level=level,
    )
    item.stash[RESULT_KEY] = claim
    return claim
