"""The run settings a statistic takes by default: the claim's seed and the run's resample count.

Contents:

- `RunContext`: the seed and resample count in force, and the identity of the claim they belong
  to (None for the run itself, e.g. inside a session fixture).
- `run_context(seed=..., resamples=..., identity=...)`: a context manager that puts one in force
  (the plugin opens the run's for the whole session and each claim's around its call).
- `current_context()`: the one in force, or None (a notebook, a script).
- `default_seed(seed, owner=...)` / `default_resamples(n)`: what a harness function uses when its
  caller left `seed` / `n_resamples` out: the explicit value if given, else the context's,
  else (for the seed) a `HarnessError` that says to pass one.
- `draw_seed(seed, owner=...)`: `default_seed` checked as the integer seed of a random draw.

So a claim that calls ``stats.bootstrap_mean(x)`` follows ``--claims-seed`` and
``--claims-resamples`` without threading them by hand, and its evidence records the seed and
resamples it used. Explicit arguments always win.

Pure Python: no numpy, no torch, so the plugin can import this at load.
"""

from __future__ import annotations

import contextlib
import contextvars
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from harness.errors import DataError, StatsError

__all__ = ["RunContext", "run_context", "current_context", "default_seed", "draw_seed",
           "default_resamples", "DEFAULT_RESAMPLES"]

DEFAULT_RESAMPLES = 9999   # outside any run: scipy's default for `bootstrap`


@dataclass(frozen=True)
class RunContext:
    """The seed and resample count a harness statistic or draw takes when not given one.

    `identity` is the claim's stable identity (``study/test_file.py::test_name[params]``) inside
    a claim's call, and None at run level (session fixtures, collection).
    """

    seed: int
    resamples: int
    identity: str | None = None


_CURRENT: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar("harness_run_context", default=None)


def _nonnegative_int(value: Any, *, name: str, minimum: int) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum:
        return int(value)
    raise StatsError(f"`{name}` must be an integer >= {minimum}, got {value!r}; pass e.g. {name}={max(minimum, 0) or 9999}")


@contextlib.contextmanager
def run_context(*, seed: int, resamples: int, identity: str | None = None) -> Iterator[RunContext]:
    """Put `seed` and `resamples` in force for the block (nested blocks override, then restore).

    Example::

        with run_context(seed=7, resamples=999):
            est = stats.bootstrap_mean(x)        # seed 7, 999 resamples
        est.seed, est.resamples                  # (7, 999)

    Raises `StatsError` for a negative seed or resamples < 1.
    """
    ctx = RunContext(_nonnegative_int(seed, name="seed", minimum=0),
                     _nonnegative_int(resamples, name="resamples", minimum=1), identity)
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)


def current_context() -> RunContext | None:
    """The `RunContext` in force, or None outside any run."""
    return _CURRENT.get()


def default_seed(seed: Any, *, owner: str) -> Any:
    """`seed` if given (not None), else the seed in force; outside any run a `StatsError` that
    names `owner` and says to pass one. The value is returned as given (checked by the caller)."""
    if seed is not None:
        return seed
    ctx = _CURRENT.get()
    if ctx is None:
        raise StatsError(f"{owner}: `seed` is required outside a claim; pass e.g. seed=0 so the draw is "
                         "reproducible (inside a claim test it defaults to the claim's seed)")
    return ctx.seed


def draw_seed(seed: Any, *, owner: str) -> int:
    """The integer seed a random draw of `owner` uses: `seed`, or the one in force
    (`default_seed`). Raises `DataError` for a bool or a non-integer (a float, a string), and
    `StatsError` for no seed outside any run."""
    seed = default_seed(seed, owner=owner)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise DataError(f"`seed` of {owner} must be an integer, got {seed!r} ({type(seed).__name__}); "
                        "pass a whole number, e.g. seed=0")
    return int(seed)


def default_resamples(n_resamples: Any) -> Any:
    """`n_resamples` if given (not None), else the run's resample count (``--claims-resamples``),
    else `DEFAULT_RESAMPLES` outside any run."""
    if n_resamples is not None:
        return n_resamples
    ctx = _CURRENT.get()
    return DEFAULT_RESAMPLES if ctx is None else ctx.resamples
