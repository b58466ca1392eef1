"""The per-model threshold tables of the studies: looking up the loaded model's row."""

from __future__ import annotations

from typing import Mapping, TypeVar

import pytest

Row = TypeVar("Row")


def threshold_row(table: Mapping[str, Row], spec: str, *, study: str) -> Row:
    """The row of `table` (a study's ``THRESHOLDS``) for model `spec`; a model without one is a
    usage error that says where to add it."""
    row = table.get(spec)
    if row is None:
        raise pytest.UsageError(f"no thresholds for model {spec!r} in claims/{study}/settings.py; add a row to "
                                f"THRESHOLDS (known: {sorted(table)})")
    return row
