"""Attribution patching against activation patching: the same maps, pairs and metric, in one run.

`attribute_resid_map` against `patch_resid_map` (every ``resid_pre`` layer x position) and
`attribute_head_map` against `patch_head_map` (every layer x head, all positions), on two
models:

* the shipped `fixture:tracer` (a 4-block Qwen2 of width 128, 4 query heads over 2 key/value
  heads, rotary; ``fixtures/tracer/recipe.py``): `FIXTURE_PAIRS` counterfactual pairs of
  `FIXTURE_STEPS`-step programs (51-56 tokens) from ``fixtures/tracer/data.py``'s
  ``make_pair`` (the tracer study's pair maker), each changing the first step, so the prompts
  differ from their third token on;
* SmolLM2-135M-Instruct (``gguf:smollm2-135m-instruct``: 30 Llama blocks of width 576, 9 query
  heads over 3 key/value heads), `REAL_PAIRS` IOI prompts of 22-23 tokens (three templates)
  against their ABC corruption (Wang et al. 2022: the same template with three other names, so
  the prompts differ from their second token on). Skipped where its package is not installed.

The metric is the logit difference of each pair's clean answer over its corrupt one (the
indirect object over the subject for IOI). Activation patching skips every cell whose clean and
corrupt activations are equal bit for bit (the positions before a pair's first difference) and
replays only the blocks and positions after a patched cell, so its cost grows with layers x
positions from the first difference on; attribution patching is one clean forward, one corrupt
forward and one backward whatever the map. Pairs that differ early make the whole map live;
pairs that differ late (IOI with only the second subject swapped) leave patching far less to do.

Recorded per map: both times, their ratio (patching / attribution) and Spearman's rho and
Pearson's r between the two maps' per-pair effects (`map_agreement` on `patch_effects`, bootstrap
CIs over pairs). The test asserts the ratio and the agreement against conservative floors
measured here (`CASES`) and that both maps read the same clean and corrupt metrics. Patching is
timed once on SmolLM2 (about 2.5 minutes for both maps on one thread), best of 3 on the fixture.

Run with ``OMP_NUM_THREADS=1 pytest benchmarks/test_bench_attribution.py``.
"""

from __future__ import annotations

import importlib.util
import random
import time
from typing import Any, Callable

import pytest
import torch

from harness.measures.agreement import map_agreement, patch_effects
from harness.measures.attribution import attribute_head_map, attribute_resid_map
from harness.measures.patching import answer_logit_diff, patch_head_map, patch_resid_map
from harness.models.fixtures import import_module as fixture_module
from harness.models.load import load_model
from timing import best_of

FIXTURE_PAIRS, FIXTURE_STEPS, SEED = 16, 10, 0
REAL_PAIRS, REAL_MODEL = 8, "smollm2-135m-instruct"
RESAMPLES = 1000

MAPS = {"resid": (patch_resid_map, attribute_resid_map), "head": (patch_head_map, attribute_head_map)}

# (setting, map, minimum ratio, minimum Spearman and Pearson): about half the ratios measured here
# (18x, 3.3x, 53x, 37x on 2 shared cores) and below the agreements (Spearman 0.93, 0.89, 0.83, 0.96;
# Pearson 0.88, 0.93, 0.95, 1.00).
CASES = [("tracer", "resid", 8.0, 0.6), ("tracer", "head", 1.5, 0.6),
         ("smollm2", "resid", 25.0, 0.6), ("smollm2", "head", 18.0, 0.9)]

# --------------------------------------------------------------------------- the pairs


@pytest.fixture(scope="module")
def tracer():
    """fixture:tracer and `FIXTURE_PAIRS` pairs of `FIXTURE_STEPS`-step programs changed at their first step."""
    recipe = fixture_module("tracer.recipe")
    data = recipe.data()
    m = load_model("fixture:tracer")
    length = lambda program: len(recipe.encode(program))  # noqa: E731
    rng = random.Random(SEED)
    drawn: list[dict] = []
    while len(drawn) < FIXTURE_PAIRS:
        pair = data.make_pair(data.program(rng, FIXTURE_STEPS), 0, rng, length=length)
        if pair is not None:
            data.check_pair(pair, length=length)
            drawn.append(pair)
    clean = [recipe.encode(p["program_a"]) for p in drawn]
    corrupt = [recipe.encode(p["program_b"]) for p in drawn]
    metric = answer_logit_diff([recipe.answer_id(p["ground_truth_a"]) for p in drawn],
                               [recipe.answer_id(p["ground_truth_b"]) for p in drawn])
    return m, clean, corrupt, metric


NAMES = ("Mary", "John", "Tom", "James", "Anna", "Sarah", "David", "Paul", "Emma", "Mark", "Lisa", "Peter",
         "Alice", "Jack")
PLACES = ("store", "school", "park", "office", "station", "hospital")
OBJECTS = ("drink", "book", "ring", "letter", "basket", "snack")
TEMPLATES = (
    "Then, {A} and {B} had a long and busy day at the {P}. Afterwards, {S} gave a {O} to",
    "When {A} and {B} got a {O} at the {P} on a cold winter morning, {S} decided to give it to",
    "After the meeting at the {P} was over, {A} and {B} were tired and hungry, so {S} handed a {O} to",
)


