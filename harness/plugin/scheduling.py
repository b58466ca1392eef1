"""Claims across pytest-xdist workers, grouped by study.

``pytest claims/ -n 2 --dist loadgroup`` sends every test of one study to one worker, so each
study's model and session fixtures (maps, grids, generations) are built once, not once per
worker that happens to draw one of its tests. The group is the study's name: an explicit
``@pytest.mark.xdist_group(NAME)`` on a test wins; every other test of a study is marked
``xdist_group(STUDY)`` at collection (`harness.plugin.items`).

pytest-xdist's own loadgroup scheduler reads the group from an ``@NAME`` suffix its workers add
to each node id; under pytest 9, whose node ids no longer come from the attribute it sets, no
suffix appears and every test becomes its own group. `pytest_xdist_make_scheduler` here keeps
the suffix when there is one and otherwise groups by the study whose folder holds the test.

Under ``--dist loadgroup``, ``loadscope`` and ``loadfile``, a test whose worker died is not put
back in its group's queue (xdist's own schedulers of these modes run it again on the
replacement worker, which dies again until ``--max-worker-restart`` is spent; ``--dist load``
already drops it): it is failed with the reason (`harness.plugin.workers`) and the group's other
tests run on the replacement.
"""

from __future__ import annotations

from typing import Any

import pytest

from .studies import StudyError, study_of_path


def remove_node_without_rerun(sched: Any, node: Any) -> str | None:
    """`LoadScopeScheduling.remove_node` for scheduler `sched`, except that the test the node
    was running when it died (its first test not completed) is marked completed before the
    rest of its work goes back to the queue. Returns that test's node id (None when the node
    had nothing pending: it finished, or the session is shutting down)."""
    workload = sched.assigned_work.pop(node)
    if not sched._pending_of(workload):
        return None
    crashed = next(nodeid for unit in workload.values() for nodeid, done in unit.items() if not done)
    for unit in workload.values():
        if crashed in unit:
            unit[crashed] = True
    sched.workqueue.update({scope: unit for scope, unit in workload.items() if not all(unit.values())})
    for other in sched.assigned_work:
        sched._reschedule(other)
    return crashed


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``--dist loadgroup``, xdist's loadgroup scheduler whose group of a test without an
    ``@NAME`` suffix is its study (``study:NAME``); under ``loadscope`` and ``loadfile`` xdist's
    own; each of the three with `remove_node_without_rerun`. None otherwise (xdist's own
    scheduler)."""
    dist = config.getvalue("dist")
    if dist not in ("loadgroup", "loadscope", "loadfile"):
        return None
    from xdist.scheduler import LoadFileScheduling, LoadGroupScheduling, LoadScopeScheduling

    base = {"loadgroup": LoadGroupScheduling, "loadscope": LoadScopeScheduling, "loadfile": LoadFileScheduling}[dist]

    class NoRerunOfCrashed(base):  # type: ignore[misc, valid-type]
        def remove_node(self, node: Any) -> str | None:
            return remove_node_without_rerun(self, node)

    if dist != "loadgroup":
        return NoRerunOfCrashed(config, log)
    root = config.rootpath

    class StudyGroups(NoRerunOfCrashed):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            if scope != nodeid:
                return scope
            try:
                study = study_of_path(root / nodeid.split("::", 1)[0])
            except StudyError:
                return nodeid
            return f"study:{study.name}" if study is not None else nodeid

    return StudyGroups(config, log)
