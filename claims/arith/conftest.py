"""Fixtures of the arithmetic study: model, held-out splits, answers, ablation maps, pairs.

Defaults: `fixture:arith` (a 4-layer GPT-2 trained by `fixtures/arith/recipe.py`) on the shipped
splits in `fixtures/arith/data/` (`selection.jsonl` picks heads, `test.jsonl` is measured). Point
it elsewhere with ``--claims-model arith=PATH --claims-data arith=DIR``.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from harness import pair_mean, attribute_head_map, attribute_neuron_map, evidence, exact_match, load_study_model, patch_effects
from harness.atomic import write_text_atomic
from harness.data import content_hash
from harness.models.fixtures import fixtures_dir

from claims.arith import measure
from claims.arith.attribution import (ablated_logit_diffs, all_heads, AttributionMaps, circuit_heads, logprob_drops,
                                      metric_of, neuron_site, random_draws, site_means, top_units)
from claims.arith.restoration import Restoration
from harness.plugin import threshold_row
from claims.arith.settings import DEFAULT_MODEL, N_PAIRS, PAIR_SEED, Thresholds, thresholds_at_collection


@pytest.fixture(scope="session")
def arith(claims_settings):
    return load_study_model("arith", claims_settings.model_spec("arith", DEFAULT_MODEL))


@pytest.fixture(scope="session")
def thresholds(pytestconfig) -> Thresholds:
    """The run's THRESHOLDS row (claims/arith/settings.py), from the model's spec, not the loaded model."""
    return threshold_row(pytestconfig, "arith")


@pytest.fixture(scope="session")
def splits(claims_settings) -> dict[str, list[measure.Row]]:
    folder = Path(claims_settings.data_path("arith", str(fixtures_dir() / "arith" / "data")))
    out = {name: measure.read_rows(folder / f"{name}.jsonl") for name in ("selection", "test")}
    evidence.register_dataset("arith", path=str(folder), content_hash=content_hash(
        {name: [asdict(r) for r in rows] for name, rows in out.items()}))
    return out


@pytest.fixture(scope="session")
def correct(arith, splits) -> dict[str, np.ndarray]:
    """Whether the model's greedy answer is the whole answer, per row of each split."""
    return {name: np.array(exact_match(arith, [r.expression for r in rows], [r.answer for r in rows]))
            for name, rows in splits.items()}


@pytest.fixture(scope="session")
def head_means(arith, splits) -> dict:
    """Each head's mean output over the real tokens of the selection split (`measure.head_means`):
    the reference of every mean ablation of heads."""
    return measure.head_means(arith, splits["selection"])


@pytest.fixture(scope="session")
def ablation(arith, splits, claims_settings, head_means):
    """Ablation impacts ``[n, layers, heads]`` per (split, kind): every head, or only ``head``
    ("layer2-head2"; the other cells NaN) where a claim reads one head's column. Mean ablation sets
    a head to `head_means` (from the selection split); a full map
    serves every later request of its (split, kind). At the end of the session what was computed
    is written to ``arith/ablation.json`` and the full maps plotted (``arith/ablation_<split>_<kind>.png``)."""
    cache: dict = {}

    def get(split: str, kind: str, head: str | None = None) -> np.ndarray:
        if (split, kind, None) in cache:
            return cache[split, kind, None]
        if (split, kind, head) not in cache:
            cells = None if head is None else [measure.head_id(head)]
            cache[split, kind, head] = measure.ablation_impacts(arith, splits[split], kind, means=head_means,
                                                                heads=cells)
        return cache[split, kind, head]

    yield get
    if cache:
        _write_ablation(cache, splits, Path(claims_settings.report_dir) / "arith")


