"""The patching engine against TransformerLens' patching functions, identical weights, same run.

A 4-layer, width-128, 4-head GPT-2 (random seeded weights), 16 pairs of 20 tokens whose clean
and corrupt prompts differ in one token (position 8), metric the logit difference of two
answer tokens per pair. TransformerLens runs one full forward per cell; its time includes the
clean `run_with_cache` it needs (our call runs the clean and corrupt forwards itself). Values
must agree within 1e-4 (TransformerLens' scalar metric is the mean over pairs of ours) and the
engine must be at least 3x faster for the residual layer x position map and 2x for the
layer x head map. A second benchmark times `patch_resid_map` on a Qwen2 (the Llama layout, whose
suffix replay cuts rotary positions) against a loop of full forwards (see its section below).

Run with ``OMP_NUM_THREADS=1 pytest benchmarks/test_bench_patching.py``.
"""

from __future__ import annotations

import time
import warnings

import pytest
import torch

from harness.models.load import from_module
from harness.measures.patching import answer_logit_diff, patch_head_map, patch_resid_map
from timing import best_of

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
    result, ours_s = best_of(benchmark, ours, rounds=5)
    ratio = tl_s / ours_s
    benchmark.extra_info.update(transformer_lens_s=tl_s, ours_s=ours_s, ratio=ratio,
                                cells=int(ref.numel()), pairs=N_PAIRS, tokens=N_TOKENS)
    print(f"\n{which}: TransformerLens {tl_s:.3f} s, ours {ours_s:.3f} s, ratio {ratio:.1f}x")
    assert (result.mean() - ref).abs().max() < 1e-4
    assert ratio >= min_ratio, f"{which} map only {ratio:.1f}x faster than TransformerLens"


# --------------------------------------------------------------------------- the Llama layout (Qwen2)
#
# The shipped tracer fixture (`fixture:tracer`, `fixtures/tracer/recipe.py`: a Qwen2 of 4 blocks,
# width 128, 4 query heads over 2 key/value heads, rotary), on TRACER_PAIRS counterfactual pairs of 6-step programs (28-38 tokens: pairs
# of different lengths, right padding) from `fixtures/tracer/data.py`. The reference is a plain
# loop of full forwards, one per (layer, position) cell with every pair that has that position in
# the batch (TransformerLens' scheme), the clean residual written in by a pre-hook on the block.
# `patch_resid_map` must agree within 1e-4 and be at least 3x faster, under eager and sdpa.

TRACER_PAIRS, TRACER_STEPS = 64, 6


def _tracer_recipe():
    from harness.models.fixtures import import_module

    return import_module("tracer.recipe")  # the module harness.models.fixtures builds fixture:tracer with


@pytest.fixture(scope="module")
def tracer_pairs():
    recipe = _tracer_recipe()
    data = recipe.data()
    rows = [r for r in data.programs(0, 9 * 120) if r["n_steps"] == TRACER_STEPS]
    drawn = data.pairs(rows, TRACER_PAIRS, seed=0, length=None)
    clean = [recipe.encode(p["program_a"]) for p in drawn]
    corrupt = [recipe.encode(p["program_b"]) for p in drawn]
    metric = answer_logit_diff([recipe.answer_id(p["ground_truth_a"]) for p in drawn],
                               [recipe.answer_id(p["ground_truth_b"]) for p in drawn])
    return clean, corrupt, metric


def tracer_model(attn: str):
    from harness.models.load import load_model

    m = load_model("fixture:tracer")
    m.module.set_attn_implementation(attn)
    return m


@torch.no_grad()
def loop_resid_map(m, clean, corrupt, metric) -> torch.Tensor:
    """``[n, layers, max_len]`` (NaN past a pair's length): one full forward per (layer, position)."""
    from harness.models.loaded import pad_rows

    ids_c, mask = pad_rows(clean, pad_id=m.pad_id)
    ids_x, _ = pad_rows(corrupt, pad_id=m.pad_id)
    blocks = m.module.get_submodule(m.layout.stack("blocks").blocks)
    n, width = ids_c.shape
    lengths = mask.sum(1)
    inputs = {}
    handles = [b.register_forward_pre_hook(lambda mod, args, kw, j=j: inputs.__setitem__(j, args[0]), with_kwargs=True)
               for j, b in enumerate(blocks)]
    try:
        m.module(input_ids=ids_c, attention_mask=mask, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    values = torch.full((n, len(blocks), width), float("nan"))
    for j, block in enumerate(blocks):
        for pos in range(width):
            rows = (lengths > pos).nonzero()[:, 0]

            def patch(mod, args, kw, rows=rows, pos=pos, j=j):
                h = args[0].clone()
                h[:, pos] = inputs[j][rows, pos]
                return (h, *args[1:]), kw

            handle = block.register_forward_pre_hook(patch, with_kwargs=True)
            try:
                logits = m.module(input_ids=ids_x[rows], attention_mask=mask[rows], use_cache=False).logits
            finally:
                handle.remove()
            last = logits[torch.arange(rows.numel()), lengths[rows] - 1].float()
            values[rows, j, pos] = metric(last, rows)
    return values


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_qwen2_resid_map_is_faster_than_a_loop_of_full_forwards_and_equal(benchmark, tracer_pairs, attn):
    from harness.measures.replay import _suffix_ok

    torch.set_num_threads(1)
    m = tracer_model(attn)
    assert _suffix_ok(m)  # the suffix path is what is measured
    clean, corrupt, metric = tracer_pairs

    def ours():
        return patch_resid_map(m, clean, corrupt, metric)

    loop_resid_map(m, clean[:2], corrupt[:2], metric), ours()  # warm-up
    t0 = time.perf_counter()
    ref = loop_resid_map(m, clean, corrupt, metric)
    loop_s = time.perf_counter() - t0
    result, ours_s = best_of(benchmark, ours, rounds=3)
    ratio = loop_s / ours_s
    benchmark.extra_info.update(loop_s=loop_s, ours_s=ours_s, ratio=ratio, pairs=TRACER_PAIRS,
                                cells=int((~ref.isnan()).sum()))
    print(f"\nqwen2 resid_pre ({attn}): loop {loop_s:.3f} s, ours {ours_s:.3f} s, ratio {ratio:.1f}x")
    real = ~ref.isnan()
    assert torch.equal(real, ~result.values.isnan())
    assert (result.values[real] - ref[real]).abs().max() < 1e-4
    assert ref[real].max() - ref[real].min() > 0.1  # the cells differ, so equality is not trivial
    assert ratio >= 3.0, f"qwen2 resid_pre map ({attn}) only {ratio:.1f}x faster than a loop of full forwards"