def ioi_pairs(m: Any, n: int, seed: int) -> tuple[list[list[int]], list[list[int]], list[int], list[int]]:
    """`n` IOI prompts (ABB: the subject B named again) and their ABC corruptions, as token rows,
    with each pair's indirect-object and subject tokens (`` Mary``, one token each)."""
    def one_token(name: str) -> int:
        ids = m.tokenize([" " + name], add_special_tokens=False)[0]
        assert len(ids) == 1, f"{name!r} is {len(ids)} tokens in {m.name}'s tokenizer; use one-token names"
        return ids[0]

    rng = random.Random(seed)
    clean, corrupt, io, s = [], [], [], []
    for i in range(n):
        a, b, *others = rng.sample(NAMES, 5)
        fill = {"P": rng.choice(PLACES), "O": rng.choice(OBJECTS)}
        template = TEMPLATES[i % len(TEMPLATES)]
        row_c = m.tokenize([template.format(A=a, B=b, S=b, **fill)])[0]
        row_x = m.tokenize([template.format(A=others[0], B=others[1], S=others[2], **fill)])[0]
        assert len(row_c) == len(row_x), f"pair {i}: {len(row_c)} and {len(row_x)} tokens"
        clean.append(row_c)
        corrupt.append(row_x)
        io.append(one_token(a))
        s.append(one_token(b))
    return clean, corrupt, io, s


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2-135M-Instruct and `REAL_PAIRS` IOI pairs (ABB against ABC), or a skip without its package."""
    from harness.models.gguf import PACKAGED

    if importlib.util.find_spec(PACKAGED[REAL_MODEL].package) is None:
        pytest.skip(f"the package of gguf:{REAL_MODEL} is not installed ({PACKAGED[REAL_MODEL].pip})")
    m = load_model(f"gguf:{REAL_MODEL}")
    clean, corrupt, io, s = ioi_pairs(m, REAL_PAIRS, SEED)
    return m, clean, corrupt, answer_logit_diff(io, s)


# --------------------------------------------------------------------------- the benchmark


def best_plain(fn: Callable[[], Any], rounds: int) -> tuple[Any, float]:
    """``(result, seconds)``: the fastest of `rounds` plain timed calls."""
    best, result = float("inf"), None
    for _ in range(rounds):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return result, best


@pytest.mark.parametrize("setting, which, min_ratio, min_agreement", CASES,
                         ids=[f"{s}-{w}" for s, w, _, _ in CASES])
def test_attribution_map_is_faster_than_patching_and_agrees(benchmark, request, setting, which, min_ratio,
                                                            min_agreement):
    torch.set_num_threads(1)
    m, clean, corrupt, metric = request.getfixturevalue(setting)
    patch_fn, attribute_fn = MAPS[which]
    patch_fn(m, clean[:1], corrupt[:1], metric), attribute_fn(m, clean[:1], corrupt[:1], metric)  # warm-up
    measured, patch_s = best_plain(lambda: patch_fn(m, clean, corrupt, metric), rounds=3 if setting == "tracer" else 1)
    estimated, attribution_s = best_of(benchmark, lambda: attribute_fn(m, clean, corrupt, metric), rounds=3)
    ratio = patch_s / attribution_s
    truth, guess = patch_effects(measured), patch_effects(estimated)
    rho = map_agreement(guess, truth, method="spearman", seed=SEED, n_resamples=RESAMPLES)
    r = map_agreement(guess, truth, method="pearson", seed=SEED, n_resamples=RESAMPLES)
    cells = int((~torch.isnan(measured.values)).sum())
    benchmark.extra_info.update(
        patching_s=patch_s, attribution_s=attribution_s, ratio=ratio, cells=cells, pairs=len(clean),
        spearman=rho.value, spearman_ci=[rho.ci_low, rho.ci_high], pearson=r.value, pearson_ci=[r.ci_low, r.ci_high])
    print(f"\n{setting} {which}: patching {patch_s:.3f} s, attribution {attribution_s:.3f} s, ratio {ratio:.1f}x; "
          f"Spearman {rho.value:.3f} [{rho.ci_low:.3f}, {rho.ci_high:.3f}], "
          f"Pearson {r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] over {cells} cells")
    assert torch.allclose(estimated.clean, measured.clean, atol=1e-4)
    assert torch.allclose(estimated.corrupt, measured.corrupt, atol=1e-4)
    spread = truth[~torch.isnan(measured.values).numpy()]
    assert spread.max() - spread.min() > 0.1  # the effects differ, so the agreement is not trivial
    assert ratio >= min_ratio, f"{setting} {which}: attribution only {ratio:.1f}x faster than activation patching"
    assert rho.value >= min_agreement and r.value >= min_agreement, \
        f"{setting} {which}: Spearman {rho.value:.3f}, Pearson {r.value:.3f} below {min_agreement}"
