"""How a claim travels from its test to the session's report: as user properties of its
teardown report.

`claim_properties` writes the claim (and the models and data sets registered so far) as
properties; `_ClaimCollector` reads them back into the session's state, in-process or at the
pytest-xdist controller, and keeps the collection order the report lists claims in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from harness.verdicts.evidence import (
    register_dataset,
    register_model,
    registered_datasets,
    registered_models,
)
from harness.reports import ClaimResult, claim_from_dict

from .fixtures import plain_nodeid, without_group
from .state import SESSION_KEY


# The claim travels on its teardown report: in-process, under pytest-xdist from a worker to the
# controller (reports are serialized, their user_properties included), and into JUnit XML,
# whose <properties> show the readable ones. One path for all three, so a serial run and an
# `-n 2` run write the same report.
RESULT_PROPERTY = "claims_result_json"
REGISTRY_PROPERTY = "claims_registry_json"
RUN_NOTES_PROPERTY = "claims_run_notes_json"   # notes recorded outside any claim, before this one


def claim_properties(claim: ClaimResult, *, run_notes: Sequence[str] = ()) -> list[tuple[str, str]]:
    props = [("claim", claim.text), ("claim_verdict", claim.outcome)]
    if claim.source:
        props.append(("claim_source", claim.source))
    if claim.params:
        props.append(("claim_params", json.dumps(dict(claim.params), sort_keys=True)))
    for i, ev in enumerate(claim.evidence):
        held = "held" if ev.held else "NOT HELD"
        props.append((f"claim_evidence_{i}", f"{ev.statistic or 'estimate'} = {_fmt_number(ev.value)} "
                                             f"[{_fmt_number(ev.ci_low)}, {_fmt_number(ev.ci_high)}] n={ev.n} "
                                             f"({ev.method}): {held}: {ev.expectation}"))
    props.append((RESULT_PROPERTY, json.dumps(claim.to_dict(), allow_nan=False, default=str)))
    props.append((REGISTRY_PROPERTY, json.dumps({
        "models": [m.to_dict() for m in registered_models()],
        "datasets": [d.to_dict() for d in registered_datasets()]})))
    if run_notes:
        props.append((RUN_NOTES_PROPERTY, json.dumps(list(run_notes))))
    return props


def _fmt_number(x: float | None) -> str:
    return "nan" if x is None else f"{x:.4g}"


class _ClaimCollector:
    """Gathers claims from teardown reports into the session's state (own tests, or a
    worker's under xdist, whose reports arrive serialized at the controller)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.order: dict[str, int] = {}  # collection order: the report lists claims in it

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.order = {plain_nodeid(item): i for i, item in enumerate(session.items)}

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        if not self.order:
            self.order = {without_group(nodeid): i for i, nodeid in enumerate(ids)}

    def in_collection_order(self, claims: Sequence[ClaimResult]) -> list[ClaimResult]:
        last = len(self.order)
        return sorted(claims, key=lambda c: self.order.get(c.nodeid, last))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when not in ("teardown", "???"):   # "???": xdist's report of a worker that died
            return
        props = dict(report.user_properties)
        state = self.config.stash.get(SESSION_KEY, None)
        if RESULT_PROPERTY not in props or state is None:
            return
        state.results.append(claim_from_dict(json.loads(props[RESULT_PROPERTY])))
        if RUN_NOTES_PROPERTY in props:
            state.run_notes.extend(json.loads(props[RUN_NOTES_PROPERTY]))
        if REGISTRY_PROPERTY in props:
            registry = json.loads(props[REGISTRY_PROPERTY])
            for record in registry["models"]:
                register_model(record.pop("name"), **record)
            for record in registry["datasets"]:
                register_dataset(record.pop("name"), **record)
