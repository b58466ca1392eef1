"""Finding 3: patching the selected head from a clean run restores the clean answer in a run
whose parentheses were moved, more often than each control.

A pair is a correctly answered parenthesised expression (clean) and the same characters with
the parentheses elsewhere (corrupt, `claims.arith.rebracket`): same token length, another
value, so the corrupt run does not give the clean answer. The bracketing is all that differs,
so a head that carries parentheses, patched from the clean run, should bring the clean answer
back. Heads are chosen by ablation on the selection split; pairs come from the test split.
"""

from __future__ import annotations

import pytest

from claims.arith import measure
from harness import expect

HEAD_CONTROLS = ["other-head-same-layer", "random-heads"]   # random-heads: the mean of 5 (conftest.RANDOM_HEADS)
CONTROLS = [*HEAD_CONTROLS, "wrong-to-wrong"]   # the last has other pairs, so no shared logit-difference scale


def test_the_restoration_check_agrees_with_the_unpatched_runs(arith, patch_pairs):
    """Teacher-forced exact match: every clean prompt gives its answer (the model answered it
    correctly), and no corrupt prompt does (such pairs were dropped as uninformative)."""
    pairs = patch_pairs["clean"]
    assert measure.patched(arith, pairs, source="clean", target="clean").exact.all()
    assert not measure.patched(arith, pairs).exact.any()


@pytest.mark.claim("Patching the selected head (all positions) from the clean run restores the whole clean answer "
                   "more often than each control (the lowest-ranked head of its layer, the mean of 5 random "
                   "heads, the head patched from incorrectly answered sources)",
                   source="002/003: activation patching of layer 2 head 2 from a correct into an incorrect "
                          "expression; controls: another head of the layer, from another incorrect example")
@pytest.mark.parametrize("control", CONTROLS)
def test_patching_the_head_restores_the_answer_more_than_a_control(restoration, head, control):
    expect(restoration.exact(head)).greater_than(restoration.exact(control))


@pytest.mark.claim("Patching the selected head recovers more of the first answer token's logit difference "
                   "(clean answer - corrupt answer) than each control (the lowest-ranked head of its layer, "
                   "the mean of 5 random heads)",
                   source="002/003: the patching metric is the logit difference of the correct answer token")
@pytest.mark.parametrize("control", HEAD_CONTROLS)
def test_patching_the_head_recovers_the_logit_difference_more_than_a_control(restoration, head, control):
    expect(restoration.recovery(head)).greater_than(restoration.recovery(control))


def test_the_controls_are_what_they_say(restoration, ranked_heads, head):
    """The same-layer control is the head of the selected layer that ablation ranks lowest; the
    random heads are 5 other heads, each its own run; wrong-to-wrong patches the selected head."""
    layer = measure.head_id(head)[0]
    same_layer = [h for h in ranked_heads if measure.head_id(h)[0] == layer]
    assert restoration.heads["other-head-same-layer"] == (same_layer[-1],) != (head,)
    randoms = restoration.heads["random-heads"]
    assert head not in randoms and len(set(randoms)) == len(randoms) == 5
    assert restoration.means["random-heads"] == randoms   # each drawn head patched on its own
    assert restoration.heads["wrong-to-wrong"] == (head,)


def test_the_study_runs_agree_with_the_harness_head_map(restoration, head_patch_map, ranked_heads):
    """Two implementations of one patch: the study's teacher-forced run of each head (a full
    forward with a `Patch` hook) and `harness.measures.patching.patch_head_map` (replaying only the blocks
    after the head) give the same first-token logit differences within 1e-4."""
    import numpy as np

    for name in ranked_heads:
        layer, h = measure.head_id(name)
        np.testing.assert_allclose(restoration.run(name).logit_diff, head_patch_map.values[:, layer - 1, h].numpy(),
                                   atol=1e-4, rtol=0)
