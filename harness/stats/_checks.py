"""Argument checks and formatting shared by the statistics (validate once, at the boundary)."""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.errors import StatsError
from harness.verdicts.context import default_resamples, default_seed
from harness.stats.estimate import Estimate

# Elements (resamples x examples) per resample batch of scipy's bootstrap. With one sample, or
# paired samples (resampled as one array of indices), scipy draws the same stream of indices
# whatever the batch, so the batch changes speed and memory only: `_STREAM_BATCH_ELEMENTS`
# (1 MB of indices) stays in cache, and 9999 resamples of 500 examples run in about 23 ms
# instead of 30 at 2**20. Unpaired samples (the AUROC's two classes) are drawn batch by batch,
# sample after sample, so there the batch decides which draws each sample gets: it stays at
# `_BATCH_ELEMENTS` (~16 MB of indices and as much of values), which every interval was built with.
_BATCH_ELEMENTS = 2**20
_STREAM_BATCH_ELEMENTS = 2**17

_BOOTSTRAP_METHODS = ("BCa", "percentile")
_PROPORTION_METHODS = ("wilson", "clopper-pearson")
_STATISTICS: dict[str, Callable[..., Any]] = {"mean": np.mean, "median": np.median}


# ----------------------------------------------------------------------------------------
# Argument checks (run once, at the boundary of each public function)


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _show(value: Any) -> str:
    """repr of a bad argument, with numpy scalars shown as plain Python numbers."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _check_fraction(value: Any, *, name: str, what: str) -> float:
    """A number strictly inside (0, 1); a percentage such as 95 gets "did you mean 0.95?"."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and math.isfinite(value) and 0.0 < value < 1.0:
        return float(value)
    hint = f"pass {what}"
    if ok and 1.0 < value < 100.0:
        hint = f"did you mean {_fmt(value / 100.0)}?"
    raise StatsError(f"`{name}` must be in (0, 1), got {_show(value)}; {hint}")


def _check_level(level: Any) -> float:
    return _check_fraction(level, name="level", what="a confidence level such as 0.95")


def _check_n_resamples(n_resamples: Any) -> int:
    if isinstance(n_resamples, numbers.Integral) and not isinstance(n_resamples, bool):
        if n_resamples >= 1:
            return int(n_resamples)
    raise StatsError(
        f"`n_resamples` must be a positive integer, got {_show(n_resamples)}; "
        "pass e.g. n_resamples=9999"
    )


def _check_nonnegative_int(value: Any, *, name: str, what: str, fix: str) -> int:
    """A non-negative integer (bools refused); otherwise a `StatsError` naming `name` and the fix."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0:
        return int(value)
    raise StatsError(f"`{name}` must be a non-negative {what}, got {_show(value)}; {fix}")


def _check_seed(seed: Any) -> int:
    return _check_nonnegative_int(seed, name="seed", what="int",
                                  fix="pass e.g. seed=0 so the resampling is reproducible")


def _check_bootstrap_args(
    level: Any, method: Any, n_resamples: Any, seed: Any, *, owner: str = "bootstrap"
) -> tuple[float, str, int, int]:
    """The arguments every bootstrap takes, checked and canonicalised. `n_resamples` and `seed`
    left as None take the run's (inside a claim: the claim's seed and ``--claims-resamples``,
    `harness.verdicts.context`); a seed left out outside any run is an error naming `owner`."""
    return (
        _check_level(level),
        _check_choice(method, name="method", choices=_BOOTSTRAP_METHODS),
        _check_n_resamples(default_resamples(n_resamples)),
        _check_seed(default_seed(seed, owner=owner)),
    )


def _check_choice(value: Any, *, name: str, choices: tuple[str, ...]) -> str:
    """Return the canonical spelling of `value` among `choices` (case-insensitive)."""
    listed = ", ".join(repr(c) for c in choices)
    if isinstance(value, str):
        lowered = {c.lower(): c for c in choices}
        if value.lower() in lowered:
            return lowered[value.lower()]
        close = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.5)
        if close:
            hint = f"did you mean {lowered[close[0]]!r}?"
        else:
            hint = f"pass one of {listed}"
        raise StatsError(f"`{name}` must be one of {listed}, got {_show(value)}; {hint}")
    raise StatsError(f"`{name}` must be one of {listed}, got {_show(value)}; pass one of {listed}")


def _check_positive(value: Any, *, name: str, example: str) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and math.isfinite(value) and value > 0:
        return float(value)
    raise StatsError(f"`{name}` must be a positive number, got {_show(value)}; {example}")


def _as_array(values: Any, *, name: str) -> np.ndarray:
    """A float64 numpy copy of an array-like (a CPU or GPU torch tensor included)."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu().numpy()
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise StatsError(
            f"`{name}` must be numeric, got {type(values).__name__} that numpy cannot "
            f"read as numbers ({exc}); pass a 1-D array of per-example values"
        ) from None


def _as_1d(values: Any, *, name: str, what: str = "[n_examples]") -> np.ndarray:
    arr = _as_array(values, name=name)
    if arr.ndim != 1:
        raise StatsError(
            f"`{name}` must be 1-D {what}, got shape {tuple(arr.shape)}; pass one value per "
            "example (reduce other axes first, e.g. with .mean(axis=-1))"
        )
    return arr


def _check_same_length(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape != y.shape:
        raise StatsError(
            f"`y` must have the same length as `x` (one pair per example), got "
            f"len(x)={x.shape[0]}, len(y)={y.shape[0]}; pass values of the same examples in "
            "the same order"
        )


def _check_estimate(value: Any, *, name: str) -> Estimate:
    if not isinstance(value, Estimate):
        raise StatsError(
            f"`{name}` must be an Estimate, got {type(value).__name__}; pass the result of a "
            "harness.stats function"
        )
    return value
