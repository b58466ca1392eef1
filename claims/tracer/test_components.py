"""Finding 3: which components move the value to the final position. Heads are ranked on the
selection half of the pairs and measured on the test half; attention and MLP outputs per block."""

from __future__ import annotations

import numpy as np
import pytest

from harness import expect, stats

from claims.tracer.settings import N_RANDOM_HEADS

SOURCE = "004: head-level patching; attention outputs vs MLP outputs"


@pytest.fixture(scope="session")
def top_head(head_map, halves) -> tuple[int, int]:
    """(block, head), 1-based block: the head whose output at the final position recovers most on
    the selection half."""
    means = np.nanmean(head_map[halves["selection"]], 0)
    layer, head = np.unravel_index(int(np.nanargmax(means)), means.shape)
    return int(layer) + 1, int(head)


@pytest.mark.claim("The head whose output at the final position recovers most (chosen on the selection half) "
                   "recovers more than heads drawn at random, on the test half", source=SOURCE)
def test_the_top_head_beats_random_heads(head_map, halves, top_head, components, claim_seed):
    layer, head = top_head
    n_layers, n_heads = head_map.shape[1:]
    others = [(l, h) for l in range(n_layers) for h in range(n_heads) if (l, h) != (layer - 1, head)]
    picked = np.random.default_rng(claim_seed).choice(len(others), size=min(N_RANDOM_HEADS, len(others)), replace=False)
    test = head_map[halves["test"]]
    control = np.mean([test[:, others[i][0], others[i][1]] for i in picked], 0)
    est = stats.paired_difference(test[:, layer - 1, head], control, ).with_context(
        statistic=f"normalised recovery: blocks.{layer}.attn.head{head} at the final position minus the mean of "
                  f"{len(picked)} random heads ({len(control)} test-half pairs)")
    expect(est).positive()


@pytest.mark.claim("At the final position the block's attention output carries the answer more than its MLP output "
                   "(patched from a into b, normalised recovery)", source=SOURCE)
def test_attention_output_carries_more_than_the_mlp_output(layer_map, halves, block, components):
    test = layer_map[halves["test"]]
    est = stats.paired_difference(test[:, block - 1, 0], test[:, block - 1, 1], ).with_context(
        statistic=f"normalised recovery at the final position: blocks.{block}.attn_out - blocks.{block}.mlp_out "
                  f"({test.shape[0]} test-half pairs)")
    expect(est).positive()
