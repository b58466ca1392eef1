"""Batches that fit: run a batched computation, halving the batch when memory runs out, and
size a batch from the memory available.

    run_batched         run ``step(start, stop)`` over ``0..n`` in batches; on out-of-memory free,
                        halve the batch and go on from the batch that failed
    with_backoff        run ``run(size)`` (a computation that chunks itself), again at half the
                        size on out-of-memory
    is_out_of_memory    whether an exception is an allocation failure (CUDA's or the CPU's)
    auto_batch_size     a batch size from the memory available and the measured peak of one row
    resolve_batch_size  a caller's ``batch_size`` (a positive int, or ``"auto"``) as an int

A batch that runs out of memory is retried from its own first row with the batch size halved
(until it is smaller than the batch that failed), and every later batch keeps the smaller size
(it never grows back), so the batches after a failure are the ones a run at the smaller fixed
size makes from that row on. When the first batch is the
one that fails (the usual case: every batch of a map or sweep is about the same size) the whole
run is chunked exactly as a run at the final fixed size, and its numbers are that run's bit for
bit; batches that finished before a later failure ran at the larger size, which the measures
pin equal to smaller batches within 1e-4. The backoff is said once in the run's notes
(`harness.resources.note`), which the report lists.

Out of memory is ``torch.OutOfMemoryError`` (CUDA), the CPU allocator's ``RuntimeError``
("DefaultCPUAllocator: can't allocate memory", "not enough memory") and Python's
``MemoryError`` (numpy). A batch of one row that runs out of memory raises as it did.
"""

from __future__ import annotations

import gc
import numbers
from typing import Any, Callable, TypeVar

import torch

from harness.errors import DataError
from harness.resources import available_bytes, current_rss_bytes, note, peak_memory

__all__ = ["run_batched", "with_backoff", "is_out_of_memory", "auto_batch_size", "resolve_batch_size", "AUTO"]

T = TypeVar("T")

AUTO = "auto"
"""The `batch_size` that asks for a size chosen from the memory available (`auto_batch_size`)."""

_CPU_OOM = ("DefaultCPUAllocator: can't allocate memory", "not enough memory", "std::bad_alloc")

# The share of the available memory an automatic batch may plan to use: the rest is headroom
# for what one row's peak does not show (allocator caching, fragmentation, other work).
AUTO_SHARE = 0.5


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is an allocation failure: ``torch.OutOfMemoryError`` (CUDA), the CPU
    allocator's ``RuntimeError`` ("DefaultCPUAllocator: can't allocate memory", "not enough
    memory", "std::bad_alloc") or ``MemoryError``."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if isinstance(exc, MemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _CPU_OOM)


