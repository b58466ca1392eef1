"""Every seeded draw of the probes and the arithmetic study is keyed by example: an example gets
the same draw whatever the other rows, their order or its own row (`harness.measures.probes` controls
and balancing; `claims.arith` attention controls and rebracketed patching pairs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from claims.arith import measure
from claims.arith.rebracket import value
from claims.arith.test_attention import PATTERNS, pattern_ratios, random_targets
from harness.errors import DataError, ShapeError
from harness.measures.probes import balance, control_labels, fit_control, fit_probe

ORDERS = {"reversed": lambda n: np.arange(n)[::-1].copy(),
          "shuffled": lambda n: np.random.default_rng(7).permutation(n),
          "rolled": lambda n: np.roll(np.arange(n), 5)}


def rows(n: int = 120, d: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = np.array(["+", "-", "*"])[rng.integers(0, 3, size=n)]
    keys = [f"example {i}" for i in range(n)]
    return x, y, keys


# --------------------------------------------------------------------------- probes: the control


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("with_keys", [True, False], ids=["keys", "features"])
def test_a_row_keeps_its_control_label_whatever_the_order_of_the_rows(order, with_keys):
    x, y, keys = rows()
    perm = ORDERS[order](len(y))
    base = control_labels(x, y, seed=3, keys=keys if with_keys else None)
    moved = control_labels(x[perm], y[perm], seed=3, keys=[keys[i] for i in perm] if with_keys else None)
    np.testing.assert_array_equal(moved, base[perm])
    assert sorted(base.tolist()) == sorted(y.tolist())          # the same classes, the same counts
    assert (base != y).any()


def test_with_keys_the_control_labels_ignore_the_last_bits_of_the_features():
    x, y, keys = rows()
    nudged = x + np.random.default_rng(1).choice([-1, 1], size=x.shape) * 1e-12 * np.abs(x)
    np.testing.assert_array_equal(control_labels(nudged, y, seed=3, keys=keys), control_labels(x, y, seed=3, keys=keys))


def test_the_control_labels_follow_the_seed():
    x, y, keys = rows()
    a, b = (control_labels(x, y, seed=s, keys=keys) for s in (3, 4))
    assert (a != b).any()


@pytest.mark.parametrize("with_keys", [True, False], ids=["keys", "features"])
def test_the_control_probe_is_bit_identical_whatever_the_order_of_the_rows(with_keys):
    x, y, keys = rows()
    perm = ORDERS["shuffled"](len(y))
    a = fit_control(x, y, seed=2, keys=keys if with_keys else None, max_iter=50)
    b = fit_control(x[perm], y[perm], seed=2, keys=[keys[i] for i in perm] if with_keys else None, max_iter=50)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    np.testing.assert_array_equal(a.classes, b.classes)


def test_the_control_probe_is_the_probe_fitted_on_the_control_labels():
    x, y, keys = rows()
    control = fit_control(x, y, seed=2, keys=keys, max_iter=50)
    plain = fit_probe(x, control_labels(x, y, seed=2, keys=keys), max_iter=50)
    torch.testing.assert_close(control.weight, plain.weight, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- probes: balancing


def strata_rows(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    strata = rng.integers(6, 10, size=n)
    labels = rng.random(n) < strata / 12
    keys = [f"expression {i}" for i in range(n)]
    return labels, strata, keys


@pytest.mark.parametrize("order", ORDERS)
def test_balancing_keeps_the_same_examples_whatever_the_order_of_the_rows(order):
    labels, strata, keys = strata_rows()
    perm = ORDERS[order](len(labels))
    kept = {keys[i] for i in balance(labels, strata, seed=0, keys=keys)}
    moved = balance(labels[perm], strata[perm], seed=0, keys=[keys[i] for i in perm])
    assert {keys[perm[i]] for i in moved} == kept
    assert np.all(np.diff(moved) > 0)                           # still sorted indices


def test_balancing_one_stratum_does_not_depend_on_the_other_strata():
    labels, strata, keys = strata_rows()
    mine = strata == 7
    alone = {keys[i] for i in np.flatnonzero(mine)[balance(labels[mine], strata[mine], seed=0,
                                                            keys=[k for k, m in zip(keys, mine) if m])]}
    together = {keys[i] for i in balance(labels, strata, seed=0, keys=keys) if strata[i] == 7}
    assert alone == together


def test_balancing_follows_the_seed_and_without_keys_the_positions():
    labels, strata, keys = strata_rows()
    assert set(balance(labels, strata, seed=0, keys=keys)) != set(balance(labels, strata, seed=1, keys=keys))
    np.testing.assert_array_equal(balance(labels, strata, seed=0), balance(labels, strata, seed=0,
                                                                            keys=range(len(labels))))


@pytest.mark.parametrize("call, error, match", [
    (lambda: control_labels(np.eye(4), [0, 1, 0, 1], seed=0, keys=["a", "b"]), ShapeError,
     "`keys` has 2 entries but `features` has 4 rows"),
    (lambda: balance([0, 1, 0, 1], seed=0, keys=["a"] * 3), ShapeError, "`keys` has 3 entries but `labels` has 4"),
    (lambda: fit_control(np.eye(4), [0, 1, 0, 1], seed=0, keys="abcd"), DataError, "one key per row"),
    (lambda: balance([0, 1, 0, 1], seed=0, keys=[1.5, 2.5, 3.5, 4.5]), DataError, "`keys` entry 0 is 1.5"),
    (lambda: fit_control(np.eye(4), [0, 1, 0, 1], seed=0.5), DataError, "`seed` of fit_control must be an integer"),
])
def test_bad_keys_or_seed_name_the_argument_and_the_fix(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --------------------------------------------------------------------------- arith: attention control


def attention_row(expression: str, seed: int) -> tuple[list[str], np.ndarray]:
    """(tokens, causal [layers, heads, n, n] weights) for a character-level toy row."""
    tokens = list(expression)
    n = len(tokens)
    w = np.tril(np.random.default_rng(seed).random((2, 3, n, n)) + 0.01)
    return tokens, w / w.sum(-1, keepdims=True)


EXPRESSIONS = ["41-((6+9)-7)=", "(7-2)+(0+5)=", "3+4-5=", "4-(1-5)=", "((1+2)-(3*4))+5=", "9*8-(7+6)="]


@pytest.mark.parametrize("pattern", ["to-operators", "to-matching-paren"])
def test_an_example_s_random_positions_are_the_same_alone_and_among_others(pattern):
    table = [attention_row(e, i) for i, e in enumerate(EXPRESSIONS)]
    together = pattern_ratios(table, pattern, seed=5)
    backwards = pattern_ratios(table[::-1], pattern, seed=5)[::-1]
    alone = np.concatenate([pattern_ratios([r], pattern, seed=5) for r in table
                            if PATTERNS[pattern](r[0])])                     # rows with the pattern's targets
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(together, backwards)
    assert not np.array_equal(together, pattern_ratios(table, pattern, seed=6))


def test_random_targets_depend_on_the_seed_and_the_key_only():
    targets = [(12, [3, 8]), (20, [1])]
    a = random_targets(targets, seed=0, key="x")
    assert a == random_targets(targets, seed=0, key="x")
    assert [q for q, _ in a] == [12, 20] and [len(k) for _, k in a] == [2, 1]
    assert all(0 <= k <= q for q, keys in a for k in keys)
    draws = {str(random_targets(targets, seed=s, key=k)) for s in range(4) for k in ("x", "y")}
    assert len(draws) > 1


# --------------------------------------------------------------------------- arith: patching pairs


def arith_row(expression: str) -> measure.Row:
    depth = max(np.cumsum([(c == "(") - (c == ")") for c in expression]))
    return measure.Row(expression, str(value(expression)), depth > 0, int(depth), len(expression))


PAIR_EXPRESSIONS = ["41-((6+9)-7)=", "(7-2)+(0+5)=", "1+(2+3)=", "3+4-5=", "4-(1-5)=", "((1+2)-(3*4))+5=",
                    "(9-8)*7-6=", "12-(3+4)+5=", "(8+1)-(2+6)=", "5-(6-(7-8))="]


def corrupt_of(pairs: measure.Pairs) -> dict[str, str]:
    return dict(zip(pairs.clean, pairs.corrupt))


def test_a_row_s_rebracketing_is_the_same_alone_and_among_others_in_any_order():
    table = [arith_row(e) for e in PAIR_EXPRESSIONS]
    ok = np.ones(len(table), dtype=bool)
    together = corrupt_of(measure.rebracketed_pairs(table, ok, clean_correct=True, n=100, seed=0))
    assert len(together) >= 5
    backwards = corrupt_of(measure.rebracketed_pairs(table[::-1], ok, clean_correct=True, n=100, seed=0))
    assert backwards == together
    for r in table:
        if r.expression in together:
            alone = measure.rebracketed_pairs([r], ok[:1], clean_correct=True, n=100, seed=0)
            assert corrupt_of(alone) == {r.expression: together[r.expression]}
    other_seed = corrupt_of(measure.rebracketed_pairs(table, ok, clean_correct=True, n=100, seed=1))
    assert other_seed.keys() == together.keys()


def test_the_first_n_pairs_are_the_same_rows_whatever_the_order():
    table = [arith_row(e) for e in PAIR_EXPRESSIONS]
    ok = np.ones(len(table), dtype=bool)
    first = measure.rebracketed_pairs(table, ok, clean_correct=True, n=3, seed=0)
    for perm in (ORDERS["reversed"](len(table)), ORDERS["shuffled"](len(table))):
        moved = measure.rebracketed_pairs([table[i] for i in perm], ok, clean_correct=True, n=3, seed=0)
        assert moved == first                                   # same pairs, same order
