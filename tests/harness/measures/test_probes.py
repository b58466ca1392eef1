"""Linear probes and their controls (harness.measures.probes): calibration, determinism, balancing, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.errors import DataError, ShapeError
from harness.measures.probes import balance, fit_control, fit_probe


def gaussian(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def planted(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels set by a linear direction of the features (plus a little label noise: ~5%)."""
    x = gaussian(n, seed=seed)
    direction = np.random.default_rng(99).normal(size=x.shape[1])
    noise = np.random.default_rng(seed + 1).normal(scale=0.2 * np.linalg.norm(direction), size=n)
    return x, x @ direction + noise > 0


def test_a_probe_on_random_labels_scores_chance():
    x, x_test = gaussian(400, seed=0), gaussian(2000, seed=1)
    y, y_test = (np.random.default_rng(s).random(n) < 0.5 for s, n in ((2, 400), (3, 2000)))
    accuracy = fit_probe(x, y).correct(x_test, y_test).mean()
    assert 0.45 < accuracy < 0.55


def test_a_probe_on_a_planted_linear_signal_scores_high_and_its_control_chance():
    (x, y), (x_test, y_test) = planted(400, seed=0), planted(2000, seed=10)
    assert fit_probe(x, y).correct(x_test, y_test).mean() > 0.9
    assert 0.4 < fit_control(x, y, seed=0).correct(x_test, y_test).mean() < 0.6


def test_fitting_is_deterministic_and_the_control_follows_its_seed():
    x, y = planted(200, seed=0)
    a, b = fit_probe(x, y), fit_probe(x, y)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert torch.equal(fit_control(x, y, seed=3).weight, fit_control(x, y, seed=3).weight)
    assert not torch.equal(fit_control(x, y, seed=3).weight, fit_control(x, y, seed=4).weight)


def test_standardised_features_make_the_probe_blind_to_a_feature_s_scale():
    x, y = planted(300, seed=0)
    scaled = x * np.geomspace(1e-3, 1e3, x.shape[1])
    np.testing.assert_array_equal(fit_probe(x, y).predict(x), fit_probe(scaled, y).predict(scaled))


def test_several_classes_of_any_label_type_and_a_constant_feature():
    x = gaussian(300, d=4, seed=0)
    labels = np.array(["+", "-", "*"])[np.argmax(x[:, :3], 1)]
    x[:, 3] = 7.0                                   # constant: left unscaled, no NaN
    probe = fit_probe(x, labels)
    assert sorted(probe.classes.tolist()) == ["*", "+", "-"]
    assert probe.correct(x, labels).mean() > 0.9


def test_balance_keeps_equally_many_of_each_class_per_stratum_so_a_stratum_only_probe_is_at_chance():
    rng = np.random.default_rng(0)
    strata = rng.integers(6, 10, size=500)
    labels = rng.random(500) < strata / 12         # the class depends on the stratum
    keep = balance(labels, strata, seed=0)
    for s in np.unique(strata[keep]):
        assert (labels[keep] & (strata[keep] == s)).sum() == (~labels[keep] & (strata[keep] == s)).sum()
    np.testing.assert_array_equal(keep, balance(labels, strata, seed=0))
    one_hot = np.eye(10)[strata[keep]]
    assert fit_probe(one_hot, labels[keep]).correct(one_hot, labels[keep]).mean() == pytest.approx(0.5)


@pytest.mark.parametrize("call, error, match", [
    (lambda: fit_probe(gaussian(5), [True, False] * 2), ShapeError,
     r"`labels` must be one value per row \(5 rows\)"),
    (lambda: fit_probe(gaussian(5), [True] * 5), DataError, "single class \\[True\\]"),
    (lambda: fit_probe(gaussian(4)[:, 0], [0, 1, 0, 1]), ShapeError, "`features` must be \\[n_examples, d\\]"),
    (lambda: fit_probe(np.full((4, 2), np.nan), [0, 1, 0, 1]), DataError, "NaN or inf \\(first in row 0\\)"),
    (lambda: fit_probe(gaussian(4), [0, 1, 0, 1], l2=-1.0), DataError, "`l2` must be a non-negative number"),
    (lambda: fit_probe(gaussian(4), [0, 1, 0, 1]).predict(gaussian(2, d=3)), ShapeError, "3 columns but the probe"),
    (lambda: fit_probe(gaussian(4), [0, 1, 0, 1]).correct(gaussian(2), [0, 2]), DataError,
     "\\[2\\], a class the probe"),
    (lambda: fit_control(gaussian(4), [0, 1, 0], seed=0), ShapeError, "`labels` must be one value per row"),
    (lambda: balance([0, 0, 1, 1], [1, 1, 2, 2], seed=0), DataError, "no stratum holds every class"),
])
def test_bad_input_names_the_argument_the_value_and_the_fix(call, error, match):
    with pytest.raises(error, match=match):
        call()