def _free() -> None:
    """Give back what a failed batch held: collect the garbage its frames left, and empty
    CUDA's cache where CUDA is in use."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def run_batched(step: Callable[[int, int], T], n: int, batch_size: int, *, what: str,
                after: str | None = None) -> tuple[list[tuple[int, int, T]], int]:
    """``step(start, stop)`` for consecutive batches covering rows ``0..n``, at most
    `batch_size` rows each: ``([(start, stop, result), ...] in order, the size it ended at)``.

    When a batch runs out of memory (`is_out_of_memory`), what it held is freed, the batch size
    is halved (until it is smaller than the batch that failed) and the rows run again from
    `start`; later batches keep the smaller size. So the sizes are `batch_size` halved k times,
    and the batches those of a run at that fixed size.
    A run that halved records one note (`harness.resources.note`), naming `what` (e.g.
    ``"sweep rows"``), the size asked for, the size it ended at and the row of the first
    failure; `after` names work of the caller's that already ran at `batch_size` before this
    call (None: none did). A caller that runs several such loops passes the size returned to
    the next. `step` must not keep state between calls that a failed call leaves half-updated
    (write results only from its return value, or at rows it will write again).

    Raises `DataError` for a `batch_size` that is not a positive integer or an `n` below 0;
    re-raises the out-of-memory error of a batch of one row, and any other error as it is.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise DataError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise DataError(f"`n` must be a non-negative integer (the number of rows), got {n!r}")
    asked = size = int(batch_size)
    failed_at: int | None = None
    out: list[tuple[int, int, T]] = []
    start = 0
    while start < n:
        stop = min(start + size, n)
        try:
            result = step(start, stop)
        except Exception as exc:   # noqa: BLE001 - re-raised unless it is an out-of-memory error
            if not is_out_of_memory(exc) or stop - start == 1:
                raise
        else:
            out.append((start, stop, result))
            start = stop
            continue
        _free()   # outside the except block: the failed batch's frames are gone by now
        size = max(1, size // 2)
        while size > 1 and size >= stop - start:   # a short last batch: halve until it is split
            size //= 2
        failed_at = start if failed_at is None else failed_at
    if failed_at is not None:
        _say(what, asked, size, failed_at, after)
    return out, size


def with_backoff(run: Callable[[int], T], batch_size: int, *, what: str, after: str | None = None,
                 earlier: int = 0) -> tuple[T, int]:
    """``(run(size), size)``: `run` given the batch size `batch_size`, and again with half the
    size each time it runs out of memory (`is_out_of_memory`), freeing what it held between
    tries. For a computation that chunks its rows itself (a patching map's cells of one block):
    the whole call runs again at the smaller size, so its result is that of a run at the size
    returned, bit for bit. The caller passes that size on to its later calls. A halving records
    one note naming `what`; `after` names the caller's earlier calls, made at the larger size,
    and `earlier` the most rows one of them had to batch: when that is no more than the size
    this call ends at, they ran as a run at that size would have (the note says the numbers are
    that run's), else the note says where the size changed.

    Raises `DataError` for a `batch_size` that is not a positive integer; re-raises the
    out-of-memory error of a run at size 1, and any other error as it is."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise DataError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    size = int(batch_size)
    while True:
        try:
            result = run(size)
        except Exception as exc:   # noqa: BLE001 - re-raised unless it is an out-of-memory error
            if not is_out_of_memory(exc) or size == 1:
                raise
        else:
            if size < batch_size:
                _say(what, int(batch_size), size, 0, after if earlier > size else None)
            return result, size
        _free()
        size = max(1, size // 2)


def _say(what: str, asked: int, size: int, failed_at: int, after: str | None) -> None:
    """One note of a halving: identical to a fixed run at `size` when nothing ran at `asked`
    before the first failure (row 0, and no `after`)."""
    if failed_at == 0 and after is None:
        note(f"out of memory: {what} ran in batches of {size}, not {asked} (halved on each allocation "
             f"failure; numbers identical to batch_size={size})")
        return
    where = ", ".join(w for w in (after, f"row {failed_at}" if failed_at else "") if w)
    note(f"out of memory: {what} ran in batches of {asked} up to {where}, then {size} "
         "(halved on each allocation failure)")


def resolve_batch_size(batch_size: Any, *, probe: Callable[[], Any], rows: int, cap: int, device: Any,
                       name: str = "batch_size") -> int:
    """`batch_size` as an int: itself when a positive integer; for ``"auto"``,
    `auto_batch_size` of `probe` (a one-row batch), at most `cap` and `rows`.

    Raises `DataError` naming `name` for anything else."""
    if isinstance(batch_size, str) and batch_size == AUTO:
        return auto_batch_size(probe, device=device, cap=min(cap, max(1, rows)))
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise DataError(f"`{name}` must be a positive integer, got {batch_size!r}; or 'auto' (sized "
                        "from the memory available)")
    return int(batch_size)


def auto_batch_size(probe: Callable[[], Any], *, device: Any = "cpu", cap: int = 256,
                    share: float = AUTO_SHARE) -> int:
    """A batch size from the memory available on `device` and the measured cost of one row.

    ``probe()`` runs a batch of one row (its result is dropped). Its cost is the peak it adds:
    on CUDA ``max_memory_allocated`` over ``memory_allocated`` before; on the CPU the RSS peak
    over the RSS before (both measured by `harness.resources.peak_memory`, which keeps an
    enclosing measurement's peak, a claim's), at least 1 MiB (freed memory that the
    allocator reuses does not show). The size is ``share`` of `harness.resources.available_bytes`
    over that cost, rounded down to a power of two (so halving keeps batches aligned), between 1
    and `cap`.

    Raises `DataError` for a `cap` below 1 or a `share` outside (0, 1].
    """
    if isinstance(cap, bool) or not isinstance(cap, numbers.Integral) or cap < 1:
        raise DataError(f"`cap` must be a positive integer, got {cap!r}")
    if not 0 < share <= 1:
        raise DataError(f"`share` must be in (0, 1], got {share!r}")
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.synchronize(dev)
        before = torch.cuda.memory_allocated(dev)
    else:
        before = current_rss_bytes()
    with peak_memory() as m:   # a nested measurement: a claim's own peak is kept
        probe()
        if cuda:
            torch.cuda.synchronize(dev)
    assert m.result is not None
    peak = m.result.cuda_bytes if cuda else m.result.rss_bytes
    cost = (peak or 0) - before
    free = available_bytes(str(dev) if cuda else "cpu")
    cost = max(int(cost), 1 << 20)
    fits = int(free * share) // cost
    size = 1
    while size * 2 <= min(fits, int(cap)):
        size *= 2
    return size
