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
