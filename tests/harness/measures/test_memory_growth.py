"""Repeated work does not grow memory: interventions, sweeps and patching maps run many times in
one process leave no hooks, keep no autograd graphs, grow no caches, and hold the process's
memory steady.

Each workload runs a few warm-up rounds (first calls build lazy state once: tokenizer tables,
transformers' output-capture setup, allocator pools), then many more. Between the two points
we compare exactly what must not change (every module's hooks, the number of live tensors, the
number of gc-tracked objects, each harness module's global containers) and bound what may
wobble (RSS by a few MB, Python allocations traced by `tracemalloc` by a few hundred KB:
free lists and interpreter caches fill up to a fixed size, a leak grows with the rounds).
"""

from __future__ import annotations

import gc
import os
import sys
import tracemalloc
from collections import Counter
from typing import Any, Callable

import numpy as np
import pytest
import torch

from harness.interventions import Add, Noise, Patch, Record, intervene
from harness.models.loaded import LoadedModel, pad_rows
from harness.measures.patching import PatchMap, answer_logit_diff, patch_head_map, patch_resid_map
from harness.measures.scores import logit_diff, logprob_diff
from harness.measures.sweeps import Curve, scorer, sweep, symmetric
from tests.harness.interventions.test_hook_hygiene import hooks
from tests._support.tiny import gpt2_24, tiny_model

WARMUP, ROUNDS, TRACED_ROUNDS = 5, 30, 20
RSS_SLACK = 4 * 2**20          # bytes of RSS growth allowed over ROUNDS after warm-up
TRACED_SLACK = 384 * 2**10     # bytes of Python allocations still alive after TRACED_ROUNDS
OBJECT_SLACK = 16              # gc-tracked objects (an exact count, less a little interpreter noise)

TEXTS = ["hello world, this is long", "hi", "abcdef"]
CLEAN = ["abcdef", "hi", "x = 12"]
CORRUPT = ["abcxef", "ho", "x = 13"]  # same lengths, pair by pair


# --------------------------------------------------------------------------- what is measured


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def census() -> Counter:
    """gc-tracked objects by type (types compared by name: no attribute access on odd objects)."""
    return Counter(type(o).__name__ for o in gc.get_objects())


def live_tensors() -> int:
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


def harness_containers() -> dict[str, int]:
    """The size of every dict/list/set held at module level by a loaded harness module."""
    out = {}
    for name, module in list(sys.modules.items()):
        if name == "harness" or name.startswith("harness."):
            for attr, value in list(vars(module).items()):
                if isinstance(value, (dict, list, set)):
                    out[f"{name}.{attr}"] = len(value)
    return out


def module_state(m: LoadedModel) -> dict[str, tuple]:
    """Per submodule: its attribute names, buffers and parameters (a cache hung on a module shows)."""
    return {name: (tuple(sorted(vars(mod))), tuple(mod._buffers), tuple(mod._parameters),
                   tuple(p.grad is None for p in mod._parameters.values() if p is not None))
            for name, mod in m.module.named_modules()}


def no_grad_results(value: Any) -> None:
    """Every tensor a result holds is detached: no autograd graph is kept alive by it."""
    tensors: list[torch.Tensor] = []
    if isinstance(value, torch.Tensor):
        tensors.append(value)
    elif isinstance(value, PatchMap):
        tensors += [value.values, value.clean, value.corrupt, value.lengths]
    elif isinstance(value, Curve):
        assert isinstance(value.scores, np.ndarray)
    elif isinstance(value, dict):
        tensors += list(value.values())
    for t in tensors:
        assert not t.requires_grad and t.grad_fn is None, "a result holds an autograd graph"


