"""Shared test configuration: the `pytester` fixture for the plugin tests (nothing torch here)."""

pytest_plugins = ["pytester"]
