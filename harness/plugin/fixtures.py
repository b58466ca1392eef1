"""The fixtures a claim test asks for: ``claims_settings`` and ``claim_seed``.

`derive_seed` gives each test its seed from the run's base seed and the claim's stable identity
(`harness.plugin.studies.claim_identity`: its file relative to its study's folder, its name and
parameters), so a ``-k`` slice, a run from another folder and an xdist run get the same seeds.
"""

from __future__ import annotations

import hashlib

import pytest

from .options import ClaimsSettings
from .state import SETTINGS_KEY


def derive_seed(base: int, identity: str) -> int:
    """A 32-bit seed for one test, from the run's base seed and the claim's identity.

    Example: ``derive_seed(0, "tacgen/test_steering.py::test_a[layer12]")``. It does not depend
    on which other tests run, so a ``-k`` slice gets the same seeds as the full run.
    """
    digest = hashlib.sha256(f"{int(base)}\x00{identity}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


@pytest.fixture(scope="session")
def claims_settings(pytestconfig: pytest.Config) -> ClaimsSettings:
    """The run's `ClaimsSettings` (seed, resamples, model specs, data paths, report dir)."""
    return pytestconfig.stash[SETTINGS_KEY]


def without_group(nodeid: str) -> str:
    """A node id without the ``@GROUP`` suffix pytest-xdist's ``--dist loadgroup`` appends on a
    worker (``claims/x.py::test_a@recall`` -> ``claims/x.py::test_a``); a parameter id such as
    ``[fixture:x@seed=1]`` ends in ``]`` and keeps its ``@``."""
    head, sep, tail = nodeid.rpartition("@")
    return head if sep and tail and not any(c in tail for c in "[]:/") else nodeid


def plain_nodeid(item: pytest.Item) -> str:
    """``item.nodeid`` as a serial run has it (`without_group`): identities, seeds, families and
    the report use it."""
    return without_group(item.nodeid)


def item_identity(item: pytest.Item) -> str:
    """The item's stable identity (computed once, kept on its stash)."""
    from .studies import claim_identity
    from .state import IDENTITY_KEY

    identity = item.stash.get(IDENTITY_KEY, None)
    if identity is None:
        identity = claim_identity(item.path, plain_nodeid(item))
        item.stash[IDENTITY_KEY] = identity
    return identity


@pytest.fixture
def claim_seed(request: pytest.FixtureRequest, claims_settings: ClaimsSettings) -> int:
    """This test's seed: `derive_seed(--claims-seed, identity)`, the same in any ``-k`` slice and
    from any folder. Inside a claim every harness bootstrap and seeded draw takes it by default."""
    return derive_seed(claims_settings.seed, item_identity(request.node))