def _write_ablation(cache: dict, splits, folder: Path) -> None:
    from harness.reports.plots import plot_heatmap

    tables = {}
    for (split, kind, head), impacts in sorted(cache.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")):
        parens = np.array([r.has_parens for r in splits[split]])
        if head is not None:
            layer, h = measure.head_id(head)
            column = impacts[:, layer - 1, h]
            parens_mean, flat_mean = column[parens].mean(), column[~parens].mean()
            tables[f"{split}/{kind}/{head}"] = {k: round(float(v), 5) for k, v in
                                                {"parens": parens_mean, "flat": flat_mean,
                                                 "gap": parens_mean - flat_mean}.items()}
            continue
        table = {"parens": impacts[parens].mean(0), "flat": impacts[~parens].mean(0)}
        table["gap"] = table["parens"] - table["flat"]
        tables[f"{split}/{kind}"] = {k: v.round(5).tolist() for k, v in table.items()}
        layers, heads = table["gap"].shape
        plot_heatmap(table["gap"], folder / f"ablation_{split}_{kind}.png",
                     title=f"{kind} ablation, {split} split: parens - flat",
                     row_labels=[f"layer{i}" for i in range(1, layers + 1)],
                     col_labels=[f"head{h}" for h in range(heads)], xlabel="head", ylabel="layer",
                     colorbar_label="impact gap (nats)", cmap="coolwarm")
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "ablation.json", json.dumps(
        {"unit": "mean drop of log P(first answer token) when the head is ablated at every position (nats)",
         "tables": tables}, indent=1) + "\n")


@pytest.fixture(scope="session")
def head_gaps(ablation, splits) -> np.ndarray:
    """``[layers, heads]``: mean impact of mean ablation on parenthesised minus flat rows of the
    selection split (the test split is never used to choose heads)."""
    impacts = ablation("selection", "mean")
    parens = np.array([r.has_parens for r in splits["selection"]])
    return impacts[parens].mean(0) - impacts[~parens].mean(0)


