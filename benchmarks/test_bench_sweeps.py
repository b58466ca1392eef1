"""The cached sweep engine against the plain loop, on identical weights in the same run.

The plain loop runs one example, one alpha and one continuation per forward. The engine runs
the encoder up to the site once per example, re-runs only the blocks after it, and decodes
both continuations in one pass. Scores must agree within 1e-4 and the engine must be at least
10x faster when steering at the encoder output and at least 3x inside the encoder.

Run with ``pytest benchmarks/``.
"""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
import torch

from harness.interventions import Add
from harness.models.load import from_module
from harness.measures.scores import logprob
from harness.measures.sweeps import scorer, sweep, symmetric
from harness.measures.scores import logprob_diff
from timing import best_of

N_EXAMPLES = 16
ALPHAS = symmetric(0.25, steps=11)


@pytest.fixture(scope="module")
def byt5():
    """ByT5-small topology (12 + 4 layers, gated-GELU, untied head) at the fixture's width."""
    import transformers as tf

    torch.manual_seed(0)
    config = tf.T5Config(vocab_size=384, d_model=64, d_kv=16, d_ff=128, num_layers=12, num_decoder_layers=4,
                         num_heads=4, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                         tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    module = tf.T5ForConditionalGeneration(config)
    module.lm_head.weight = torch.nn.Parameter(torch.randn_like(module.lm_head.weight) * 0.05)
    return from_module(module.eval(), tf.ByT5Tokenizer(), name="bench:byt5-small-w64")


@pytest.fixture(scope="module")
def states():
    rng = random.Random(0)
    words = ["h", ":", "p", "→", "q", "∀", "x", "ℕ", "∧", "=", "+", "y", "f"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(20, 40))) + "\n⊢ q" for _ in range(N_EXAMPLES)]


def plain_loop(model, states, site, direction):
    out = np.empty((len(states), ALPHAS.size))
    for i, x in enumerate(states):
        for j, a in enumerate(ALPHAS):
            edit = {site: Add(direction, alpha=float(a))}
            out[i, j] = float(logprob(model, [x], "intro", interventions=edit)
                              - logprob(model, [x], "apply", interventions=edit))
    return out


@pytest.mark.parametrize("site, min_ratio", [("encoder.12.resid_post", 10.0), ("encoder.11.resid_post", 3.0)],
                         ids=["layer12", "layer11"])
def test_cached_sweep_is_faster_than_the_plain_loop_and_equal(benchmark, byt5, states, site, min_ratio):
    torch.set_num_threads(1)
    direction = torch.randn(64, generator=torch.Generator().manual_seed(1))
    t0 = time.perf_counter()
    plain = plain_loop(byt5, states, site, direction)
    plain_s = time.perf_counter() - t0
    curve, cached_s = best_of(
        benchmark, lambda: sweep(byt5, states, at=site, direction=direction, alphas=ALPHAS,
                                 score=scorer(logprob_diff, "intro", "apply"), batch_size=64), rounds=3)
    ratio = plain_s / cached_s
    benchmark.extra_info.update(plain_s=plain_s, cached_s=cached_s, ratio=ratio)
    print(f"\n{site}: plain loop {plain_s:.2f} s, cached sweep {cached_s:.3f} s, ratio {ratio:.1f}x")
    np.testing.assert_allclose(curve.scores, plain, atol=1e-4, rtol=1e-5)
    assert ratio >= min_ratio, f"cached sweep only {ratio:.1f}x faster than the plain loop at {site}"
