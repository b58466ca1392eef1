"""The live status line: `harness.progress` shown in pytest's terminal while a claim runs.

While a test (or a fixture it sets up, such as a fixture model's build) has a progress task
open, one line of pytest's terminal shows it, prefixed by the study (the folder of the test
file), e.g. ``tacgen: sweep encoder.12.resid_post 320/500 examples``. The line is rewritten in
place and, when the last task closes, erased and replaced by what pytest had written on that
line (the file name and its dots), so pytest's own output reads as without it.

``--claims-progress auto`` (the default) shows the line only where someone can watch it: not
under ``-q``, not when the output is not a terminal, and not on xdist workers (their output
reaches no terminal). ``on`` forces it (for a terminal pytest does not recognise as one),
``off`` silences it. The line is drawn outside pytest's output capture, and it never touches a
number: the status is text built from counters (see `harness.progress`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from harness import progress

__all__ = ["PROGRESS_MODES", "LiveStatus", "LiveHooks", "enabled", "study_of"]

PROGRESS_MODES = ("auto", "on", "off")


def enabled(config: pytest.Config) -> bool:
    """Whether this process shows the live line (see the module docstring for the rule)."""
    mode = config.getoption("claims_progress", "auto")
    if mode == "off" or hasattr(config, "workerinput"):
        return False
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return False
    if mode == "on":
        return True
    return config.get_verbosity() >= 0 and bool(getattr(reporter, "isatty", False))


class LiveStatus:
    """A `harness.progress` sink that draws the status on pytest's current terminal line."""

    def __init__(self, config: pytest.Config, reporter: Any) -> None:
        self._capture = config.pluginmanager.get_plugin("capturemanager")
        self._tw = reporter._tw  # pytest's TerminalWriter (the reporter's public `write` appends only)
        self.study = ""
        self._saved: str | None = None  # what pytest had written on the line before the status covered it

    def _uncaptured(self) -> contextlib.AbstractContextManager:
        if self._capture is None:
            return contextlib.nullcontext()
        return self._capture.global_and_fixture_disabled()

    def __call__(self, line: str | None) -> None:
        if line is None:
            self.clear()
            return
        width = max(20, self._tw.fullwidth - 1)
        text = f"{self.study}: {line}" if self.study else line
        if len(text) > width:
            text = text[: width - 1] + "…"
        with self._uncaptured():
            if self._saved is None:
                self._saved = getattr(self._tw, "_current_line", "")
            self._tw.write("\r" + text.ljust(width), flush=True)
            self._set_current(self._saved)

    def clear(self) -> None:
        """Erase the status and put back what pytest had on the line."""
        if self._saved is None:
            return
        saved, self._saved = self._saved, None
        with self._uncaptured():
            self._tw.write("\r" + " " * max(20, self._tw.fullwidth - 1) + "\r" + saved, flush=True)
            self._set_current(saved)

    def _set_current(self, text: str) -> None:
        # The writer measures the current line to right-align pytest's "[ 42%]"; the status must
        # not count towards it.
        if hasattr(self._tw, "_current_line"):
            self._tw._current_line = text


class LiveHooks:
    """The hooks of the live line, registered by the plugin's ``pytest_configure`` as
    ``claims-live``: install after the terminal reporter exists, name each test's study, erase
    at each test's end and at the session's end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.live: LiveStatus | None = None
        self.previous: progress.Sink | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if enabled(self.config):
            self.live = LiveStatus(self.config, self.config.pluginmanager.get_plugin("terminalreporter"))
            self.previous = progress.set_sink(self.live)

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        if self.live is not None:
            self.live.study = study_of(location[0])

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        if self.live is not None:
            self.live.clear()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.live is not None:
            self.live.clear()
            progress.set_sink(self.previous)
            self.live = None


def study_of(path: str) -> str:
    """The study a test file belongs to: the name of its folder (``claims/tacgen/test_x.py`` ->
    ``tacgen``), or nothing for a file at the root."""
    parts = path.replace("\\", "/").split("/")
    return parts[-2] if len(parts) > 1 else ""
