"""`Estimate`: a statistic with its confidence interval and the raw material behind it.

Every statistic in `harness.stats` returns one. `expect(...)` judges it and records it as
evidence, so the fields here are what a report shows: value, CI, level, n, method, the
resampling unit, the seed, and (when a sweep made it) the site and the model fingerprint.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from harness.verdicts.evidence import zero_width

__all__ = ["Estimate"]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval.

    Example::

        est = stats.bootstrap_mean(scores, seed=0)
        est.value, est.ci_low, est.ci_high   # 0.41, 0.37, 0.45

    `status` is ``"ok"`` or ``"degenerate"``; a degenerate estimate (n < 2, constant data,
    NaN in the input) carries a `reason` and never passes an expectation silently. An estimate
    whose CI has `zero_width` is not degenerate, but `expect(...)` judges no effect on it.
    """

    value: float
    ci_low: float
    ci_high: float
    level: float
    n: int
    method: str
    seed: int | None = None
    statistic: str = ""
    unit: str = "examples"
    status: str = "ok"
    reason: str = ""
    site: str | None = None
    fingerprint: str | None = None
    bootstrap_distribution: np.ndarray | None = field(default=None, repr=False, compare=False)
    recompute: Callable[[float], "Estimate"] | None = field(default=None, repr=False, compare=False)

    @property
    def degenerate(self) -> bool:
        return self.status != "ok"

    @property
    def zero_width(self) -> bool:
        """Whether the CI has zero width up to rounding (narrower than 1e-6 of its magnitude,
        `harness.verdicts.evidence.zero_width`). Every resample gave the same value: an effect
        expectation never holds on such a CI, and an exact finding is stated with
        ``expect(values).equals(...)``."""
        return zero_width(self.ci_low, self.ci_high)

    @property
    def can_change_level(self) -> bool:
        """Whether `at_level` can give this estimate's CI at another level."""
        return self.recompute is not None or self.degenerate

    def at_level(self, level: float) -> "Estimate":
        """The same estimate with its CI computed at confidence `level` (e.g. 0.995).

        Example::

            est = stats.bootstrap_mean(scores, seed=0)      # 95% CI
            wide = est.at_level(1 - 0.05 / 10)              # Bonferroni level for 10 claims

        The statistics of `harness.stats` recompute the interval by the same method, from the
        same data and seed (so a bootstrap draws the same resamples); the point value and
        the context (statistic, site, fingerprint) are kept. Raises `StatsError` for an
        estimate built by hand, which carries nothing to recompute from.
        """
        if level == self.level:
            return self
        if not (isinstance(level, float) and 0.0 < level < 1.0):
            from harness.errors import StatsError

            raise StatsError(f"`level` must be a float in (0, 1), got {level!r}; e.g. at_level(0.995)")
        if self.degenerate:
            return dataclasses.replace(self, level=level)
        if self.recompute is None:
            from harness.errors import StatsError

            raise StatsError(
                f"cannot compute the CI of {self.statistic or 'this estimate'} at level {level:g}: it was "
                f"built by hand (method={self.method!r}), not by a harness.stats function that can "
                "recompute it; build it with harness.stats (e.g. bootstrap_mean) or pass level= yourself"
            )
        new = self.recompute(level)
        return dataclasses.replace(
            self, ci_low=new.ci_low, ci_high=new.ci_high, level=new.level, status=new.status,
            reason=new.reason, bootstrap_distribution=new.bootstrap_distribution,
        )

    @property
    def resamples(self) -> int | None:
        """How many bootstrap resamples the CI rests on (the length of `bootstrap_distribution`),
        or None for an interval that resamples nothing (Wilson, Clopper-Pearson)."""
        dist = self.bootstrap_distribution
        return None if dist is None else int(np.shape(dist)[-1])

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2.0

    def with_context(self, **changes: Any) -> "Estimate":
        """A copy with metadata filled in (statistic name, site, model fingerprint, ...)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields (the bootstrap distribution is summarised, not copied)."""

        def num(x: float) -> float | None:
            return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

        return {
            "statistic": self.statistic,
            "value": num(self.value),
            "ci_low": num(self.ci_low),
            "ci_high": num(self.ci_high),
            "level": self.level,
            "n": int(self.n),
            "method": self.method,
            "unit": self.unit,
            "seed": self.seed,
            "status": self.status,
            "reason": self.reason,
            "site": self.site,
            "fingerprint": self.fingerprint,
        }
