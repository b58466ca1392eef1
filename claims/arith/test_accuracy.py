"""Finding 1: the model answers held-out expressions, flat and parenthesised (whole answer, greedy)."""

from __future__ import annotations

import numpy as np
import pytest

from harness import expect, stats


@pytest.mark.claim("The model's greedy answer is exactly right on held-out expressions",
                   source="002/003: a meaningful result needs flat accuracy > 70% and parenthesised > 60%")
@pytest.mark.parametrize("shape", ["flat", "parens"])
def test_the_model_answers_held_out_expressions(splits, correct, thresholds, shape):
    rows = splits["test"]
    keep = np.array([r.has_parens == (shape == "parens") for r in rows])
    accuracy = stats.proportion_of(correct["test"][keep]).with_context(
        statistic=f"exact-match accuracy ({shape}, whole answer)")
    bound = thresholds.min_paren_accuracy if shape == "parens" else thresholds.min_flat_accuracy
    expect(accuracy).at_least(bound)
