"""The patching engine against TransformerLens' patching functions, identical weights, same run.

A 4-layer, width-128, 4-head GPT-2 (random seeded weights), 16 pairs of 20 tokens whose clean
and corrupt prompts differ in one token (position 8), metric the logit difference of two
answer tokens per pair. TransformerLens runs one full forward per cell; its time includes the
clean `run_with_cache` it needs (our call runs the clean and corrupt forwards itself). Values
must agree within 1e-4 (TransformerLens' scalar metric is the mean over pairs of ours) and the
engine must be at least 3x faster for the residual layer x position map and 2x for the
layer x head map.

Run with ``OMP_NUM_THREADS=1 pytest benchmarks/test_bench_patching.py``.
"""

from __future__ import annotations

import time
import warnings

import pytest
import torch

from harness.models.load import from_module
from harness.measures.patching import answer_logit_diff, patch_head_map, patch_resid_map

N_PAIRS, N_TOKENS, VOCAB = 16, 20, 512


def hooked_from_gpt2(module):
    """A HookedTransformer holding a Hugging Face GPT-2's weights, without TransformerLens'
    weight processing (fold_ln, centering), so its logits equal the Hugging Face model's."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

    c = module.config
    cfg = HookedTransformerConfig(
        n_layers=c.n_layer, d_model=c.n_embd, n_ctx=c.n_positions, d_head=c.n_embd // c.n_head,
        n_heads=c.n_head, d_mlp=c.n_inner or 4 * c.n_embd, d_vocab=c.vocab_size, act_fn="gelu_new",
        normalization_type="LN", eps=c.layer_norm_epsilon, default_prepend_bos=False, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        tl = HookedTransformer(cfg)
    sd = {k: v.detach().clone() for k, v in convert_gpt2_weights(module, cfg).items()}
    sd["unembed.b_U"] = torch.zeros(c.vocab_size)
    tl.load_state_dict(sd, strict=False)
    return tl.eval()


@pytest.fixture(scope="module")
def models():
    import transformers as tf

    torch.manual_seed(0)
    config = tf.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=128, n_layer=4, n_head=4,
                           resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                           bos_token_id=1, eos_token_id=1)
    hf = tf.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for _, p in hf.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2)
    return from_module(hf, tf.ByT5Tokenizer(), name="bench:gpt2-4l-w128"), hooked_from_gpt2(hf)


@pytest.fixture(scope="module")
def pairs():
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(3, VOCAB, (N_PAIRS, N_TOKENS), generator=g)
    corrupt = clean.clone()
    corrupt[:, 8] = torch.randint(3, VOCAB, (N_PAIRS,), generator=g)
    correct, wrong = torch.randint(3, VOCAB, (N_PAIRS,), generator=g), torch.randint(3, VOCAB, (N_PAIRS,), generator=g)
    return clean, corrupt, answer_logit_diff(correct, wrong)


@pytest.mark.parametrize("which, min_ratio", [("resid", 3.0), ("head", 2.0)], ids=["resid_pre", "head_out"])
def test_patching_map_is_faster_than_transformer_lens_and_equal(benchmark, models, pairs, which, min_ratio):
    from transformer_lens import patching as tlp

    torch.set_num_threads(1)
    m, tl = models
    clean, corrupt, metric = pairs
    tl_fn = tlp.get_act_patch_resid_pre if which == "resid" else tlp.get_act_patch_attn_head_out_all_pos
    ours_fn = patch_resid_map if which == "resid" else patch_head_map
    rows = torch.arange(N_PAIRS)

    def tl_map():
        with torch.no_grad():
            _, cache = tl.run_with_cache(clean)
            return tl_fn(tl, corrupt, cache, lambda logits: metric(logits[:, -1], rows).mean())

    def ours():
        return ours_fn(m, clean, corrupt, metric)

    tl_map(), ours()  # warm-up: first-call allocations and imports count for neither
    tl_times = []
    for _ in range(3):
        t0 = time.perf_counter()
        ref = tl_map()
        tl_times.append(time.perf_counter() - t0)
    tl_s = min(tl_times)
    result = benchmark.pedantic(ours, rounds=5, iterations=1)
    ours_s = benchmark.stats.stats.min
    ratio = tl_s / ours_s
    benchmark.extra_info.update(transformer_lens_s=tl_s, ours_s=ours_s, ratio=ratio,
                                cells=int(ref.numel()), pairs=N_PAIRS, tokens=N_TOKENS)
    print(f"\n{which}: TransformerLens {tl_s:.3f} s, ours {ours_s:.3f} s, ratio {ratio:.1f}x")
    assert (result.mean() - ref).abs().max() < 1e-4
    assert ratio >= min_ratio, f"{which} map only {ratio:.1f}x faster than TransformerLens"