def check_steady(models: list[LoadedModel], work: Callable[[], Any]) -> dict[str, float]:
    """Run `work` WARMUP + ROUNDS times with grad enabled, then TRACED_ROUNDS under tracemalloc,
    and assert nothing grew; returns the measured growth (for the failure message)."""
    with torch.enable_grad():
        for _ in range(WARMUP):
            no_grad_results(work())
        census(), live_tensors()  # the first census builds lazy state of its own
        gc.collect()
        before_hooks = [hooks(m) for m in models]
        before_state = [module_state(m) for m in models]
        before_globals = harness_containers()
        t0, c0, r0 = live_tensors(), census(), rss()
        for _ in range(ROUNDS):
            result = work()
            no_grad_results(result)
        del result
        gc.collect()
        t1, c1, r1 = live_tensors(), census(), rss()
        grew = {k: c1[k] - c0[k] for k in c0.keys() | c1.keys() if c1[k] != c0[k]}
        assert [hooks(m) for m in models] == before_hooks, "hooks were left on a module"
        assert [module_state(m) for m in models] == before_state, "a module gained state (a cache?)"
        assert harness_containers() == before_globals, "a harness module-level container grew"
        assert t1 == t0, f"live tensors went from {t0} to {t1} over {ROUNDS} rounds"
        assert sum(c1.values()) - sum(c0.values()) <= OBJECT_SLACK, f"gc objects grew by type: {grew}"
        assert r1 - r0 <= RSS_SLACK, f"RSS grew by {(r1 - r0) / 2**20:.1f} MB over {ROUNDS} rounds"

        tracemalloc.start()
        try:
            for _ in range(TRACED_ROUNDS):
                result = work()
            del result
            gc.collect()
            traced, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert traced <= TRACED_SLACK, (f"{traced / 1024:.0f} KB of Python allocations made during "
                                        f"{TRACED_ROUNDS} rounds are still alive")
    return {"rss_mb": (r1 - r0) / 2**20, "traced_kb": traced / 1024, "objects": sum(c1.values()) - sum(c0.values())}


# --------------------------------------------------------------------------- the workloads


def intervene_work(m: LoadedModel, plan_of: Callable[[LoadedModel, torch.Tensor], dict]) -> Callable[[], Any]:
    ids, mask = pad_rows(m.tokenize(TEXTS), pad_id=m.pad_id)
    plan = plan_of(m, ids)

    def work() -> Any:
        with intervene(m, plan, masks={"blocks": mask}) as run:
            m.module(input_ids=ids, attention_mask=mask)  # grad enabled: the logits' graph is dropped here
        return run.recorded

    return work


PLANS = {
    "add": lambda m, ids: {"blocks.2.resid_post": [Add(torch.ones(24), alpha=0.5), Record()]},
    "noise": lambda m, ids: {"blocks.1.resid_pre": [Noise(std=0.5, seed=1), Record()],
                             "blocks.2.attn.head1": Noise(std=1.0, seed=2)},
    "patch": lambda m, ids: {"blocks.3.resid_pre": [Patch(torch.randn(*ids.shape, 24)), Record()],
                             "blocks.2.attn.head3": Patch(torch.zeros(*ids.shape, 6))},
}


@pytest.mark.parametrize("kind", sorted(PLANS))
def test_repeating_an_intervention_grows_nothing(kind):
    m = gpt2_24()
    check_steady([m], intervene_work(m, PLANS[kind]))


def test_repeating_a_sweep_grows_nothing():
    m = gpt2_24()
    d = torch.randn(24, generator=torch.Generator().manual_seed(0))
    check_steady([m], lambda: sweep(m, TEXTS, at="blocks.2.resid_post", direction=d, alphas=symmetric(1.0, steps=3),
                                    score=scorer(logit_diff, "e", "t"), batch_size=4))


def test_repeating_a_prefix_cached_sweep_grows_nothing():
    t5 = tiny_model("byt5-small")
    d = torch.randn(32, generator=torch.Generator().manual_seed(0))
    check_steady([t5], lambda: sweep(t5, TEXTS, at="encoder.6.resid_post", direction=d,
                                     alphas=symmetric(1.0, steps=3), score=scorer(logprob_diff, "ok", "no"),
                                     batch_size=4))


@pytest.mark.parametrize("fn", [patch_resid_map, patch_head_map], ids=["resid", "head"])
def test_repeating_a_patching_map_grows_nothing(fn):
    m = gpt2_24()
    metric = answer_logit_diff([104, 105, 106], [50, 60, 70])
    check_steady([m], lambda: fn(m, CLEAN, CORRUPT, metric, batch_size=16))


def test_a_leak_is_caught():
    """The check is not vacuous: a workload that keeps one activation per round fails it."""
    m = gpt2_24()
    kept: list[torch.Tensor] = []
    work = intervene_work(m, PLANS["add"])

    def leaky() -> Any:
        recorded = work()
        kept.append(next(iter(recorded.values())))
        return {}

    with pytest.raises(AssertionError, match=r"live tensors went from \d+ to \d+ over 30 rounds"):
        check_steady([m], leaky)
