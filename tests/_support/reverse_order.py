"""A pytest plugin for the order tests: runs the collected tests in reverse order
(``-p reverse_order`` with this folder on PYTHONPATH)."""

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    items.reverse()
