"""Setup shared by the studies: each study's threshold row is resolved from the command line
(`claims.thresholds`) once collection is done, before any fixture runs, so a model without a
row is one usage error at the start of the run, not one per test after its model loaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from claims.thresholds import CLAIMS_DIR, study, studies, thresholds_for


def _study_of(path: Path) -> str | None:
    """The study whose folder holds `path` (``claims/<study>/...``), if it has a threshold table."""
    try:
        parts = Path(path).resolve().relative_to(CLAIMS_DIR).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 and study(parts[0]) is not None else None


def _check_option(config: pytest.Config) -> None:
    """``--claims-thresholds STUDY=ROW`` names a study and one of its rows."""
    from harness.plugin import SETTINGS_KEY

    for name, row in config.stash[SETTINGS_KEY].thresholds.items():
        if study(name) is None:
            raise pytest.UsageError(f"--claims-thresholds {name}={row}: no study {name!r} with a threshold "
                                    f"table (studies: {studies()})")


def _check(config: pytest.Config, paths) -> None:
    """Resolve the threshold row of each study that holds one of `paths` (the selected tests)
    or that ``--claims-thresholds`` names: the first that has none raises its usage error."""
    from harness.plugin import SETTINGS_KEY

    _check_option(config)
    named = set(config.stash[SETTINGS_KEY].thresholds)
    selected = {s for s in (_study_of(path) for path in paths) if s is not None}
    for name in sorted(selected | named):
        thresholds_for(config, name)


def pytest_collection_finish(session: pytest.Session) -> None:
    """A study with selected tests whose model has no threshold row ends the run as a usage
    error (exit code 4) before any model loads; so does an unknown ``--claims-thresholds``.
    Under xdist the controller checks (below): a worker's usage error would crash it."""
    if hasattr(session.config, "workerinput"):
        return
    _check(session.config, (item.path for item in session.items))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids) -> None:
    """`pytest_collection_finish` for ``-n N``: on the controller, from a worker's selected ids."""
    config = node.config
    _check(config, (Path(config.rootpath) / nodeid.split("::")[0] for nodeid in ids))


def _studies_in_args(config: pytest.Config) -> list[str]:
    """The studies the command line's paths hold or lie in (all of them for ``claims/``)."""
    out = []
    for arg in config.args:
        path = (Path(config.invocation_params.dir) / arg.split("::")[0]).resolve()
        for name in studies():
            folder = CLAIMS_DIR / name
            if (path == folder or folder in path.parents or path in folder.parents) and name not in out:
                out.append(name)
    return out


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Each study's threshold row and why (a model without one: the usage error follows)."""
    lines = []
    for name in _studies_in_args(config):
        try:
            lines += thresholds_for(config, name).header()
        except pytest.UsageError:
            lines.append(f"{name} thresholds: no row for this model")
    return lines
