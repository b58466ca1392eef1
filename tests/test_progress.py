"""`harness.progress`: the status text, nesting, the sink contract, and that progress never
changes a number a measure returns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import progress


@pytest.fixture
def lines():
    seen: list[str | None] = []
    previous = progress.set_sink(seen.append)
    progress._last_emit = 0.0
    yield seen
    progress.set_sink(previous)


@pytest.fixture
def unthrottled(monkeypatch):
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 0.0)


def test_a_task_shows_its_label_count_and_unit_then_clears(lines, unthrottled):
    with progress.task("sweep encoder.12.resid_post", total=500, unit="examples") as bar:
        bar.update(320)
    assert lines[0] == "sweep encoder.12.resid_post 0/500 examples"
    assert "sweep encoder.12.resid_post 320/500 examples" in lines
    assert lines[-1] is None
    assert progress.status() is None


def test_nested_tasks_show_outermost_first(lines, unthrottled):
    with progress.task("build fixture:arith", unit="steps") as outer:
        outer.advance(3, note="loss 0.412")
        with progress.task("greedy decoding", total=8, unit="prompts") as inner:
            inner.advance(4)
            assert progress.status() == "build fixture:arith 3 steps loss 0.412 · greedy decoding 4/8 prompts"
        assert progress.status() == "build fixture:arith 3 steps loss 0.412"
    assert lines[-1] is None


def test_track_counts_items_and_closes_when_the_loop_raises(lines, unthrottled):
    seen = []
    with pytest.raises(RuntimeError):
        for i in progress.track(range(5), "cells", unit="cells"):
            seen.append(progress.status())
            if i == 2:
                raise RuntimeError("boom")
    assert seen[:3] == ["cells 0/5 cells", "cells 1/5 cells", "cells 2/5 cells"]
    # the generator is closed when the loop is left: the task goes away with it
    import gc

    gc.collect()
    assert progress.status() is None


def test_updates_are_throttled_but_the_last_close_always_reaches_the_sink(lines, monkeypatch):
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 3600.0)
    with progress.task("long", total=1000) as bar:
        for _ in range(1000):
            bar.advance()
    assert lines == ["long 0/1000", None]


def test_without_a_sink_a_task_shows_nothing_and_still_counts():
    previous = progress.set_sink(None)
    try:
        with progress.task("quiet", total=2) as bar:
            bar.advance(2)
            assert progress.status() == "quiet 2/2"
    finally:
        progress.set_sink(previous)


@pytest.mark.parametrize("total", [-1, True])
def test_a_bad_total_names_the_argument(total):
    with pytest.raises(ValueError, match="total="):
        with progress.task("x", total=total):
            pass


def test_a_sweep_returns_the_same_numbers_with_and_without_the_live_line(lines, unthrottled):
    from harness.measures.scores import logprob_diff
    from harness.measures.sweeps import scorer, sweep, symmetric
    from tests.tiny import tiny_model

    model = tiny_model("byt5-small")
    inputs = [f"goal {i} ⊢ p{i} → q" for i in range(7)]
    direction = torch.randn(model.width(model.site("encoder.2.resid_post")), generator=torch.Generator().manual_seed(0))
    args = dict(at="encoder.2.resid_post", direction=direction, alphas=symmetric(2.0, steps=5),
                score=scorer(logprob_diff, "intro", "apply"), batch_size=4)
    shown = sweep(model, inputs, **args).scores
    assert any(line and line.startswith("sweep encoder.2.resid_post") for line in lines)
    progress.set_sink(None)
    quiet = sweep(model, inputs, **args).scores
    np.testing.assert_array_equal(shown, quiet)
