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

from harness import evidence, exact_match, load_study_model
from harness.atomic import write_text_atomic
from harness.data import content_hash
from harness.models.fixtures import fixtures_dir

from claims.arith import measure
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
def ablation(arith, splits, claims_settings):
    """Ablation impacts ``[n, layers, heads]`` per (split, kind): every head, or only ``head``
    ("layer2-head2"; the other cells NaN) where a claim reads one head's column. Each head's mean
    output (the mean ablation's reference, from the selection split) is computed once; a full map
    serves every later request of its (split, kind). At the end of the session what was computed
    is written to ``arith/ablation.json`` and the full maps plotted (``arith/ablation_<split>_<kind>.png``)."""
    cache: dict = {}
    means: dict = {}

    def get(split: str, kind: str, head: str | None = None) -> np.ndarray:
        if (split, kind, None) in cache:
            return cache[split, kind, None]
        if (split, kind, head) not in cache:
            if kind == "mean" and not means:
                means.update(measure.head_means(arith, splits["selection"]))
            cells = None if head is None else [measure.head_id(head)]
            cache[split, kind, head] = measure.ablation_impacts(arith, splits[split], kind, means=means or None,
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


def pytest_generate_tests(metafunc):
    """A claim about the study's head takes ``head`` ("layer2-head2"), so its test id names the
    site and ``-k layer2-head2`` selects it; the head is the model's row in THRESHOLDS."""
    if "head" in metafunc.fixturenames:
        row = thresholds_at_collection(metafunc.config)
        heads = [row.head] if row is not None else ["unknown-head"]
        metafunc.parametrize("head", heads, ids=heads)

