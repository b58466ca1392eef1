"""Finding 1: the model answers held-out programs, by program length; it meets the source's
selection rule (some length of at least 6 steps with its accuracy CI above the bar), and the pairs
are drawn at the longest such length."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness import expect, stats
from harness.atomic import write_text_atomic

from claims.tracer import programs

SOURCE = "004: the smallest model that answers at least 80% of programs of some length N >= 6"


def _accuracy(splits, answered, length: int, level: float = 0.95):
    keep = np.array([r["n_steps"] == length for r in splits["test"]])
    if not keep.any():
        pytest.fail(f"the test split has no program of {length} steps")
    return stats.proportion_of(answered.right[keep], level=level).with_context(
        statistic=f"exact-match accuracy on held-out programs of {length} steps (teacher-forced greedy, Wilson)")


@pytest.mark.claim("The model's answer is right on held-out programs of this length, the accuracy's CI above the bar",
                   source=SOURCE)
def test_accuracy_by_program_length(splits, answered, thresholds, length):
    expect(_accuracy(splits, answered, length)).at_least(thresholds.min_accuracy)


def test_the_model_meets_the_selection_rule(splits, answered, thresholds, claims_settings):
    """Some length of at least the source's 6 steps has its accuracy CI above the bar, so the
    pairs are drawn (at the longest such length, `programs.selection_rule`); the accuracies go to
    ``tracer/accuracy.json``. The CIs are at the level the per-length claims are judged at
    (Bonferroni over the lengths)."""
    steps = [r["n_steps"] for r in splits["test"]]
    by = programs.accuracy_by_length(answered.right, steps, level=1 - 0.05 / len(set(steps)))
    rows = {n: {"accuracy": round(est.value, 4), "ci": [round(est.ci_low, 4), round(est.ci_high, 4)], "n": est.n}
            for n, est in by.items()}
    folder = Path(claims_settings.report_dir) / "tracer"
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "accuracy.json", json.dumps({"by_length": rows}, indent=1) + "\n")
    programs.selection_rule(answered.right, steps, min_accuracy=thresholds.min_accuracy,
                            min_length=thresholds.min_length, level=1 - 0.05 / len(set(steps)))
