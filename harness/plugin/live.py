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

__all__ = ["PROGRESS_MODES", "LiveStatus", "install", "uninstall", "enabled"]

PROGRESS_MODES = ("auto", "on", "off")
LIVE_KEY = pytest.StashKey["LiveStatus"]()


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


def install(config: pytest.Config) -> None:
    """Install the live line as the progress sink where `enabled` says so."""
    if not enabled(config):
        return
    live = LiveStatus(config, config.pluginmanager.get_plugin("terminalreporter"))
    config.stash[LIVE_KEY] = live
    progress.set_sink(live)


def uninstall(config: pytest.Config) -> None:
    """Erase the line and remove the sink (at the end of the session)."""
    live = config.stash.get(LIVE_KEY, None)
    if live is None:
        return
    live.clear()
    if progress.set_sink(None) is not live:  # someone else's sink was installed after ours: keep it
        progress.set_sink(progress.set_sink(None))
    del config.stash[LIVE_KEY]


def start_item(item: pytest.Item) -> None:
    """Name the study of the test about to run (the folder of its file) in the status."""
    live = item.config.stash.get(LIVE_KEY, None)
    if live is not None:
        live.study = item.path.parent.name


def finish_item(item: pytest.Item) -> None:
    """Erase a status left by a test that ended with a task open."""
    live = item.config.stash.get(LIVE_KEY, None)
    if live is not None:
        live.clear()
