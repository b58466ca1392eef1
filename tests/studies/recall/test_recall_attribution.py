"""The recall study's attribution-patching estimates are over the same pairs and metric as its
patching maps (`claims.recall.attribution`), on `fixture:recall`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import DataError, answer_prob, load_model, patch_resid_map

from claims.recall import attribution
from claims.recall.facts import facts
from claims.recall.prompts import other_subject_pairs, tokenize_facts


@pytest.fixture(scope="module")
def model():
    return load_model("fixture:recall")


@pytest.fixture(scope="module")
def chosen(model):
    return tokenize_facts(model, facts())[:60]


@pytest.fixture(scope="module")
def pairs(chosen):
    out = other_subject_pairs(chosen)[:12]
    assert len(out) >= 6
    return out


@pytest.mark.parametrize("family", list(attribution.FAMILIES))
def test_the_estimate_and_the_patching_map_share_pairs_and_metric(model, chosen, pairs, family):
    measured = attribution.patch(model, chosen, pairs, family)
    estimate = attribution.attribute(model, chosen, pairs, family)
    assert estimate.values.shape == measured.values.shape and measured.n == len(pairs)
    np.testing.assert_allclose(estimate.clean.numpy(), measured.clean.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(estimate.corrupt.numpy(), measured.corrupt.numpy(), atol=1e-4, rtol=0)
    # the metric is P(the clean prompt's answer) at the last token, on the clean and on the corrupt prompt
    i, j = pairs[0]
    with torch.no_grad():
        for prompt, got in ((chosen[i], measured.clean[0]), (chosen[j], measured.corrupt[0])):
            logits = model.module(input_ids=torch.tensor([list(prompt.ids)])).logits[0, -1]
            assert float(got) == pytest.approx(float(torch.softmax(logits.float(), -1)[chosen[i].target]), abs=1e-5)


def test_the_residual_family_is_the_patching_claims_map(model, chosen, pairs):
    """`patch(..., "resid")` is `patch_resid_map` from each clean prompt into its partner with
    P(the clean answer): the map the patching claim reads."""
    got = attribution.patch(model, chosen, pairs, "resid")
    want = patch_resid_map(model, [list(chosen[i].ids) for i, _ in pairs], [list(chosen[j].ids) for _, j in pairs],
                           answer_prob([chosen[i].target for i, _ in pairs]))
    torch.testing.assert_close(got.values, want.values, atol=1e-5, rtol=0, equal_nan=True)


def test_an_unknown_family_is_refused(model, chosen, pairs):
    with pytest.raises(DataError, match=r"`family` must be one of \['resid', 'outputs'\], got 'heads'"):
        attribution.attribute(model, chosen, pairs, "heads")
