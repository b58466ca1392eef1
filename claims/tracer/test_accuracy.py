"""Finding 1: the model answers held-out programs, by program length; the pairs are drawn at the
longest length whose accuracy CI lies above the bar, and that length is at least the source's 6."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness import expect, stats
from harness.atomic import write_text_atomic

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


def test_the_pairs_length_is_the_longest_above_the_bar(splits, answered, thresholds, claims_settings):
    """The row's length is the longest whose accuracy CI lies above the bar, and it is at least
    the source's 6; the accuracies go to ``tracer/accuracy.json``. The CIs are at the level the
    per-length claims are judged at (Bonferroni over the lengths)."""
    rows = {}
    lengths = sorted({r["n_steps"] for r in splits["test"]})
    for length in lengths:
        est = _accuracy(splits, answered, length, level=1 - 0.05 / len(lengths))
        rows[length] = {"accuracy": round(est.value, 4), "ci": [round(est.ci_low, 4), round(est.ci_high, 4)],
                        "n": est.n}
    folder = Path(claims_settings.report_dir) / "tracer"
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "accuracy.json", json.dumps({"by_length": rows}, indent=1) + "\n")
    above = [length for length, row in rows.items() if row["ci"][0] >= thresholds.min_accuracy]
    longest = max(above, default=0)
    assert longest == thresholds.length, (
        f"the longest length whose accuracy CI lies above {thresholds.min_accuracy} is {longest} "
        f"(accuracies {rows}); the threshold row says {thresholds.length}: set `length` to it")
    assert longest >= thresholds.min_length
