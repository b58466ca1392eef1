"""The check shared by the execution tests: after each test, no process it started remains."""

from __future__ import annotations

import os
import time

import pytest

from harness.execution.procs import descendants


@pytest.fixture(autouse=True)
def no_leftovers():
    """After each test, no process started by it may remain (1 s of grace for the kernel)."""
    yield
    end = time.monotonic() + 1.0
    while descendants(os.getpid()) and time.monotonic() < end:
        time.sleep(0.02)
    assert descendants(os.getpid()) == []
