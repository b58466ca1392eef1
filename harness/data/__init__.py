"""Data: one module per data set, apart from the generic split, balancing and hashing code.

    leandojo      LeanDojo Benchmark 4 rows, intro/apply labels, goal spans in ByT5 input
    mbpp          MBPP problems (full and sanitized files), the standard split by task id, the standard prompt
    programs      Python programs: the code in a model's completion, radon cyclomatic complexity, MBPP
                  problems selected by complexity
    splits        class-balanced sets, seeded stratified splits saved with content hashes (any data set)
    strata        seeded selections stratified by a numeric value (any data set)

A new data set (MBPP, generated programs) gets a module of its own: its reader and its row type,
registered with `splits.register_rows` when its rows carry class labels, so the generic code
knows its classes (MBPP problems carry none and are not registered).
"""

from __future__ import annotations

from harness.data.leandojo import (  # noqa: F401
    TacticRow, read_leandojo, rows_from_theorems, CLASSES, tactic_class, intro_apply_rows, Spans, goal_spans,
    GOAL_MARK, BYT5_OFFSET
)
from harness.data.splits import (  # noqa: F401
    balanced, Split, split, save_split, load_split, first_balanced, content_hash
)
from harness.data.mbpp import (  # noqa: F401
    MbppProblem, read_mbpp, mbpp_split_of, mbpp_split, MBPP_SPLITS, mbpp_prompt, mbpp_fewshot, FEWSHOT_IDS,
    PROMPT_TEMPLATE, BEGIN, DONE
)
from harness.data.programs import (  # noqa: F401
    extract_code, complexity, by_complexity, COMPLEXITY_EDGES
)
from harness.data.strata import stratified_sample  # noqa: F401

__all__ = [
    'TacticRow', 'read_leandojo', 'rows_from_theorems', 'CLASSES', 'tactic_class',
    'intro_apply_rows', 'balanced', 'Split', 'split', 'save_split', 'load_split',
    'first_balanced', 'Spans', 'goal_spans', 'content_hash', 'GOAL_MARK', 'BYT5_OFFSET',
    'MbppProblem', 'read_mbpp', 'mbpp_split_of', 'mbpp_split', 'MBPP_SPLITS', 'mbpp_prompt', 'mbpp_fewshot',
    'FEWSHOT_IDS', 'PROMPT_TEMPLATE', 'BEGIN', 'DONE', 'extract_code', 'complexity', 'stratified_sample',
    'by_complexity', 'COMPLEXITY_EDGES',
]
