"""Data: one reader per data set, apart from the generic split and balancing code.

    leandojo      LeanDojo Benchmark 4 rows, intro/apply labels, goal spans in ByT5 input
"""

from __future__ import annotations

from harness.data.leandojo import (  # noqa: F401
    TacticRow, read_leandojo, rows_from_theorems, CLASSES, tactic_class, intro_apply_rows,
    balanced, Split, split, save_split, load_split, first_balanced, Spans, goal_spans,
    content_hash, GOAL_MARK, BYT5_OFFSET
)

__all__ = [
    'TacticRow', 'read_leandojo', 'rows_from_theorems', 'CLASSES', 'tactic_class',
    'intro_apply_rows', 'balanced', 'Split', 'split', 'save_split', 'load_split',
    'first_balanced', 'Spans', 'goal_spans', 'content_hash', 'GOAL_MARK', 'BYT5_OFFSET',
]
