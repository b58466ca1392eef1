"""Steered greedy generation against the source study's plain loop, on identical weights in the same run.

The plain loop decodes one prompt at one coefficient at a time, with no cache, recomputing the
whole sequence under the steering hook at every step. `generate` decodes the whole grid (7
coefficients x 2 directions x 20 prompts = 280 rows, 64 new tokens each) in left-padded batches
with the key/value cache, both directions in one call (chained edits whose alphas are 0 on the
other direction's rows). Every row's tokens must be identical, and the target is at least 10x.

Run with ``pytest benchmarks/test_bench_generate.py``.
"""

from __future__ import annotations

import random
import time

import pytest
import torch

from harness.interventions import Add, intervene
from harness.measures.generate import generate
from harness.models.load import from_module
from timing import best_of

COEFS = [-12.0, -8.0, -4.0, 0.0, 4.0, 8.0, 12.0]
N_PROMPTS = 20
N_NEW = 64
SITE = "blocks.2.resid_post"


@pytest.fixture(scope="module")
def gpt2():
    """A 4-block GPT-2 of width 64 (4 heads), seeded, with the byte tokenizer (as tests/_support/tiny.py)."""
    import transformers as tf

    config = tf.GPT2Config(vocab_size=384, n_positions=256, n_embd=64, n_layer=4, n_head=4, resid_pdrop=0.0,
                           embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=1, pad_token_id=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = tf.GPT2LMHeadModel(config)
        with torch.no_grad():  # larger weights than the default init, so outputs vary with the prompt
            for name, p in module.named_parameters():
                if p.dim() == 2:
                    p.normal_(0.0, 0.2)
    return from_module(module.eval(), tf.ByT5Tokenizer(), name="bench:gpt2-4x64")


@pytest.fixture(scope="module")
def prompts():
    rng = random.Random(0)
    words = ["def", "f", "(x)", ":", "return", "x", "+", "1", "if", "for", "i", "in", "range", "=", "\n    "]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) for _ in range(N_PROMPTS)]


def plain_loop(model, prompt, direction, coef):
    ids = model.tokenize([prompt])[0]
    new = []
    for _ in range(N_NEW):
        x = torch.tensor([ids + new])
        mask = torch.ones_like(x)
        with torch.no_grad(), intervene(model, {SITE: Add(direction, alpha=coef)}, masks={"blocks": mask}):
            token = int(model.module(input_ids=x, attention_mask=mask, use_cache=False).logits[0, -1].argmax())
        new.append(token)
        if token == model.tokenizer.eos_token_id:
            break
    return new


def test_cached_steered_generation_is_faster_than_the_plain_loop_and_equal(benchmark, gpt2, prompts):
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1)
    directions = [d / d.norm() for d in torch.randn(2, 64, generator=g)]
    grid = [(k, p, c) for k in range(2) for p in prompts for c in COEFS]
    rows = [p for _, p, _ in grid]
    alphas = [torch.tensor([c if k == j else 0.0 for k, _, c in grid]) for j in range(2)]
    plan = {SITE: [Add(directions[0], alpha=alphas[0]), Add(directions[1], alpha=alphas[1])]}

    t0 = time.perf_counter()
    plain = [plain_loop(gpt2, p, directions[k], c) for k, p, c in grid]
    plain_s = time.perf_counter() - t0
    got, cached_s = best_of(benchmark, lambda: generate(gpt2, rows, interventions=plan, max_new_tokens=N_NEW,
                                                        batch_size=64), rounds=3)
    ratio = plain_s / cached_s
    tokens = sum(len(ids) for ids in plain)
    benchmark.extra_info.update(plain_s=plain_s, cached_s=cached_s, ratio=ratio, rows=len(rows), tokens=tokens)
    print(f"\n{len(rows)} rows, {tokens} tokens: plain loop {plain_s:.2f} s, generate {cached_s:.3f} s, "
          f"ratio {ratio:.1f}x")
    assert [g.ids for g in got] == plain
    assert len({tuple(ids) for ids in plain}) > len(prompts)  # the coefficients change the outputs
    assert ratio >= 10.0, f"cached generation only {ratio:.1f}x faster than the plain loop"
