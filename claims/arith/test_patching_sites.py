"""Finding 4: where the patch matters. Position-wise: the selected head patched only at
positions inside the parentheses (of either prompt of the pair) against only outside them.
Multi-head: the `top_k` heads that ablation ranks highest, patched together, against the
selected head alone and against as many seeded random other heads: the mean of `RANDOM_SETS`
such sets (set i drawn by ``random.Random(PAIR_SEED + i)`` from the heads below the top k, each
patched as one run, averaged pair by pair), so the verdict does not hang on one draw. Same pairs
and statistics as finding 3 (`test_patching.py`)."""

from __future__ import annotations

import random

import pytest

from claims.arith.settings import PAIR_SEED
from harness import expect

RANDOM_SETS = 5


@pytest.fixture
def sites(restoration, ranked_heads, thresholds, head):
    """Define the position-wise and multi-head runs; returns the names of the top-k runs."""
    k = thresholds.top_k
    top = ranked_heads[:k]
    restoration.define(f"{head}-inside", [head], positions="inside")
    restoration.define(f"{head}-outside", [head], positions="outside")
    restoration.define(f"top{k}", top)
    for i in range(RANDOM_SETS):
        restoration.define(f"random{k}-set{i}", random.Random(PAIR_SEED + i).sample(ranked_heads[k:], k))
    restoration.define_mean(f"random{k}", [f"random{k}-set{i}" for i in range(RANDOM_SETS)])
    return {"top": f"top{k}", "random": f"random{k}", "single": head}


@pytest.mark.claim("Patching the selected head only inside the parentheses restores more whole answers than "
                   "patching it only outside them",
                   source="002/003: position-wise patching (inside vs outside the parentheses)")
def test_inside_the_parentheses_restores_more_than_outside(restoration, sites, head):
    expect(restoration.exact(f"{head}-inside")).greater_than(restoration.exact(f"{head}-outside"))


@pytest.mark.claim("Patching the selected head only inside the parentheses recovers more of the logit difference "
                   "than patching it only outside them",
                   source="002/003: position-wise patching; the logit difference of the answer token")
def test_inside_the_parentheses_recovers_more_than_outside(restoration, sites, head):
    expect(restoration.recovery(f"{head}-inside")).greater_than(restoration.recovery(f"{head}-outside"))


@pytest.mark.claim("Patching the top-k heads of the ablation ranking together restores more whole answers than "
                   "the selected head alone, and than as many random heads (the mean of 5 random sets of k)",
                   source="002/003: multi-head patching (top-k heads together), automated head selection")
@pytest.mark.parametrize("against", ["single", "random"])
def test_the_top_heads_together_restore_more(restoration, sites, against):
    expect(restoration.exact(sites["top"])).greater_than(restoration.exact(sites[against]))
