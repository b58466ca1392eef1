"""The exception hierarchy: one root, `HarnessError`, and a subclass per kind of bad input.

Messages name the argument, repeat the bad value and say how to fix it.
`UnknownTokenWarning` is a warning, not an error: text a tokenizer could only map to its
unknown token.
"""

from __future__ import annotations

__all__ = [
    "HarnessError",
    "SiteError",
    "ShapeError",
    "ModelLoadError",
    "InterventionError",
    "StatsError",
    "DataError",
    "UnknownTokenWarning",
]


class HarnessError(Exception):
    """Root of every error the harness raises on purpose."""


class SiteError(HarnessError, ValueError):
    """A site string or site part that does not exist on the loaded model."""


class ShapeError(HarnessError, ValueError):
    """A tensor whose shape does not fit the site or batch it is applied to."""


class ModelLoadError(HarnessError, OSError):
    """A model spec that cannot be resolved to weights on this machine."""


class InterventionError(HarnessError, ValueError):
    """An intervention that is malformed or cannot be applied as asked."""


class StatsError(HarnessError, ValueError):
    """Bad input to a statistic (wrong shape, bad level, too few resamples)."""


class DataError(HarnessError, ValueError):
    """Bad input data: empty sets, mismatched lengths, unreadable files."""


class UnknownTokenWarning(UserWarning):
    """Words or pieces of a text that the tokenizer mapped to its unknown token (``[UNK]``,
    ``<unk>``): the model sees them all as one token. The ids are kept as the tokenizer gave them."""