@pytest.fixture(scope="session")
def ranked_heads(head_gaps) -> list[str]:
    """Every head, the most parenthesis-specific first (by `head_gaps`)."""
    order = np.argsort(-head_gaps, axis=None, kind="stable")
    return [measure.head_name(int(i) // head_gaps.shape[1] + 1, int(i) % head_gaps.shape[1]) for i in order]


@pytest.fixture(scope="session")
def selected_head(ranked_heads) -> str:
    """The head whose mean ablation on the selection split hurts parenthesised rows most
    relative to flat rows."""
    return ranked_heads[0]


@pytest.fixture(scope="session")
def patch_pairs(arith, splits, correct) -> dict[str, measure.Pairs]:
    """Clean/corrupt pairs from the test split: ``"clean"`` (correctly answered clean prompts)
    and ``"wrong"`` (incorrectly answered ones, for the wrong-to-wrong control); a pair whose
    corrupt run already gives the clean answer is dropped, as it has nothing to restore."""
    out = {}
    for name, ok in (("clean", True), ("wrong", False)):
        pairs = measure.rebracketed_pairs(splits["test"], correct["test"], clean_correct=ok, n=N_PAIRS,
                                          seed=PAIR_SEED)
        out[name] = pairs.take(~measure.patched(arith, pairs).exact)
    return out


# The random-head control is RANDOM_HEADS other heads drawn without replacement
# (random.Random(PAIR_SEED).sample), each patched on its own, averaged pair by pair: one random
# head lets the verdict hang on which head was drawn (on the shipped fixture the other heads restore
# 0-5.5% of whole answers and recover 0.00-0.44 of the logit difference; the one head drawn before,
# layer1-head1, was also the same-layer control).
RANDOM_HEADS = 5


@pytest.fixture(scope="session")
def restoration(arith, patch_pairs, ranked_heads, selected_head, claims_settings) -> Restoration:
    """The study's patching runs: every head on its own, and the controls of the selected head
    (the head of its layer that ablation ranks lowest; the mean of `RANDOM_HEADS` seeded random
    other heads, each patched alone; and the head patched from incorrectly answered sources)."""
    out = Restoration(arith, patch_pairs, seed=claims_settings.seed, n_resamples=claims_settings.resamples)
    layer = measure.head_id(selected_head)[0]
    same_layer = [h for h in ranked_heads if measure.head_id(h)[0] == layer]
    out.define("other-head-same-layer", [same_layer[-1]])
    others = [h for h in ranked_heads if h != selected_head]
    out.define_mean("random-heads", random.Random(PAIR_SEED).sample(others, min(RANDOM_HEADS, len(others))))
    out.define("wrong-to-wrong", [selected_head], pairs="wrong")
    return out


@pytest.fixture(scope="session")
def head_patch_map(arith, patch_pairs, claims_settings):
    """Every head patched at all positions from clean into corrupt (`harness.measures.patching`), first
    answer token's logit difference (clean answer - corrupt answer); plotted as the recovered
    share per head (``arith/patching_heads.png``)."""
    from harness import answer_logit_diff, patch_head_map
    from harness.reports.plots import plot_heatmap

    pairs = patch_pairs["clean"]
    out = patch_head_map(arith, pairs.clean, pairs.corrupt, answer_logit_diff(
        measure.first_tokens(arith, pairs.answers), measure.first_tokens(arith, pairs.contrasts)))
    recovered = (out.values - out.corrupt[:, None, None]).mean(0) / (out.clean - out.corrupt).mean()
    layers, heads = recovered.shape
    plot_heatmap(recovered.numpy(), Path(claims_settings.report_dir) / "arith" / "patching_heads.png",
                 title=f"one head patched, clean -> re-bracketed ({len(pairs)} pairs)",
                 row_labels=[f"layer{i}" for i in range(1, layers + 1)], col_labels=[f"head{h}" for h in range(heads)],
                 xlabel="head", ylabel="layer", colorbar_label="recovered logit difference", cmap="coolwarm")
    return out


# Attribution patching (finding 8, test_attribution.py). The residual-stream and neuron maps are
# patched on the first ATTRIBUTION_SUBSET test pairs (a seeded random subset): patching every
# neuron of a layer over 600 pairs takes 100 s, and each bootstrap of a 512-cell map costs ~0.1 s per
# 100 resamples. Random controls are RANDOM_DRAWS seeded sets of the same size (draw i:
# random.Random(PAIR_SEED + i)), averaged pair by pair, as the random-heads control of finding 3.
ATTRIBUTION_SUBSET = 100
RANDOM_DRAWS = 5


@pytest.fixture(scope="session")
def attribution_report(claims_settings):
    """What the attribution claims measured, by section, written at the end of the session to
    ``arith/attribution.json`` (a section may be a callable, called then)."""
    sections: dict = {}
    yield sections
    if sections:
        body = {name: (value() if callable(value) else value) for name, value in sections.items()}
        folder = Path(claims_settings.report_dir) / "arith"
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / "attribution.json", json.dumps(
            {"unit": "effects in nats of the first answer token's logit difference (clean answer - corrupt answer); "
                     "agreement point values without CIs (the claims report those)", **body}, indent=1) + "\n")


@pytest.fixture(scope="session")
def selection_pairs(arith, splits, correct) -> measure.Pairs:
    """Clean/corrupt pairs from the selection split, formed as `patch_pairs`' ``"clean"`` pairs:
    where attribution picks neurons and heads (the test split is never used to choose)."""
    pairs = measure.rebracketed_pairs(splits["selection"], correct["selection"], clean_correct=True, n=N_PAIRS,
                                      seed=PAIR_SEED)
    return pairs.take(~measure.patched(arith, pairs).exact)


@pytest.fixture(scope="session")
def attribution_maps(arith, patch_pairs, head_patch_map, thresholds, attribution_report):
    """Per site family, attribution's and activation patching's effect maps over the same test
    pairs (`claims.arith.attribution.AttributionMaps`), computed on first use."""
    maps = AttributionMaps(arith, patch_pairs["clean"], head_patch_map, neuron_layer=thresholds.neuron_layer,
                           n_subset=ATTRIBUTION_SUBSET)
    attribution_report["agreement"] = maps.summary
    return maps


@pytest.fixture(scope="session")
def top_neurons(arith, selection_pairs, thresholds, attribution_report) -> list[int]:
    """The `n_neurons` neurons (``mlp_post``) of block `neuron_layer` with the largest mean
    attribution estimate at the last token on the selection split, largest first."""
    sel = selection_pairs
    est = attribute_neuron_map(arith, sel.clean, sel.corrupt, metric_of(arith, sel), layers=[thresholds.neuron_layer])
    units = top_units(patch_effects(est), thresholds.n_neurons)
    mean = pair_mean(patch_effects(est))[0]
    attribution_report["neurons"] = {"layer": thresholds.neuron_layer, "selection_pairs": len(sel),
                                     "top": {str(u): round(float(mean[u]), 4) for u in units}}
    return units


@pytest.fixture(scope="session")
def neuron_runs(arith, splits, patch_pairs, restoration, top_neurons, thresholds, attribution_report) -> dict:
    """The top neurons and `RANDOM_DRAWS` seeded sets of as many other neurons of their layer,
    each set on the test split: ``drops`` (log P(first answer token) plain minus with the set
    mean-ablated at every position, the mean over the selection split's real tokens;
    ``[n_rows]``) and ``patched`` (the test pairs' logit difference with the set patched from
    the clean run at every position, `measure.patched`; ``[n_pairs]``). Keys ``"top"`` and
    ``"random"`` (a list of the draws); ``"sets"``: the units of each."""
    layer = thresholds.neuron_layer
    d_mlp = arith.sites.stack(arith.main_stack).d_mlp
    others = [u for u in range(int(d_mlp)) if u not in top_neurons]
    sets = [top_neurons, *random_draws(others, len(top_neurons), seed=PAIR_SEED, n=RANDOM_DRAWS)]
    sites = [neuron_site(layer, units) for units in sets]
    means = site_means(arith, splits["selection"], sites)
    plain = measure.answer_logprobs(arith, splits["test"])
    runs = [{"drops": logprob_drops(arith, splits["test"], s, means[s], plain=plain),
             "patched": measure.patched(arith, patch_pairs["clean"], [s]).logit_diff} for s in sites]
    attribution_report["neuron_runs"] = {
        site: {"mean_logprob_drop": round(float(r["drops"].mean()), 5),
               "mean_patched_logit_diff": round(float(r["patched"].mean()), 4)} for site, r in zip(sites, runs)}
    return {"top": runs[0], "random": runs[1:], "sets": sets}


@pytest.fixture(scope="session")
def attribution_circuit(arith, selection_pairs, thresholds, attribution_report) -> list[str]:
    """The heads attribution keeps on the selection split: mean estimated effect (every head's
    output at all positions, `attribute_head_map`) at least `circuit_threshold` nats in size."""
    sel = selection_pairs
    est = attribute_head_map(arith, sel.clean, sel.corrupt, metric_of(arith, sel))
    heads = circuit_heads(patch_effects(est), thresholds.circuit_threshold)
    attribution_report["circuit"] = {"threshold_nats": thresholds.circuit_threshold, "heads": heads,
                                     "mean_estimate": pair_mean(patch_effects(est)).round(4).tolist()}
    return heads


@pytest.fixture(scope="session")
def circuit_runs(arith, patch_pairs, head_means, attribution_circuit, attribution_report) -> dict:
    """Each test pair's clean logit difference: ``"full"`` (no head ablated), ``"circuit"``
    (every head outside `attribution_circuit` mean-ablated), ``"random"`` (a list: the same
    for `RANDOM_DRAWS` seeded random circuits of as many heads); ``"sets"``: each circuit."""
    heads = all_heads(arith)
    circuits = [attribution_circuit,
                *random_draws(heads, len(attribution_circuit), seed=PAIR_SEED, n=RANDOM_DRAWS)]
    pairs = patch_pairs["clean"]
    full = ablated_logit_diffs(arith, pairs, [], head_means)
    runs = [ablated_logit_diffs(arith, pairs, [h for h in heads if h not in c], head_means) for c in circuits]
    attribution_report["faithfulness"] = {
        "+".join(c): round(float(r.mean() / full.mean()), 4) for c, r in zip(circuits, runs)}
    return {"full": full, "circuit": runs[0], "random": runs[1:], "sets": circuits}


def pytest_generate_tests(metafunc):
    """A claim about the study's head takes ``head`` ("layer2-head2"), so its test id names the
    site and ``-k layer2-head2`` selects it; the head is the model's row in THRESHOLDS."""
    if "head" in metafunc.fixturenames:
        row = thresholds_at_collection(metafunc.config)
        heads = [row.head] if row is not None else ["unknown-head"]
        metafunc.parametrize("head", heads, ids=heads)

