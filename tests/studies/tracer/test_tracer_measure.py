"""The tracer study's program machinery on a tokenizer that is not the fixture's: pairs are drawn
and checked in the model's own tokens (numbers split into digits, multi-token answers), positions
get their roles, and a model that answers too few programs is a clear error that counts them."""

from __future__ import annotations

from harness.verdicts.context import run_context

import random

import numpy as np
import pytest
import torch

from harness import DataError, ShapeError
from harness.models.load import from_module

from claims.tracer import measure, programs
from claims.tracer.settings import ROLES

data = programs.generator()


@pytest.fixture(scope="module")
def digits():
    """A random-weight Qwen2 whose tokenizer gives each character its own token."""
    import transformers as tf

    from tests.studies.tracer.test_tracer_study import _digit_tokenizer

    config = tf.Qwen2Config(vocab_size=24, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=128,
                            pad_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    return from_module(tf.Qwen2ForCausalLM(config), _digit_tokenizer(), name="digits")


@pytest.fixture(scope="module")
def rows():
    return data.programs(7, 300)


def _all_right(model, progs, answers, **kwargs):
    return programs.Answered(np.ones(len(progs), dtype=bool), np.zeros(len(progs)))


def test_pairs_are_equal_length_in_the_models_tokens(digits, rows, monkeypatch):
    monkeypatch.setattr(programs, "answered", _all_right)
    got = programs.draw_pairs(digits, rows, 40, steps=6, seed=1)
    assert len(got) == 40
    for pair in got:
        a, b = digits.tokenize([pair["program_a"], pair["program_b"]])
        assert len(a) == len(b) and a != b
        data.check_pair({k: pair[k] for k in data.PAIR_FIELDS}, length=programs.length_in(digits))
        # the answers' first tokens differ, so the logit difference of first tokens can move
        assert programs.answer_ids(digits, pair["ground_truth_a"])[0] != programs.answer_ids(digits, pair["ground_truth_b"])[0]
        assert set(pair["answer_logits"]) == {"a", "b"}
    assert any(len(programs.answer_ids(digits, p["ground_truth_a"])) == 2 for p in got)   # multi-token answers


def test_roles_follow_the_models_tokens(digits):
    pair = {"program_a": "a=3;b=a+12;c=7;b=b*1;c?", "program_b": "a=3;b=a+13;c=7;b=b*1;c?", "step": 1,
            "kind": "operand", "divergence_index": 9, "ground_truth_a": 7, "ground_truth_b": 7}
    where = programs.roles(digits, pair)
    text = pair["program_a"]                    # one token per character
    assert where["divergence"] == [9]           # the "2" of 12
    assert where["step"] == [10]                # the step's ";"
    assert where["readers"] == [text.index(";b=b*1;") + 6]   # b=b*1 reads b
    assert where["others"] == [text.index(";c=7;") + 4]      # c=7 reads nothing changed
    assert where["query"] == [len(text) - 2] and where["final"] == [len(text) - 1]
    assert programs.step_span(digits, pair) == (4, 11)
    assert tuple(where) == ROLES


def test_an_overwritten_variable_has_no_readers_after_it(digits):
    pair = {"program_a": "a=3;a=5;b=a+1;b?", "program_b": "a=4;a=5;b=a+1;b?", "step": 0}
    where = programs.roles(digits, pair)
    assert where["readers"] == [] and where["others"] == [len("a=3;a=5;b=a+1;") - 1, len("a=3;a=5;") - 1][::-1]


def test_a_model_that_answers_nothing_is_an_error_that_counts(digits, rows):
    with pytest.raises(DataError, match=r"formed 0 of the 10 pairs asked for: the model answers \d+ of the \d+ "
                                        r"test programs of 6 steps right.*pairs need both programs answered right"):
        programs.draw_pairs(digits, rows, 10, steps=6, seed=0)
    with pytest.raises(DataError, match="no program of 11 steps"):
        programs.draw_pairs(digits, rows, 10, steps=11, seed=0)


def test_answered_is_teacher_forced_greedy(digits):
    progs = ["a=3;a?", "a=12;b=a;b?"]
    got = programs.answered(digits, progs, [3, 12])
    ids = digits.tokenize(progs)
    with torch.no_grad():
        for i, (p, answer) in enumerate(zip(ids, ["3", "12"])):
            target = digits.tokenize([answer])[0]
            logits = digits.module(input_ids=torch.tensor([p + target[:-1]])).logits[0]
            want = all(int(logits[len(p) - 1 + j].argmax()) == t for j, t in enumerate(target))
            assert bool(got.right[i]) == want
            assert got.logit[i] == pytest.approx(float(logits[len(p) - 1, target[0]]), abs=1e-5)


def test_role_means_and_the_crossing_layer():
    with run_context(seed=0, resamples=999):   # as inside a claim: the bootstraps take the claim's seed
        _role_means_and_the_crossing_layer()


def _role_means_and_the_crossing_layer():
    values = torch.full((3, 4, 8), float("nan"))
    values[:, :, :6] = 0.0
    where = [{"divergence": [1], "step": [2], "readers": [3], "others": [], "query": [4], "final": [5]}] * 3
    for layer in range(4):
        values[:, layer, 1] = 1.0 - layer / 3      # the divergence fades ...
        values[:, layer, 5] = layer / 3            # ... as the final position takes over
    by = programs.by_role(values, where)
    assert by.shape == (3, 4, len(ROLES)) and np.isnan(by[:, :, ROLES.index("others")]).all()
    assert measure.crossing_layer(by) == 3      # 2/3 > 1/3 first at the third layer
    with pytest.raises(DataError, match="unknown role"):
        measure.role("nowhere")
    rng = random.Random(0)
    noisy = by + np.array([[[rng.gauss(0, 0.01) for _ in ROLES] for _ in range(4)] for _ in range(3)])
    from harness import map_agreement

    assert map_agreement(noisy, noisy, name="rho").value == pytest.approx(1.0)


def test_the_selection_rule_picks_the_longest_length_whose_ci_clears_the_bar_and_says_why_none_does():
    # Wilson 95% lower bounds, by hand (z = 1.959964): 60 of 60 -> 0.9398; 54 of 60 -> 0.7985; 55 of 60 -> 0.8113
    z = 1.959964
    def wilson_low(k, n):
        p = k / n
        return (p + z * z / (2 * n) - z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5) / (1 + z * z / n)
    assert wilson_low(54, 60) < 0.8 < wilson_low(55, 60)
    steps = [4] * 60 + [6] * 60 + [7] * 60 + [8] * 60
    right = [True] * 60 + [True] * 55 + [False] * 5 + [True] * 60 + [True] * 54 + [False] * 6
    # 4 steps is below min_length; 8 steps' CI (54 of 60) misses the bar; 7 is the longest that clears it
    assert programs.selection_rule(right, steps, min_accuracy=0.8, min_length=6, level=0.95) == 7
    assert programs.selection_rule(right, steps, min_accuracy=0.8, min_length=6, level=0.995) == 7   # 60 of 60 only
    by = programs.accuracy_by_length(right, steps, level=0.95)
    assert list(by) == [4, 6, 7, 8] and by[6].ci_low == pytest.approx(wilson_low(55, 60), abs=1e-4)
    only_short = [True] * 60 + [False] * 180
    with pytest.raises(DataError, match=r"does not meet the study's selection rule: no length of at least 6 steps has "
                                        r"its accuracy CI above 80% \(best there: 0.0% \[0.0%, 6.0%\] \(0 of 60\) at 8 "
                                        r"steps; best at any length: 100.0% \[94.0%, 100.0%\] \(60 of 60\) at 4 steps; "
                                        r"95.0% Wilson CIs\)"):
        programs.selection_rule(only_short, steps, min_accuracy=0.8, min_length=6, level=0.95)
    with pytest.raises(ShapeError, match=r"`right` and `n_steps` must have one entry per test program"):
        programs.selection_rule(right[:5], steps, min_accuracy=0.8, min_length=6, level=0.95)
