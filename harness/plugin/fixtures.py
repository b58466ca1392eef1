"""The fixtures a claim test asks for: ``claims_settings`` and ``claim_seed``.

`derive_seed` gives each test its seed from the run's base seed and the test's node id, so a
``-k`` slice reproduces the full run.
"""

from __future__ import annotations

import hashlib

import pytest

from .options import ClaimsSettings
from .state import SETTINGS_KEY


def derive_seed(base: int, nodeid: str) -> int:
    """A 32-bit seed for one test, from the run's base seed and the test's node id.

    Example: ``derive_seed(0, "claims/test_x.py::test_a[layer12]")``. It does not depend on
    which other tests run, so a ``-k`` slice gets the same seeds as the full run.
    """
    digest = hashlib.sha256(f"{int(base)}\x00{nodeid}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


@pytest.fixture(scope="session")
def claims_settings(pytestconfig: pytest.Config) -> ClaimsSettings:
    """The run's `ClaimsSettings` (seed, resamples, model specs, data paths, report dir)."""
    return pytestconfig.stash[SETTINGS_KEY]


@pytest.fixture
def claim_seed(request: pytest.FixtureRequest, claims_settings: ClaimsSettings) -> int:
    """This test's seed: `derive_seed(--claims-seed, node id)`, the same in any ``-k`` slice."""
    return derive_seed(claims_settings.seed, request.node.nodeid)
