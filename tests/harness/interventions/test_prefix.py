"""Prefix caching: replaying the blocks after a site equals the full forward, and the cached
sweep equals the plain sweep, for every kind of encoder site."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.errors import InterventionError
from harness.interventions import Positions
from harness.models.loaded import pad_rows
from harness.interventions.prefix import capture, replay_start
from harness.measures.scores import logprob, logprob_diff
from harness.measures.sweeps import scorer, sweep, symmetric
from tests._support.tiny import ARCHITECTURES, tiny_model

TEXTS = ["h : p → q\n⊢ q", "x : ℕ\n⊢ ∀ y, y = y", "a longer state with several words ⊢ goal", "hi"]


def stack_forward(m, ids, mask):
    if m.is_encoder_decoder:
        return lambda: m.module.get_encoder()(input_ids=ids, attention_mask=mask)
    return lambda: m.module(input_ids=ids, attention_mask=mask, use_cache=False)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_replaying_from_any_block_equals_the_full_forward(arch):
    m = tiny_model(arch)
    stack = m.main_stack
    n = m.sites.stack(stack).n_layers
    ids, mask = pad_rows(m.tokenize(TEXTS), pad_id=m.pad_id)
    with torch.no_grad():
        if m.is_encoder_decoder:
            full = m.module.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        else:
            full = m.module(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
    rows = torch.tensor([2, 0, 0, 3, 1])
    real = mask[rows].bool()
    for start in sorted({0, 1, n // 2, n - 1, n}):
        prefix = capture(m, stack, start=start, ids=ids, mask=mask, run=stack_forward(m, ids, mask))
        out = prefix.replay(rows)
        diff = (out - full[rows]).abs()[real].max()
        assert diff < 1e-4, f"{arch} start={start}: {diff}"


def test_replay_start_is_the_block_that_holds_the_site():
    m = tiny_model("byt5-small")
    assert replay_start(m, m.site("encoder.12.resid_post")) == 12
    assert replay_start(m, m.site("encoder.12.block_out")) == 11
    assert replay_start(m, m.site("encoder.11.resid_post")) == 10
    assert replay_start(m, m.site("encoder.3.resid_pre")) == 2
    assert replay_start(m, m.site("encoder.0.resid_post")) == 0


def test_a_capture_whose_forward_skips_the_blocks_is_an_error():
    m = tiny_model("byt5-small")
    ids, mask = pad_rows(m.tokenize(TEXTS), pad_id=m.pad_id)
    with pytest.raises(InterventionError, match=r"did not run blocks 3\.\.11 once each"):
        capture(m, "encoder", start=3, ids=ids, mask=mask, run=lambda: None)


def tolerance(m) -> float:
    """1e-4, widened by float32's relative noise on the log-probabilities being differenced.

    An untrained byte model gives each 5-byte continuation about -35 nats; decoding both
    continuations in one batch of 2n rows instead of two of n changes the float32 kernels'
    blocking, which moves each term by a few 1e-6 of its size. A trained model's terms are a
    few nats, where this is far below 1e-4 (the tacgen fixture's test checks 1e-4 flat).
    """
    scale = max(logprob(m, TEXTS, c).abs().max().item() for c in ("intro", "apply"))
    return 1e-4 + 1e-5 * scale


SITES = ["encoder.12.resid_post", "encoder.11.resid_post", "encoder.12.block_out", "encoder.0.resid_post",
         "encoder.3.resid_pre", "encoder.5.attn_out", "encoder.6.mlp_out", "encoder.2.attn.head3"]


@pytest.mark.parametrize("site", SITES)
@pytest.mark.parametrize("rms_scaled", [False, True], ids=["add", "rms_add"])
def test_the_cached_sweep_equals_the_plain_sweep(site, rms_scaled):
    m = tiny_model("byt5-small")
    direction = torch.randn(m.width(m.site(site)), generator=torch.Generator().manual_seed(0))
    for score in (scorer(logprob_diff, "intro", "apply"), scorer(logprob, "apply", max_length=20)):
        kw = dict(at=site, direction=direction, alphas=symmetric(0.5, steps=5), score=score,
                  rms_scaled=rms_scaled, batch_size=7)
        cached, plain = sweep(m, TEXTS, **kw), sweep(m, TEXTS, cache=False, **kw)
        assert np.ptp(plain.scores) > 0.1  # the edit moves the score, so equality is not trivial
        np.testing.assert_allclose(cached.scores, plain.scores, atol=tolerance(m), rtol=0)


def test_the_cached_sweep_honours_token_spans():
    m = tiny_model("byt5-small")
    spans = Positions.of_spans([[(0, 3)], [(1, 4)], [(2, 9)], [(0, 2)]])
    direction = torch.randn(32, generator=torch.Generator().manual_seed(1))
    kw = dict(at="encoder.7.resid_post", direction=direction, alphas=symmetric(0.5, steps=5),
              score=scorer(logprob_diff, "intro", "apply"), positions=spans)
    np.testing.assert_allclose(sweep(m, TEXTS, **kw).scores, sweep(m, TEXTS, cache=False, **kw).scores,
                               atol=tolerance(m), rtol=0)


def test_the_cached_sweep_leaves_no_hooks_behind():
    m = tiny_model("byt5-small")
    before = sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks) for mod in m.module.modules())
    sweep(m, TEXTS, at="encoder.9.resid_post", direction=torch.ones(32), alphas=symmetric(0.5, steps=3),
          score=scorer(logprob_diff, "intro", "apply"))
    after = sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks) for mod in m.module.modules())
    assert after == before
