"""Finding 6: linear probes on the residual stream at ``=`` read the expression's structure from
a given layer on, and not before.

Features: the residual stream at ``=`` after each layer L = 0..n (`harness.measures.lens.residuals_at`).
A logistic-regression probe is fitted on the selection split and scored on the test split; its
control is the same probe fitted on shuffled selection labels, scored on the same test rows, and
averaged over `CONTROL_SEEDS` shuffles per row (one shuffle's accuracy varies by +-0.1 from seed
to seed here, far more than its CI over rows shows).

Targets (rows balanced within each prompt length, both splits, so a probe that reads only the
length, which the position embedding at ``=`` carries, is at chance):

* ``parens``: whether the expression has parentheses (all rows);
* ``operator``: the operator of the outermost operation, ``+`` or ``-``, of *parenthesised*
  expressions only. There it is the one operator outside every parenthesis; in a flat
  expression the outermost operation is set by precedence and left-to-right order (the last
  ``+``/``-``), a different feature, so flat rows are left out. Rows whose outermost operator is
  ``*`` would be left out too (the generator makes none: its top operation is ``+`` or ``-``).

The effect is the probe's test accuracy minus the control's, paired over test rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from claims.arith.settings import thresholds_at_collection
from harness import balance, expect, fit_control, fit_probe, layer_sites, residuals_at, stats

TARGETS = ("parens", "operator")
BALANCE_SEED = 0    # which rows balancing keeps
CONTROL_SEEDS = range(1, 11)    # the controls' label shuffles


def pytest_generate_tests(metafunc):
    """`early_layer` runs over the layers before the target's probe layer, `probe_layer` is that
    layer; both in the test id (``operator-layer1``)."""
    row = thresholds_at_collection(metafunc.config)
    for name in ("early_layer", "probe_layer"):
        if name in metafunc.fixturenames:
            cases = []
            for target in TARGETS:
                first = getattr(row, f"{target}_probe_layer") if row else 1
                cases += [(target, layer) for layer in (range(first) if name == "early_layer" else [first])]
            metafunc.parametrize(("target", name), cases, ids=[f"{t}-layer{layer}" for t, layer in cases])


def outermost_operator(expression: str) -> str:
    """The operator of the operation evaluated last: the last ``+``/``-`` outside every
    parenthesis, else the last ``*`` there (``*`` binds tighter, equal operators go left to right)."""
    depth, found = 0, {}
    for ch in expression.removesuffix("="):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and ch in "+-*":
            found["*" if ch == "*" else "+-"] = ch
    return found.get("+-", found.get("*", ""))


def labelled(rows, target: str, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the rows a target's probe uses (balanced within each prompt length) and their labels."""
    if target == "parens":
        candidates = np.arange(len(rows))
        labels = np.array([r.has_parens for r in rows])
    else:
        ops = np.array([outermost_operator(r.expression) for r in rows])
        candidates = np.flatnonzero(np.array([r.has_parens for r in rows]) & np.isin(ops, ["+", "-"]))
        labels = ops
    lengths = np.array([r.n_tokens for r in rows])
    keys = [rows[i].expression for i in candidates]  # each row's pick is keyed by its expression
    keep = candidates[balance(labels[candidates], lengths[candidates], seed=seed, keys=keys)]
    return keep, labels[keep]


def probe_outcomes(model, splits) -> dict[str, dict[str, np.ndarray]]:
    """Per target: test correctness ``[n_test, layers + 1]`` of the probe (bool) and of the
    control (the fraction of the shuffled-label controls right on the row), fitted on the
    selection split at each layer."""
    features = {name: residuals_at(model, model.tokenize([r.expression for r in rows])).numpy()
                for name, rows in splits.items()}
    out = {}
    for target in TARGETS:
        train, train_y = labelled(splits["selection"], target, seed=BALANCE_SEED)
        test, test_y = labelled(splits["test"], target, seed=BALANCE_SEED)
        fits = {"probe": [], "control": []}
        keys = [splits["selection"][i].expression for i in train]
        for layer in range(features["test"].shape[1]):
            x, x_test = features["selection"][train, layer], features["test"][test, layer]
            fits["probe"].append(fit_probe(x, train_y).correct(x_test, test_y))
            fits["control"].append(np.mean([fit_control(x, train_y, seed=seed, keys=keys).correct(x_test, test_y)
                                            for seed in CONTROL_SEEDS], 0))
        out[target] = {kind: np.stack(columns, 1) for kind, columns in fits.items()}
    return out


def margin(outcomes, target: str, layer: int, *, site, seed: int, n_resamples: int):
    """Probe minus control test accuracy at `layer`, paired over the test rows (each row's
    probe correctness minus the fraction of controls right on it)."""
    probe, control = (outcomes[target][kind][:, layer].astype(float) for kind in ("probe", "control"))
    return stats.paired_difference(probe, control, seed=seed, n_resamples=n_resamples).with_context(
        site=str(site), statistic=f"{target} probe minus shuffled-label control (the mean of {len(CONTROL_SEEDS)} "
                                  "shuffles per row), test accuracy (paired over rows)")


def accuracies(outcomes, *, seed: int, n_resamples: int) -> dict[str, list]:
    """Per target and kind, the test accuracy at each layer: the probe's a proportion (Wilson),
    the controls' a bootstrap mean over rows of the fraction of controls right."""

    def accuracy(kind, column):
        if kind == "probe":
            return stats.proportion_of(column)
        return stats.bootstrap_mean(column, seed=seed, n_resamples=n_resamples)

    return {f"{target} {kind}": [accuracy(kind, out[:, layer]) for layer in range(out.shape[1])]
            for target in TARGETS for kind, out in outcomes[target].items()}


@pytest.fixture(scope="module")
def outcomes(arith, splits, claims_settings):
    """`probe_outcomes`; writes ``arith/probes.png`` (probe and control accuracy per layer, 95% CIs)."""
    from harness.reports.plots import plot_layers

    out = probe_outcomes(arith, splits)
    plot_layers(accuracies(out, seed=claims_settings.seed, n_resamples=claims_settings.resamples),
                Path(claims_settings.report_dir) / "arith" / "probes.png", ylabel="test accuracy", reference=0.5,
                title="linear probes at '=' vs shuffled-label controls (test split, 95% CIs)")
    return out


@pytest.mark.claim("At its probe layer, a linear probe at '=' beats its shuffled-label control (the mean of 10 "
                   "shuffles) by the margin",
                   source="002/003: linear probes for has-parentheses and the outermost operator")
def test_the_probe_beats_its_control_at_the_probe_layer(arith, outcomes, thresholds, claim_seed, claims_settings,
                                                        target, probe_layer):
    expect(margin(outcomes, target, probe_layer, site=layer_sites(arith)[probe_layer], seed=claim_seed,
                  n_resamples=claims_settings.resamples)).greater_than(thresholds.probe_margin)


@pytest.mark.claim("Before its probe layer, a linear probe at '=' does not beat its shuffled-label control (the "
                   "mean of 10 shuffles) by the margin",
                   source="002/003: linear probes; the feature is not linearly readable earlier")
def test_the_probe_does_not_beat_its_control_before_the_probe_layer(arith, outcomes, thresholds, claim_seed,
                                                                    claims_settings, target, early_layer):
    expect(margin(outcomes, target, early_layer, site=layer_sites(arith)[early_layer], seed=claim_seed,
                  n_resamples=claims_settings.resamples)).at_most(thresholds.probe_margin)
