"""The timing every ratio benchmark takes from pytest-benchmark, also under ``--benchmark-disable``."""

from __future__ import annotations

import time
from typing import Any, Callable


def best_of(benchmark: Any, fn: Callable[[], Any], *, rounds: int) -> tuple[Any, float]:
    """``(result, seconds)``: the fastest of `rounds` timed calls of `fn` (``benchmark.pedantic``);
    under ``--benchmark-disable`` (where pytest-benchmark keeps no stats) one plain timed call."""
    if benchmark.disabled:
        start = time.perf_counter()
        result = benchmark(fn)
        return result, time.perf_counter() - start
    result = benchmark.pedantic(fn, rounds=rounds, iterations=1)
    return result, benchmark.stats.stats.min
