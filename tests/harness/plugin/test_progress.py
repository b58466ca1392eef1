"""`harness.progress`: the status text, nesting, the sink contract, and that progress never
changes a number a measure returns."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rich.box  # noqa: F401
import rich.console  # noqa: F401
import rich.table  # noqa: F401
import torch

# The in-process pytester runs below render the report with Rich: imported once here, so pytester's
# sys.modules snapshot keeps one copy of it (a second copy breaks Rich's style objects).
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
    from tests._support.tiny import tiny_model

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


# --- the live line in pytest's terminal -----------------------------------------------------

LONG_CLAIM = '''
import pytest

from harness import progress
from harness.stats.estimate import Estimate
from harness.verdicts.expect import expect


@pytest.mark.claim("A long claim shows its progress and measures the same")
def test_long_claim(claim_seed):
    total = 0
    with progress.task("sweep encoder.12.resid_post", total=5, unit="examples") as bar:
        for i in range(5):
            total += i
            bar.advance()
    expect(Estimate(value=float(total), ci_low=total - 1.0, ci_high=total + 1.0, level=0.95, n=5,
                    method="bootstrap BCa", seed=claim_seed, statistic="sum")).positive()
'''

SHOWN = "long: sweep encoder.12.resid_post"


@pytest.fixture
def long_study(pytester):
    pytester.mkpydir("long")
    pytester.path.joinpath("long", "test_long.py").write_text(LONG_CLAIM)
    return pytester


def _claims(pytester, directory):
    report = json.loads((pytester.path / directory / "report.json").read_text())
    return [{k: c[k] for k in ("nodeid", "outcome", "evidence")} for c in report["claims"]]


def test_forced_on_the_line_names_the_study_and_the_task_and_is_erased(long_study):
    result = long_study.runpytest("-p", "no:cacheprovider", "--claims-progress", "on", "--claims-report", "on")
    result.assert_outcomes(passed=1)
    lines = result.outlines  # split at "\r" too: each rewrite of the line is one entry
    assert any(line.startswith(f"{SHOWN} 0/5 examples") for line in lines)
    # the line is erased and pytest's own line (the file and its dot) written back
    assert any(line.startswith("long/test_long.py .") for line in lines)


@pytest.mark.parametrize("args", [(), ("-q",), ("--claims-progress", "off"), ("-n", "1", "--claims-progress", "on")],
                         ids=["not-a-terminal", "quiet", "off", "xdist-worker"])
def test_quiet_where_nobody_watches(long_study, args):
    result = long_study.runpytest("-p", "no:cacheprovider", *args)
    result.assert_outcomes(passed=1)
    assert SHOWN not in result.stdout.str()


def test_the_live_line_changes_no_number_in_the_report(long_study):
    long_study.runpytest("-p", "no:cacheprovider", "--claims-progress", "on", "--claims-report", "on")
    long_study.runpytest("-p", "no:cacheprovider", "--claims-progress", "off", "--claims-report", "off")
    assert _claims(long_study, "on") == _claims(long_study, "off")


def test_a_bad_mode_is_a_usage_error_naming_the_choices(long_study):
    result = long_study.runpytest("-p", "no:cacheprovider", "--claims-progress", "sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--claims-progress*invalid choice*'sometimes'*auto*on*off*"])


def test_study_of_is_the_test_files_folder():
    from harness.plugin.live import study_of

    assert study_of("claims/tacgen/test_steering.py") == "tacgen"
    assert study_of("test_root.py") == ""
