"""The code-generation study's setup: the unsteered baseline needs no site (so no SAE), a model
that ships no SAE is told how to pass one, and a threshold row's ``n_problems`` keeps each split's
first problems."""

from __future__ import annotations

import pytest
import torch

from tests._support.tiny import tiny_model

from claims.codegen import measure
from claims.codegen.conftest import _default_sae, first_problems
from claims.codegen.measure import Condition
from claims.codegen.settings import THRESHOLDS
from harness import DataError
from harness.data import MbppProblem

PROBLEM = MbppProblem(1, "Write a function to add one.", "def f(x):\n    return x + 1", ("assert f(1) == 2",))


def _steer(conditions, directions, site):
    return measure.steer(tiny_model("gemma-2-2b"), [PROBLEM], ["Write a function"], conditions,
                         directions=directions, site=site, scale=1.0, max_new_tokens=3, executor=measure.Executor())


def test_the_unsteered_run_needs_no_site_and_a_steered_one_does():
    alone = _steer([Condition(None)], {}, None)[Condition(None)]
    sited = _steer([Condition(None)], {}, "blocks.3.resid_post")[Condition(None)]
    assert alone == sited and len(alone.tokens[0]) > 0
    with pytest.raises(DataError, match=r"condition 'd' at 2 steers, but `site` is None"):
        _steer([Condition(None), Condition("d", 2.0)], {"d": torch.ones(32)}, None)


@pytest.mark.parametrize("spec", ["gguf:smollm2-135m-instruct", "google/gemma-2-2b"])
def test_a_model_that_ships_no_sae_is_told_how_to_pass_one(spec):
    with pytest.raises(DataError, match=rf"model '{spec}' has no SAE: .* pass one with --claims-sae codegen=FOLDER"):
        _default_sae(spec)


def test_a_model_folder_without_sae_names_the_folder(tmp_path):
    with pytest.raises(DataError, match=rf"has no SAE beside it \({tmp_path / 'sae'}\); pass one with --claims-sae"):
        _default_sae(str(tmp_path))


def test_n_problems_keeps_the_first_problems_of_each_split():
    splits = {"selection": list(range(100, 130)), "test": list(range(11, 25))}
    assert first_problems(splits, None) == splits
    assert first_problems(splits, 12) == {"selection": list(range(100, 112)), "test": list(range(11, 23))}
    assert first_problems(splits, 20)["test"] == splits["test"]     # a split shorter than n keeps all


@pytest.mark.parametrize("n", [9, 0, True, 60.0, "60"])
def test_a_bad_n_problems_is_a_clear_error(n):
    with pytest.raises(DataError, match=rf"`n_problems` of the codegen threshold row must be None \(every problem\) "
                                        rf"or an integer of at least 10, got {n!r}"):
        first_problems({"test": list(range(30))}, n)


def test_the_real_model_rows_measure_sixty_problems_and_the_source_rows_all():
    assert THRESHOLDS["gguf:smollm2-135m-instruct"].n_problems == THRESHOLDS["gguf:gemma-3-270m"].n_problems == 60
    assert THRESHOLDS["google/gemma-2-2b"].n_problems is None and THRESHOLDS["fixture:codegen"].n_problems is None


def test_the_baseline_is_written_with_each_problems_status_and_code(tmp_path):
    import json

    from claims.codegen.artifacts import write_baseline

    problems = [PROBLEM, MbppProblem(2, "Write a function to add two.", "def g(x):\n    return x + 2",
                                     ("assert g(1) == 3",))]
    run = measure.Outcomes(("a", "b"), ("def f(x):\n    return x + 1", "def g(x) return"), ((1,), (2,)),
                           ("passed", "syntax_error"))
    write_baseline(problems, run, tmp_path)
    saved = json.loads((tmp_path / "baseline.json").read_text())
    assert saved["pass_rate"] == 0.5 and saved["statuses"] == {"passed": 1, "syntax_error": 1}
    assert [(p["task_id"], p["status"], p["code"]) for p in saved["problems"]] == [
        (1, "passed", "def f(x):\n    return x + 1"), (2, "syntax_error", "def g(x) return")]
    with pytest.raises(DataError, match="`problems` has 1 problems but `baseline` 2 runs"):
        write_baseline(problems[:1], run, tmp_path)
