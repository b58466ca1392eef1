"""Fixtures of the tactic-generator study: model, data split, directions, shared sweeps.

Defaults: `fixture:tacgen` (a ByT5-topology T5 trained by `fixtures/tacgen/recipe.py`) on the
synthetic LeanDojo-schema benchmark shipped in `fixtures/tacgen/data/benchmark.json`. The real
study runs the same claims with

    pytest claims/tacgen --claims-model tacgen=kaiyuy/leandojo-lean4-tacgen-byt5-small \
                         --claims-data tacgen=/path/to/leandojo_benchmark_4/random
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import class_mean_direction, evidence, load_study_model, pooled_states_at, save_directions
from harness.data import content_hash, goal_spans, intro_apply_rows, read_leandojo, save_split, split
from harness.data import balanced as balanced_rows
from harness.models.fixtures import fixtures_dir

from harness.plugin import threshold_row
from claims.tacgen.settings import DEFAULT_MODEL, LAYERS, MAX_LENGTH, N_BALANCED, SPLIT_SEED, Thresholds


@pytest.fixture(scope="session")
def tacgen(claims_settings):
    return load_study_model("tacgen", claims_settings.model_spec("tacgen", DEFAULT_MODEL))


@pytest.fixture(scope="session")
def thresholds(pytestconfig) -> Thresholds:
    """The run's THRESHOLDS row (claims/tacgen/settings.py), from the model's spec, not the loaded model."""
    return threshold_row(pytestconfig, "tacgen")


@pytest.fixture(scope="session")
def tacgen_split(claims_settings):
    default = fixtures_dir() / "tacgen" / "data" / "benchmark.json"
    path = Path(claims_settings.data_path("tacgen", str(default)))
    rows = intro_apply_rows(read_leandojo(path))
    parts = split(balanced_rows(rows, n=N_BALANCED, seed=SPLIT_SEED), test_fraction=0.2, seed=SPLIT_SEED)
    out = Path(claims_settings.report_dir) / "tacgen"
    save_split(parts, out / "split.json")
    evidence.register_dataset("tacgen", path=str(path), content_hash=content_hash(
        {"train": parts.hashes.get("train"), "test": parts.hashes.get("test")}))
    return parts


@pytest.fixture(scope="session")
def test500(tacgen_split):
    return tacgen_split.test500


@pytest.fixture(scope="session")
def test200(tacgen_split):
    return tacgen_split.test200


@pytest.fixture(scope="session")
def directions(tacgen, tacgen_split, claims_settings):
    """Class-mean directions (intro - apply) from train-only, mask-aware mean-pooled encoder
    states at layers 11 and 12; saved raw and RMS-normalised beside the report.

    Per layer: ``"pooled"`` (the train rows' states), ``"direction"``, and ``"keys"``: each train
    row's identity (theorem, tactic index and state text), which the seeded controls rank rows
    by, so their shuffles do not depend on the last bits of the pooled states."""
    train = list(tacgen_split.train)
    states = [r.state for r in train]
    labels = [r.label for r in train]
    keys = ["\x1f".join((r.theorem, str(r.index), r.state)) for r in train]
    sites = {layer: tacgen.site(f"encoder.{layer}.resid_post") for layer in LAYERS}
    pooled = pooled_states_at(tacgen, states, list(sites.values()), max_length=MAX_LENGTH)
    out = {}
    for layer, site in sites.items():
        out[layer] = {"pooled": pooled[site], "keys": keys, "direction": class_mean_direction(
            pooled[site], labels, positive="intro", negative="apply", site=str(site))}
    folder = Path(claims_settings.report_dir) / "tacgen"
    save_directions(folder / "directions.safetensors",
                    {f"layer{layer}": out[layer]["direction"] for layer in LAYERS}
                    | {f"layer{layer}_rms": out[layer]["direction"].rms_normalised() for layer in LAYERS})
    return out


@pytest.fixture(scope="session")
def held_out_pooled(tacgen, tacgen_split):
    """Mean-pooled encoder states of the test part at layers 11 and 12 (one pass)."""
    sites = {layer: tacgen.site(f"encoder.{layer}.resid_post") for layer in LAYERS}
    pooled = pooled_states_at(tacgen, [r.state for r in tacgen_split.test], list(sites.values()),
                              max_length=MAX_LENGTH)
    return {layer: pooled[site] for layer, site in sites.items()}


@pytest.fixture(scope="session")
def sweeps(tacgen, claims_settings):
    """Sweeps shared by the claims of a session, keyed by what they measure; at the end of the
    session the ones computed are plotted into the report directory (``tacgen/*.png``)."""
    from harness import logprob_diff, scorer, sweep, sweep_directions

    cache: dict = {}
    score = scorer(logprob_diff, "intro", "apply", max_length=MAX_LENGTH)

    def get(key, *, rows, site, direction, alphas, positions=None, rms_scaled=False):
        if key not in cache:
            kw = {} if positions is None else {"positions": positions}
            cache[key] = sweep(tacgen, [r.state for r in rows], at=site, direction=direction, alphas=alphas,
                               score=score, rms_scaled=rms_scaled, **kw)
        return cache[key]

    def draws(keys, *, rows, site, directions, alphas, positions=None, rms_scaled=False):
        """Several directions (a control's random draws) swept in one pass (`sweep_directions`:
        one encoder prefix for all), curve i cached under ``keys[i]``."""
        if any(key not in cache for key in keys):
            kw = {} if positions is None else {"positions": positions}
            curves = sweep_directions(tacgen, [r.state for r in rows], at=site, directions=directions, alphas=alphas,
                                      score=score, rms_scaled=rms_scaled, **kw)
            cache.update(zip(keys, curves))
        return [cache[key] for key in keys]

    get.draws = draws
    yield get
    _plot(cache, Path(claims_settings.report_dir) / "tacgen")


def _plot(cache: dict, folder: Path) -> None:
    """The study's plots, from whichever sweeps this session computed."""
    from harness.reports.plots import plot_sweeps

    ylabel = "shift of logP(intro) - logP(apply)"
    for layer in LAYERS:
        group = {"class-mean": cache.get(("global", layer))} | {   # each control's draws: "shuffled 3"
            " ".join(map(str, key[2:])): curve for key, curve in cache.items() if key[:2] == ("control", layer)}
        group = {k: v for k, v in group.items() if v is not None}
        if group:
            plot_sweeps(group, folder / f"steering_layer{layer}.png", ylabel=ylabel,
                        title=f"encoder.{layer}.resid_post: class-mean direction and controls")
    spans = {"global": cache.get(("global", 12))} | {k[1]: c for k, c in cache.items() if k[0] == "span"}
    spans = {k: v for k, v in spans.items() if v is not None}
    if len(spans) > 1:
        plot_sweeps(spans, folder / "spans_layer12.png", ylabel=ylabel,
                    title="encoder.12.resid_post: global vs goal vs context vs goal_head")
    inside = {f"raw add at {c.site}": c for k, c in cache.items() if k[0] == "norm"} | {
        f"RMS-scaled at {c.site} ({k[1]})": c for k, c in cache.items() if k[0] == "rms"}
    if inside:
        plot_sweeps(inside, folder / "in_encoder.png", ylabel=ylabel,
                    title="in-encoder edits: raw vs RMS-scaled (vs after the final norm)")


RANDOM_SEEDS = (0, 1, 2)


@pytest.fixture(scope="session")
def strongest_random(sweeps, directions):
    """The strongest of three norm-matched random directions' slopes near 0 at a site (and
    positions), for claims that must stand out from what any direction of that size does: an
    untrained model's score moves under every direction, so a positive slope alone says little.
    The three are swept in one pass and judged by `stats.strongest_of`. The RMSNorm claims
    measure it on test200 (a wider CI only makes the comparison stricter); the span claims on
    test500, the rows their own effect is measured on: judged at their family's corrected level
    (98.3%), goal_head's slope 0.225 [0.190, 0.276] did not exceed 1.5x a test200 control's
    [-0.137, -0.041] at any resampling seed, and does exceed the same control on the same 500
    rows ([-0.100, -0.050]).
    """
    from harness import random_direction, stats, symmetric

    from claims.tacgen.settings import NEAR

    def get(key, *, rows, site, like, seed, n_resamples, positions=None, rms_scaled=False):
        curves = sweeps.draws([("random", *key, r) for r in RANDOM_SEEDS], rows=rows, site=site,
                              directions=[random_direction(like, seed=r).vector for r in RANDOM_SEEDS],
                              alphas=symmetric(NEAR, steps=3), positions=positions, rms_scaled=rms_scaled)
        return stats.strongest_of([c.slope(near=NEAR, seed=seed, n_resamples=n_resamples) for c in curves],
                                  what=f"norm-matched random directions, seeds {RANDOM_SEEDS[0]}-{RANDOM_SEEDS[-1]}")

    return get


@pytest.fixture(scope="session")
def spans_of():
    """`Positions` of one span (``goal``, ``context``, ``goal_head``) for each row's input."""
    from harness import Positions

    def get(rows, name: str) -> Positions:
        out = []
        for row in rows:
            where = goal_spans(row.state, max_length=MAX_LENGTH).positions(name)
            out.append([(where.start, where.stop)] if len(where) else [])
        return Positions.of_spans(out)

    return get

