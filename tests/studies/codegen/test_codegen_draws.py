"""The code-generation study's steering controls over several draws: a direction given as a
stack of k draws steers each problem with its own draw (`measure.steer(..., draw_of=)`), and
`measure.balanced_draws` deals the problems to the draws evenly, by seed and task id."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from tests._support.tiny import tiny_model

from claims.codegen import measure
from claims.codegen.measure import Condition
from harness import DataError
from harness.data import MbppProblem

PROBLEMS = [MbppProblem(i, f"Write a function number {i}.", "def f(x):\n    return x", ("assert f(1) == 1",))
            for i in range(3)]
PROMPTS = ["Write a function", "def f(x):", "return"]


def _steer(conditions, directions, **kw):
    return measure.steer(tiny_model("gemma-2-2b"), PROBLEMS, PROMPTS, conditions, directions=directions,
                         site="blocks.1.resid_post", scale=1.0, max_new_tokens=4, executor=measure.Executor(), **kw)


def test_each_problem_is_steered_by_its_own_draw():
    draws = torch.randn(2, 32, generator=torch.Generator().manual_seed(0)) * 20
    mixed = _steer([Condition("d", 1.0)], {"d": draws}, draw_of=[1, 0, 1])[Condition("d", 1.0)]
    alone = {j: _steer([Condition("d", 1.0)], {"d": draws[j]})[Condition("d", 1.0)] for j in (0, 1)}
    assert mixed.tokens == (alone[1].tokens[0], alone[0].tokens[1], alone[1].tokens[2])
    assert alone[0].tokens != alone[1].tokens, "the two draws must steer differently"


@pytest.mark.parametrize("draw_of", [None, [0, 1], [0, 1, 2]])
def test_a_stack_of_draws_needs_one_draw_index_per_problem(draw_of):
    with pytest.raises(DataError, match=r"'d' is 2 draws; give `draw_of`, one draw index in 0..1 per problem \(3\)"):
        _steer([Condition("d", 1.0)], {"d": torch.ones(2, 32)}, draw_of=draw_of)


def test_balanced_draws_deal_the_problems_evenly_by_seed():
    ids = list(range(100, 123))
    dealt = measure.balanced_draws(ids, 5, seed=0)
    assert set(dealt) == set(ids)
    assert sorted(Counter(dealt.values()).values()) == [4, 4, 5, 5, 5]
    assert dealt == measure.balanced_draws(ids, 5, seed=0)
    assert dealt != measure.balanced_draws(ids, 5, seed=1)
