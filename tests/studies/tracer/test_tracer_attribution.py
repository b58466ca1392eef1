"""The tracer study's attribution-patching estimates are over the same pairs and metric as its
patching maps (`claims.tracer.attribution`), on a random-weight Qwen2 with a character tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import DataError

from claims.tracer import attribution, programs
from tests.studies.tracer.test_tracer_measure import _all_right, digits, rows  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def pairs(digits, rows):  # noqa: F811
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(programs, "answered", _all_right)
        return programs.draw_pairs(digits, rows, 6, steps=6, seed=2)


@pytest.mark.parametrize("family", list(attribution.FAMILIES))
def test_the_estimate_and_the_patching_map_share_pairs_and_metric(digits, pairs, family):  # noqa: F811
    measured = attribution.patch(digits, pairs, family)
    estimate = attribution.attribute(digits, pairs, family)
    assert estimate.values.shape == measured.values.shape
    np.testing.assert_allclose(estimate.clean.numpy(), measured.clean.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(estimate.corrupt.numpy(), measured.corrupt.numpy(), atol=1e-4, rtol=0)
    # the metric is logit(a's first answer token) - logit(b's) after program a (clean)
    pair = pairs[0]
    ids = torch.tensor(digits.tokenize([pair["program_a"]]))
    with torch.no_grad():
        logits = digits.module(input_ids=ids).logits[0, -1]
    a, b = (programs.answer_ids(digits, pair[k])[0] for k in ("ground_truth_a", "ground_truth_b"))
    assert float(measured.clean[0]) == pytest.approx(float(logits[a] - logits[b]), abs=1e-4)


def test_at_the_embeddings_both_maps_move_only_the_changed_token(digits, pairs):  # noqa: F811
    """The programs differ in one token: at ``blocks.1.resid_pre`` every other position is exactly
    zero in the patching map and in the estimate (the clean and corrupt activations are equal there)."""
    measured = attribution.patch(digits, pairs, "resid")
    estimate = attribution.attribute(digits, pairs, "resid")
    for i, pair in enumerate(pairs):
        a, b = digits.tokenize([pair["program_a"], pair["program_b"]])
        same = [q for q in range(len(a)) if a[q] == b[q]]
        for pm in (measured, estimate):
            assert bool((pm.values[i, 0, same] == pm.corrupt[i]).all())


def test_effects_are_taken_over_the_estimates_rows_and_padded_to_one_width(digits, pairs):  # noqa: F811
    measured = attribution.patch(digits, pairs, "resid")
    rows = [1, 3]
    estimate = attribution.attribute(digits, [pairs[i] for i in rows], "resid")
    est, meas = attribution.effects_on(estimate, measured, rows)
    assert est.shape == meas.shape == (2, *measured.values.shape[1:2], max(estimate.values.shape[2],
                                                                           measured.values.shape[2]))
    want = (measured.values - measured.corrupt[:, None, None]).numpy()[rows]
    np.testing.assert_allclose(meas[:, :, : want.shape[2]], want, atol=0, rtol=0)
    assert np.isnan(est[:, :, estimate.values.shape[2]:]).all()
    with pytest.raises(DataError, match=r"give `rows` as the estimate's pairs in the measured map"):
        attribution.effects_on(estimate, measured, [0, 1, 2])


def test_an_unknown_family_is_refused(digits, pairs):  # noqa: F811
    with pytest.raises(DataError, match=r"`family` must be one of \['resid', 'heads', 'outputs'\], got 'head'"):
        attribution.patch(digits, pairs, "head")
