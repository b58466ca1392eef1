"""Live progress of long work: what a claim is doing and how far it is.

A measure that loops over examples, cells or training steps opens a task and advances it::

    with progress.task(f"sweep {site}", total=len(examples), unit="examples") as bar:
        for chunk in chunks:
            ...
            bar.advance(len(chunk))

Tasks nest (a patching map inside a fixture build inside a claim): the status is every open
task, outermost first, e.g. ``sweep encoder.12.resid_post 320/500 examples``. Where the status
goes is the sink's business: the pytest plugin shows it as one live line in pytest's terminal
(quiet under ``-q``, when the output is not a terminal, and on xdist workers; see
`harness.plugin.live`), the ``claims`` command on stderr; with no sink installed (the default,
e.g. in a notebook) a task costs a few attribute updates and shows nothing.

Progress never touches a number: it draws no random numbers, reads no tensors and changes no
state that a measure reads. Functions here are plain Python (no torch).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

__all__ = ["Task", "task", "track", "status", "set_sink", "Sink"]

T = TypeVar("T")

Sink = Callable[[str | None], None]
"""Called with the status line, or ``None`` when the last open task closed."""

_sink: Sink | None = None
_open: list["Task"] = []
_last_emit = 0.0
MIN_INTERVAL_S = 0.1  # at most ten updates a second reach the sink, and always the outermost task's start and end


class Task:
    """One unit of long work: a label, how many steps it has (``None``: unknown) and how many are done."""

    def __init__(self, label: str, total: int | None, unit: str) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self.note = ""

    def advance(self, n: int = 1, *, note: str | None = None) -> None:
        """Mark `n` more steps done; `note` (e.g. ``"loss 0.412"``) replaces the task's note."""
        self.done += int(n)
        if note is not None:
            self.note = note
        _emit(force=False)

    def update(self, done: int, *, note: str | None = None) -> None:
        """Set the number of steps done to `done` (for loops that count in chunks)."""
        self.advance(int(done) - self.done, note=note)

    def describe(self) -> str:
        count = f"{self.done}/{self.total}" if self.total is not None else (f"{self.done}" if self.done else "")
        parts = [self.label, count, self.unit if count else "", self.note]
        return " ".join(p for p in parts if p)


def status() -> str | None:
    """The current status line (every open task, outermost first), or ``None`` when none is open."""
    return " · ".join(t.describe() for t in _open) or None


def _emit(*, force: bool) -> None:
    global _last_emit
    if _sink is None:
        return
    now = time.monotonic()
    if not force and now - _last_emit < MIN_INTERVAL_S:
        return
    _last_emit = now
    _sink(status())


@contextlib.contextmanager
def task(label: str, *, total: int | None = None, unit: str = "") -> Iterator[Task]:
    """Open a task for the duration of the ``with`` block; it is closed (and the status updated)
    however the block ends. `total` is the number of steps (``None`` when unknown), `unit` what a
    step is (``"examples"``, ``"cells"``, ``"steps"``)."""
    if total is not None and (isinstance(total, bool) or int(total) < 0):
        raise ValueError(f"progress.task: total={total!r} must be a count >= 0 or None")
    current = Task(str(label), None if total is None else int(total), str(unit))
    _open.append(current)
    _emit(force=len(_open) == 1)
    try:
        yield current
    finally:
        _open.remove(current)
        _emit(force=not _open)  # the last task's end always clears the line


def track(items: Iterable[T], label: str, *, total: int | None = None, unit: str = "") -> Iterator[T]:
    """Yield `items`, advancing a task by one after each (`total` defaults to ``len(items)``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with task(label, total=total, unit=unit) as current:
        for item in items:
            yield item
            current.advance()


def set_sink(sink: Sink | None) -> Sink | None:
    """Install `sink` (``None``: show nothing) and return the one it replaces."""
    global _sink, _last_emit
    previous, _sink, _last_emit = _sink, sink, 0.0
    return previous
