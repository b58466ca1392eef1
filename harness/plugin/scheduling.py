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
"""

from __future__ import annotations

from typing import Any

import pytest

from .studies import StudyError, study_of_path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``--dist loadgroup``, xdist's loadgroup scheduler whose group of a test without an
    ``@NAME`` suffix is its study (``study:NAME``); None otherwise (xdist's own scheduler)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    root = config.rootpath

    class StudyGroups(LoadGroupScheduling):
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
