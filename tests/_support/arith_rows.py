"""A held-out row of the arith study built from an expression, for its unit tests."""

from __future__ import annotations

import numpy as np

from claims.arith import measure
from claims.arith.rebracket import value


def row(expression: str) -> measure.Row:
    """The `measure.Row` of `expression` as the shipped splits hold it: its answer, whether it
    has parentheses, its nesting depth and its length."""
    depth = max(np.cumsum([(c == "(") - (c == ")") for c in expression]))
    return measure.Row(expression, str(value(expression)), depth > 0, int(depth), len(expression))
