"""Memory: the peak a piece of work reached, the memory still available, and run-level notes.

    PeakMemory       the peak resident set size (and CUDA allocation) over a span of work
    peak_memory()    a `PeakMemory` measurement as a context manager
    rss_method()     how the RSS peak is read here: ``"VmHWM"`` (reset per span) or ``"getrusage"``
    available_bytes  the memory a new allocation can still take, on the CPU or a CUDA device
    note / take_notes  run-level notes (an out-of-memory backoff says so once in the report)

The RSS peak on Linux is the kernel's high-water mark ``VmHWM`` of ``/proc/self/status``,
reset by writing ``5`` to ``/proc/self/clear_refs``: a peak over one span of work, at the cost
of one small file write and one read. Where that file cannot be written (not Linux, or a kernel
that refuses it) the peak is ``resource.getrusage``'s ``ru_maxrss``, which cannot be reset: the
largest RSS the process has had so far, a bound and not a per-span peak; `rss_method()` says
which. Spans nest: an inner measurement (an automatic batch size measuring one row) folds the
peak so far into the outer span before it resets the mark, so the outer peak is still right.

The CUDA peak is ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, read
only where torch is already imported and CUDA initialised (this module never imports torch).

Plain Python: the pytest plugin imports it and must not import torch at load.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import sys
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["PeakMemory", "peak_memory", "rss_method", "current_rss_bytes", "available_bytes", "note", "take_notes"]

_log = logging.getLogger("harness")

_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"
_method: str | None = None
# The open spans, outermost first: each keeps the largest peaks seen before an inner span reset the marks.
_open_spans: list["_Span"] = []


def rss_method() -> str:
    """``"VmHWM"`` where the kernel's RSS high-water mark can be reset here (Linux), else
    ``"getrusage"`` (the process's lifetime peak RSS, which cannot be reset)."""
    global _method
    if _method is None:
        try:
            with open(_CLEAR_REFS, "w") as f:
                f.write("5")
            _status_kb("VmHWM")
            _method = "VmHWM"
        except (OSError, ValueError, KeyError):
            _method = "getrusage"
    return _method


def _status_kb(field: str) -> int:
    with open(_STATUS) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def current_rss_bytes() -> int:
    """The resident set size now, in bytes (``VmRSS``; the lifetime peak where there is no /proc)."""
    try:
        return _status_kb("VmRSS") * 1024
    except (OSError, KeyError, ValueError):
        return _maxrss_bytes()


def _maxrss_bytes() -> int:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(kb) if sys.platform == "darwin" else int(kb) * 1024   # macOS reports bytes


def _reset_hwm() -> None:
    with open(_CLEAR_REFS, "w") as f:
        f.write("5")


def _hwm_bytes() -> int:
    return _status_kb("VmHWM") * 1024


def _torch_cuda():
    """torch.cuda where torch is already imported and CUDA initialised, else None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        cuda = torch.cuda
        return cuda if cuda.is_available() and cuda.is_initialized() else None
    except Exception:   # a broken CUDA install: no CUDA numbers, never a failed claim
        return None


@dataclass(frozen=True)
class PeakMemory:
    """The peaks of one span of work, in bytes: `rss_bytes` (resident set size; how it was read
    is `rss_method`: ``"VmHWM"`` a peak over the span, ``"getrusage"`` the process's peak so far)
    and `cuda_bytes` (``torch.cuda.max_memory_allocated`` on the current device over the span;
    None where CUDA was not in use when the span ended)."""

    rss_bytes: int
    rss_method: str
    cuda_bytes: int | None = None

    def to_dict(self) -> dict:
        return {"peak_rss_bytes": self.rss_bytes, "rss_method": self.rss_method,
                "peak_cuda_bytes": self.cuda_bytes}


class _Span:
    """A measurement in progress: `start()` resets the marks, `stop()` reads the peaks. An inner
    span first folds the marks so far into every open span, then resets them."""

    def __init__(self) -> None:
        self.method = rss_method()
        self.rss = 0            # the largest VmHWM seen before an inner span reset it
        self.cuda = 0           # the same for CUDA's max allocated

    def start(self) -> "_Span":
        cuda = _torch_cuda()
        if _open_spans:
            self._fold(self.method == "VmHWM" and _hwm_bytes(), cuda and int(cuda.max_memory_allocated()))
        if self.method == "VmHWM":
            _reset_hwm()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        _open_spans.append(self)
        return self

    def stop(self) -> PeakMemory:
        cuda = _torch_cuda()
        rss = max(self.rss, _hwm_bytes()) if self.method == "VmHWM" else _maxrss_bytes()
        cuda_bytes = None if cuda is None else max(self.cuda, int(cuda.max_memory_allocated()))
        if self in _open_spans:
            _open_spans.remove(self)
        self._fold(rss, cuda_bytes)   # the outer spans saw this span's peaks too
        return PeakMemory(rss_bytes=int(rss), rss_method=self.method, cuda_bytes=cuda_bytes)

    @staticmethod
    def _fold(rss: int | None, cuda: int | None) -> None:
        for span in _open_spans:
            span.rss = max(span.rss, rss or 0)
            span.cuda = max(span.cuda, cuda or 0)


class _Measurement:
    """What `peak_memory` yields: `result` is the `PeakMemory`, set when the block exits."""

    result: PeakMemory | None = None


@contextlib.contextmanager
def peak_memory() -> Iterator[_Measurement]:
    """Measure the peak memory of the block: ``m.result`` is its `PeakMemory` once it exits.

    Example::

        with peak_memory() as m:
            run_claim()
        m.result.rss_bytes   # bytes, the block's RSS peak (see rss_method())
    """
    span = _Span().start()
    out = _Measurement()
    try:
        yield out
    finally:
        out.result = span.stop()


def start_span() -> _Span:
    """Start a measurement that ends with ``span.stop()`` (for hooks that cannot use a ``with``)."""
    return _Span().start()


# --------------------------------------------------------------------------- available memory


def available_bytes(device: str = "cpu") -> int:
    """Bytes a new allocation can still take on `device` (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    CPU: the least of the system's available memory (``MemAvailable``; psutil where /proc is
    missing), the cgroup's room (``memory.max - memory.current``) and the room under an
    address-space limit (``RLIMIT_AS - VmSize``). CUDA: ``torch.cuda.mem_get_info``'s free bytes
    (torch must already be imported). Raises `ValueError` for another device.
    """
    device = str(device)
    if device.startswith("cuda"):
        torch = sys.modules.get("torch")
        if torch is None:
            raise ValueError(f"`device` {device!r} needs torch imported first")
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    if device not in ("cpu", "meta") and not device.startswith("cpu"):
        raise ValueError(f"`device` must be 'cpu' or 'cuda[:N]', got {device!r}")
    room = [_system_available()]
    cgroup = _cgroup_room()
    if cgroup is not None:
        room.append(cgroup)
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        try:
            room.append(max(0, soft - _status_kb("VmSize") * 1024))
        except (OSError, KeyError, ValueError):
            room.append(max(0, soft - current_rss_bytes()))
    return int(min(room))


def _system_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _cgroup_room() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            return max(0, int(limit) - int(f.read().strip()))
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- notes

_notes: list[str] = []


def note(text: str) -> None:
    """Record a run-level note (once per distinct text until taken); the pytest plugin attaches
    the notes recorded during a claim to that claim and lists each once in the report."""
    if text not in _notes:
        _notes.append(text)
        _log.warning("%s", text)


def take_notes() -> tuple[str, ...]:
    """The notes recorded since the last call, in order; clears them."""
    out = tuple(_notes)
    _notes.clear()
    return out
