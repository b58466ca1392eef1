"""Shared setup of the harness's own tests.

The tests run many tiny forward passes; on a 2-core machine, torch's default of one OpenMP
thread per core makes each tiny op wait on thread hand-offs (measured: ~16 ms instead of a few
microseconds per linear layer under load), so the test process uses one thread. Set before
torch is imported; if a plugin imported it already, the setting is applied directly.
"""

import os
import sys

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
if "torch" in sys.modules:
    sys.modules["torch"].set_num_threads(1)

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Fixture builds (a null twin) go to a temporary cache, never the user's."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("claims-cache")
        mp.setenv("CLAIMS_CACHE_DIR", str(path))
        mp.delenv("CLAIMS_FIXTURES_DIR", raising=False)
        yield path


def pytest_collection_modifyitems(config, items):
    """Files that hold a ``slow`` test run first (otherwise in collection order). Under CI's
    ``-n 2 --dist loadfile`` a file runs whole on one worker; the long files (null twins, recipe
    replays, real models) sit at the end of the alphabet (tests/studies), so one worker finished
    them while the other had nothing left. Longest first keeps both busy to the end: the studies'
    files (each runs a study on a null twin or a real setting in a child pytest), then the other
    files with a slow test, then the rest."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    studies = os.path.join("tests", "studies", "")
    items.sort(key=lambda item: (item.path not in slow, studies not in str(item.path)))
