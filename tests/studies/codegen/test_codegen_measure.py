"""The code-generation study's measurements on bad input and on small known cases: feature
separation (AUROC per feature, and no selection when the baseline solves all or nothing), the
selection rule, flips, steering conditions (empty or non-finite coefficients, unknown directions,
dead features), the SAE's site and width, and generated code that never terminates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests._support.tiny import tiny_model

from claims.codegen import measure
from claims.codegen.measure import Condition, Outcomes
from harness import DataError
from harness.data import MbppProblem
from harness.errors import ShapeError, SiteError


def test_separation_is_the_auroc_of_each_feature():
    solved = np.array([True, True, False, False])
    means = np.array([[3.0, 0.0, 1.0], [2.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(measure.separation(means, solved), [1.0, 0.5, 0.5])
    np.testing.assert_allclose(measure.separation(-means, solved), [0.0, 0.5, 0.5])


@pytest.mark.parametrize("solved", [[True] * 4, [False] * 4])
def test_no_feature_can_be_selected_when_the_baseline_solves_everything_or_nothing(solved):
    with pytest.raises(DataError, match=rf"solved {sum(solved)} of 4 .* no feature can be selected"):
        measure.separation(np.ones((4, 3)), np.array(solved))


def test_the_rule_takes_the_smallest_coefficient_in_the_band_with_few_syntax_errors():
    rows = [{"coefficient": c, "flip_rate": f, "syntax_error_rate": s}
            for c, f, s in [(1, 0.0, 0.0), (10, 0.1, 0.0), (30, 0.3, 0.2), (100, 0.4, 0.05), (300, 0.9, 1.0)]]
    assert measure.select_coefficient(rows, band=(0.2, 0.6), max_syntax=0.1)["coefficient"] == 100
    assert measure.select_coefficient(rows[::-1], band=(0.2, 0.6), max_syntax=0.1)["coefficient"] == 100
    assert measure.select_coefficient(rows, band=(0.2, 0.6), max_syntax=0.01) is None


def _outcomes(statuses):
    n = len(statuses)
    return Outcomes(("",) * n, ("",) * n, ((),) * n, tuple(statuses))


def test_flips_count_both_directions_against_the_baseline():
    base = _outcomes(["passed", "passed", "failed", "syntax_error"])
    steered = _outcomes(["passed", "failed", "passed", "passed"])
    f = measure.flips(base, steered)
    assert f["fixed"].tolist() == [False, False, True, True]
    assert f["broken"].tolist() == [False, True, False, False]


PROBLEM = MbppProblem(1, "Write a function to add one.", "def f(x):\n    return x + 1", ("assert f(1) == 2",))


@pytest.mark.parametrize("conditions, match", [
    ([], "`conditions` is empty"),
    ([Condition("d", math.inf)], "not finite"),
    ([Condition("d", math.nan)], "not finite"),
    ([Condition("other", 1.0)], "'other' is not one of"),
])
def test_bad_steering_conditions_are_clear_errors(conditions, match):
    model = tiny_model("gemma-2-2b")
    with pytest.raises(DataError, match=match):
        measure.steer(model, [PROBLEM], ["Write"], conditions, directions={"d": torch.ones(32)},
                      site="blocks.3.resid_post", scale=1.0, max_new_tokens=2, executor=measure.Executor())


def test_a_dead_features_decoder_row_cannot_steer():
    with pytest.raises(DataError, match="norm 0"):
        measure.unit(torch.zeros(8))
    assert float(measure.unit(torch.full((4,), 3.0)).norm()) == pytest.approx(1.0)


def test_a_feature_index_out_of_range_is_a_clear_error():
    from tests.harness.saes.test_saes import random_sae

    from harness.saes import feature_direction

    model = tiny_model("gemma-2-2b")
    sae = random_sae(32, 16, "blocks.12.hook_resid_post")
    with pytest.raises(DataError, match="feature 16 is out of range: the SAE has d_sae=16"):
        feature_direction(model, sae, 16)
    assert feature_direction(model, sae, 15).vector.shape == (32,)


def test_a_direction_of_another_width_is_refused_at_the_site():
    model = tiny_model("gemma-2-2b")
    with pytest.raises((ShapeError, DataError, SiteError), match="32|width|shape"):
        measure.steer(model, [PROBLEM], ["Write a function"], [Condition("d", 1.0)], directions={"d": torch.ones(16)},
                      site="blocks.3.resid_post", scale=1.0, max_new_tokens=2, executor=measure.Executor())


def test_code_that_never_terminates_is_a_timeout_not_a_hang():
    looping = MbppProblem(2, "Loop.", "def f(x):\n    while True:\n        pass", ("assert f(1) == 2",))
    executor = measure.Executor()
    executor_limits = dict(measure.EXECUTION_LIMITS)
    measure.EXECUTION_LIMITS["timeout_s"] = 1.0
    try:
        statuses = executor.statuses([looping, PROBLEM], [looping.code, PROBLEM.code])
    finally:
        measure.EXECUTION_LIMITS.update(executor_limits)
    assert statuses == ["timeout", "passed"]
    assert executor.statuses([PROBLEM], [PROBLEM.code]) == ["passed"] and executor.executed == 2   # run once
