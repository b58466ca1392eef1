"""Shared by the arith study's unit tests: the fixture model."""

from __future__ import annotations

import pytest

from harness.models.load import load_model


@pytest.fixture(scope="module")
def arith():
    return load_model("fixture:arith")
