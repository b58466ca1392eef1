"""Data: one module per data set, apart from the generic split, balancing and hashing code.

    leandojo      LeanDojo Benchmark 4 rows, intro/apply labels, goal spans in ByT5 input
    splits        class-balanced sets, seeded stratified splits saved with content hashes (any data set)

A new data set (MBPP, generated programs) gets a module of its own: its reader and its row type,
registered with `splits.register_rows` so the generic code knows its classes.
"""

from __future__ import annotations

from harness.data.leandojo import (  # noqa: F401
    TacticRow, read_leandojo, rows_from_theorems, CLASSES, tactic_class, intro_apply_rows, Spans, goal_spans,
    GOAL_MARK, BYT5_OFFSET
)
from harness.data.splits import (  # noqa: F401
    balanced, Split, split, save_split, load_split, first_balanced, content_hash
)

__all__ = [
    'TacticRow', 'read_leandojo', 'rows_from_theorems', 'CLASSES', 'tactic_class',
    'intro_apply_rows', 'balanced', 'Split', 'split', 'save_split', 'load_split',
    'first_balanced', 'Spans', 'goal_spans', 'content_hash', 'GOAL_MARK', 'BYT5_OFFSET',
]
