"""Activation patching maps: equal to a per-cell loop of full forwards and to TransformerLens on
identical weights, exact no-op and full-recovery checks, clear errors, and no hooks left."""

from __future__ import annotations

import pytest
import torch

from harness.errors import DataError, ShapeError, SiteError
from harness.interventions import Patch, Positions, Record, intervene
from harness.models.load import from_module
from harness.models.loaded import pad_rows
from harness.measures.patching import (answer_logit_diff, answer_logprob, answer_prob, patch_head_map,
                                       patch_resid_map)
from harness.measures.patching_outputs import patch_layer_map
from tests._support.tiny import tiny_model

CLEAN = ["hello world, this is long", "hi", "abcdef"]
CORRUPT = ["hello WORLD, this is long", "ho", "abcxef"]  # same byte lengths, pair by pair
METRIC = answer_logit_diff([104, 105, 106], [50, 60, 70])


def last_logits(m, texts, plan):
    ids, mask = pad_rows(m.tokenize(texts), pad_id=m.pad_id)
    with torch.no_grad(), intervene(m, plan, masks={"blocks": mask}) as run:
        logits = m.module(input_ids=ids, attention_mask=mask).logits
    return run, logits[torch.arange(len(texts)), mask.sum(1) - 1]


def loop_resid(m, metric, layers):
    """One full forward per (pair, layer, position) with `Patch` at resid_pre."""
    out = {}
    for i, (c, x) in enumerate(zip(CLEAN, CORRUPT)):
        for L in layers:
            site = m.site(f"blocks.{L}.resid_pre")
            src = last_logits(m, [c], {site: Record()})[0].recorded[site]
            for p in range(src.shape[1]):
                where = torch.zeros(1, src.shape[1], dtype=torch.bool)
                where[0, p] = True
                _, lg = last_logits(m, [x], {site: Patch(src, Positions.of_mask(where))})
                out[i, L, p] = float(metric(lg, torch.tensor([i]))[0])
    return out


def loop_heads(m, metric, layers, at=Positions.all()):
    out = {}
    for i, (c, x) in enumerate(zip(CLEAN, CORRUPT)):
        for L in layers:
            for h in range(m.sites.stack("blocks").n_heads):
                site = m.site(f"blocks.{L}.attn.head{h}")
                src = last_logits(m, [c], {site: Record()})[0].recorded[site]
                _, lg = last_logits(m, [x], {site: Patch(src, at)})
                out[i, L, h] = float(metric(lg, torch.tensor([i]))[0])
    return out


def loop_layer_outputs(m, metric, layers, at):
    """One full forward per (pair, layer, point) with `Patch` at blocks.L.attn_out / mlp_out."""
    out = {}
    for i, (c, x) in enumerate(zip(CLEAN, CORRUPT)):
        for L in layers:
            for k, point in enumerate(("attn_out", "mlp_out")):
                site = m.site(f"blocks.{L}.{point}")
                src = last_logits(m, [c], {site: Record()})[0].recorded[site]
                _, lg = last_logits(m, [x], {site: Patch(src, at)})
                out[i, L, k] = float(metric(lg, torch.tensor([i]))[0])
    return out


def hook_count(m) -> int:
    return sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks) for mod in m.module.modules())


@pytest.mark.parametrize("arch", ["gpt2", "qwen2.5-0.5b"])
def test_resid_map_equals_a_per_cell_loop(arch):
    m = tiny_model(arch)
    n_layers = m.sites.stack("blocks").n_layers
    layers = [1, 2, n_layers // 2, n_layers]
    pm = patch_resid_map(m, CLEAN, CORRUPT, METRIC, batch_size=7)
    assert pm.values.shape == (3, n_layers, 26) and pm.kind == "resid_pre"
    for (i, L, p), want in loop_resid(m, METRIC, layers).items():
        assert abs(float(pm.values[i, L - 1, p]) - want) < 1e-4, (i, L, p)
    assert torch.isnan(pm.values[1, :, 3:]).all() and not torch.isnan(pm.values[1, :, :3]).any()


@pytest.mark.parametrize("arch", ["gpt2", "qwen2.5-0.5b"])
def test_head_map_equals_a_per_cell_loop(arch):
    m = tiny_model(arch)
    n_layers, n_heads = m.sites.stack("blocks").n_layers, m.sites.stack("blocks").n_heads
    layers = [1, n_layers // 2, n_layers]
    pm = patch_head_map(m, CLEAN, CORRUPT, METRIC, batch_size=5)
    assert pm.values.shape == (3, n_layers, n_heads) and pm.kind == "head"
    for (i, L, h), want in loop_heads(m, METRIC, layers).items():
        assert abs(float(pm.values[i, L - 1, h]) - want) < 1e-4, (i, L, h)


@pytest.mark.parametrize("arch", ["gpt2", "qwen2.5-0.5b"])
def test_head_map_at_the_last_token_equals_a_per_cell_loop(arch):
    m = tiny_model(arch)
    n_layers, n_heads = m.sites.stack("blocks").n_layers, m.sites.stack("blocks").n_heads
    layers = [1, n_layers // 2, n_layers]
    pm = patch_head_map(m, CLEAN, CORRUPT, METRIC, at="last", batch_size=5)
    assert pm.values.shape == (3, n_layers, n_heads) and pm.kind == "head_last"
    for (i, L, h), want in loop_heads(m, METRIC, layers, Positions.last()).items():
        assert abs(float(pm.values[i, L - 1, h]) - want) < 1e-4, (i, L, h)
    # patching the last token only is not patching every position
    assert not torch.allclose(pm.values, patch_head_map(m, CLEAN, CORRUPT, METRIC).values)


@pytest.mark.parametrize("at", ["last", "all"])
@pytest.mark.parametrize("arch", ["gpt2", "qwen2.5-0.5b"])
def test_layer_map_equals_a_per_cell_loop(arch, at):
    m = tiny_model(arch)
    n_layers = m.sites.stack("blocks").n_layers
    layers = [1, 2, n_layers // 2, n_layers]
    pm = patch_layer_map(m, CLEAN, CORRUPT, METRIC, at=at, batch_size=5)
    assert pm.values.shape == (3, n_layers, 2) and pm.kind == "layer"
    where = Positions.last() if at == "last" else Positions.all()
    for (i, L, k), want in loop_layer_outputs(m, METRIC, layers, where).items():
        assert abs(float(pm.values[i, L - 1, k]) - want) < 1e-4, (i, L, k)
    mlp = patch_layer_map(m, CLEAN, CORRUPT, METRIC, points=("mlp_out",), at=at)
    assert mlp.values.shape == (3, n_layers, 1) and torch.allclose(mlp.values[..., 0], pm.values[..., 1], atol=1e-5)


def test_layer_map_of_the_corrupt_run_with_itself_changes_nothing():
    m = tiny_model("gpt2")
    for at in ("last", "all"):
        pm = patch_layer_map(m, CORRUPT, CORRUPT, METRIC, at=at)
        assert torch.equal(pm.values, pm.corrupt[:, None, None].expand_as(pm.values))


def test_bad_at_and_points_are_clear_errors():
    m = tiny_model("gpt2")
    with pytest.raises(DataError, match=r"`at` must be 'all' .* or 'last' .*got 'first'"):
        patch_head_map(m, CLEAN, CORRUPT, METRIC, at="first")
    with pytest.raises(DataError, match=r"`at` must be 'all'"):
        patch_layer_map(m, CLEAN, CORRUPT, METRIC, at=None)
    with pytest.raises(DataError, match=r"`points` must be distinct names among \['attn_out', 'mlp_out'\].*\['resid_pre'\]"):
        patch_layer_map(m, CLEAN, CORRUPT, METRIC, points=("resid_pre",))
    with pytest.raises(DataError, match=r"`points` must be distinct"):
        patch_layer_map(m, CLEAN, CORRUPT, METRIC, points=("mlp_out", "mlp_out"))
    with pytest.raises(DataError, match=r"`points` must be distinct"):
        patch_layer_map(m, CLEAN, CORRUPT, METRIC, points=())
    with pytest.raises(DataError, match=r"single string 'attn_out'; write points=\('attn_out',\)"):
        patch_layer_map(m, CLEAN, CORRUPT, METRIC, points="attn_out")


def test_baselines_are_the_clean_and_corrupt_runs():
    m = tiny_model("gpt2")
    pm = patch_resid_map(m, CLEAN, CORRUPT, METRIC)
    _, clean = last_logits(m, CLEAN, {})
    _, corrupt = last_logits(m, CORRUPT, {})
    rows = torch.arange(3)
    assert torch.allclose(pm.clean, METRIC(clean, rows), atol=1e-4)
    assert torch.allclose(pm.corrupt, METRIC(corrupt, rows), atol=1e-4)
    norm = pm.normalized()
    assert norm.shape == pm.values.shape and pm.mean().shape == (12, 26)


def test_patching_the_corrupt_run_with_itself_changes_nothing():
    m = tiny_model("gpt2")
    for fn in (patch_resid_map, patch_head_map):
        pm = fn(m, CORRUPT, CORRUPT, METRIC)
        real = ~torch.isnan(pm.values)
        diff = (pm.values - pm.corrupt[:, None, None])[real].abs().max()
        assert diff < 1e-4, (fn.__name__, diff)


def test_patching_resid_pre_everywhere_from_clean_reproduces_the_clean_run():
    m = tiny_model("gpt2")
    sites = [m.site(f"blocks.{L}.resid_pre") for L in range(1, 13)]
    run, clean = last_logits(m, CLEAN, {s: Record() for s in sites})
    _, patched = last_logits(m, CORRUPT, {s: Patch(run.recorded[s]) for s in sites})
    assert (patched - clean).abs().max() < 1e-4
    # a pair that differs only in its last token: patching that position at any block is the clean run
    ids = m.tokenize(CLEAN)
    bad = [row[:-1] + [row[-1] + 1] for row in ids]
    pm = patch_resid_map(m, ids, bad, METRIC)
    for i, n in enumerate(pm.lengths.tolist()):
        assert (pm.values[i, :, n - 1] - pm.clean[i]).abs().max() < 1e-4
        assert (pm.values[i, :, : n - 1] - pm.corrupt[i]).abs().max() < 1e-4
    # every head of every block patched from clean at once: the last token (the same in both
    # prompts) then has the clean residual at every block, so its logits are the clean ones
    heads = [m.site(f"blocks.{L}.attn.head{h}") for L in range(1, 13) for h in range(12)]
    run, _ = last_logits(m, CLEAN, {s: Record() for s in heads})
    _, all_heads = last_logits(m, CORRUPT, {s: Patch(run.recorded[s]) for s in heads})
    assert (all_heads - clean).abs().max() < 1e-4


def test_per_pair_targets_and_logprob_metric():
    m = tiny_model("gpt2")
    metric = answer_logprob([104, 105, 106])
    pm = patch_head_map(m, CLEAN, CORRUPT, metric)
    _, lg = last_logits(m, CORRUPT, {})
    want = torch.log_softmax(lg, -1)[torch.arange(3), torch.tensor([104, 105, 106])]
    assert torch.allclose(pm.corrupt, want, atol=1e-4)
    assert (pm.values <= 0).all()
    prob = patch_head_map(m, CLEAN, CORRUPT, answer_prob([104, 105, 106]))
    assert torch.allclose(prob.values.log(), pm.values, atol=1e-5)
    assert torch.allclose(prob.corrupt, want.exp(), atol=1e-6)


def test_token_id_inputs_equal_string_inputs():
    m = tiny_model("gpt2")
    a = patch_resid_map(m, CLEAN, CORRUPT, METRIC)
    b = patch_resid_map(m, m.tokenize(CLEAN), m.tokenize(CORRUPT), METRIC)
    assert torch.allclose(a.values, b.values, equal_nan=True)


# --------------------------------------------------------------------------- TransformerLens


def hooked_from_gpt2(module):
    """A HookedTransformer with a Hugging Face GPT-2's weights, no weight processing (no fold_ln,
    no centering), so its logits equal the Hugging Face model's."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

    c = module.config
    cfg = HookedTransformerConfig(
        n_layers=c.n_layer, d_model=c.n_embd, n_ctx=c.n_positions, d_head=c.n_embd // c.n_head,
        n_heads=c.n_head, d_mlp=c.n_inner or 4 * c.n_embd, d_vocab=c.vocab_size, act_fn="gelu_new",
        normalization_type="LN", eps=c.layer_norm_epsilon, default_prepend_bos=False, device="cpu")
    tl = HookedTransformer(cfg)
    sd = {k: v.detach().clone() for k, v in convert_gpt2_weights(module, cfg).items()}
    sd["unembed.b_U"] = torch.zeros(c.vocab_size)
    missing, unexpected = tl.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith(("IGNORE", "mask")) for k in missing), (missing, unexpected)
    return tl.eval()


@pytest.fixture(scope="module")
def gpt2_pair():
    import transformers as tf

    torch.manual_seed(3)
    cfg = tf.GPT2Config(vocab_size=200, n_positions=64, n_embd=32, n_layer=3, n_head=4,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=1)
    hf = tf.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for _, p in hf.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.2)
    return from_module(hf, tf.ByT5Tokenizer(), name="test:gpt2-3l"), hooked_from_gpt2(hf)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("which", ["resid", "head"])
def test_maps_equal_transformer_lens(gpt2_pair, which):
    from transformer_lens import patching as tlp

    m, tl = gpt2_pair
    g = torch.Generator().manual_seed(0)
    n, T = 5, 9
    clean = torch.randint(3, 200, (n, T), generator=g)
    corrupt = clean.clone()
    corrupt[:, 4] = torch.randint(3, 200, (n,), generator=g)
    corrupt[0] = torch.randint(3, 200, (T,), generator=g)  # one pair differs everywhere
    a, b = torch.randint(3, 200, (n,), generator=g), torch.randint(3, 200, (n,), generator=g)
    metric = answer_logit_diff(a, b)
    with torch.no_grad():
        assert (tl(clean) - m.module(clean).logits).abs().max() < 1e-4
        _, cache = tl.run_with_cache(clean)
        fn = tlp.get_act_patch_resid_pre if which == "resid" else tlp.get_act_patch_attn_head_out_all_pos
        ours_fn = patch_resid_map if which == "resid" else patch_head_map
        for i in range(n):  # per pair: TransformerLens' scalar metric on one pair
            ref = fn(tl, corrupt[i:i + 1], _slice(cache, i),
                     lambda lg, i=i: metric(lg[:, -1], torch.tensor([i]))[0])
            ours = ours_fn(m, clean, corrupt, metric)
            assert (ours.values[i] - ref).abs().max() < 1e-4
        batch = fn(tl, corrupt, cache, lambda lg: metric(lg[:, -1], torch.arange(n)).mean())
        assert (ours.mean() - batch).abs().max() < 1e-4


def _slice(cache, i):
    from transformer_lens import ActivationCache

    return ActivationCache({k: v[i:i + 1] for k, v in cache.cache_dict.items()}, cache.model)


# --------------------------------------------------------------------------- errors and hooks


def test_pairs_of_different_lengths_are_an_error_naming_the_pair():
    m = tiny_model("gpt2")
    with pytest.raises(ShapeError, match=r"pair 1: the clean prompt is 3 tokens but the corrupt prompt is 4.*same token length"):
        patch_resid_map(m, CLEAN, ["hello WORLD, this is long", "hoo", "abcxef"], METRIC)


def test_empty_and_mismatched_inputs_are_errors():
    m = tiny_model("gpt2")
    with pytest.raises(DataError, match="empty"):
        patch_head_map(m, [], [], METRIC)
    with pytest.raises(DataError, match="`clean` has 3 prompts but `corrupt` has 2"):
        patch_resid_map(m, CLEAN, CORRUPT[:2], METRIC)
    with pytest.raises(DataError, match="single str"):
        patch_resid_map(m, "abc", "abd", METRIC)


def test_a_head_out_of_range_is_a_site_error_naming_the_range():
    m = tiny_model("gpt2")
    with pytest.raises(SiteError, match=r"`head` must be in 0\.\.11"):
        m.site("blocks.2.attn.head12")


def test_a_metric_of_the_wrong_shape_is_an_error():
    m = tiny_model("gpt2")
    with pytest.raises(ShapeError, match="one value per row"):
        patch_resid_map(m, CLEAN, CORRUPT, lambda logits, pairs: logits.mean())


def test_no_hooks_stay_attached_also_after_an_error():
    m = tiny_model("gpt2")
    before = hook_count(m)
    patch_resid_map(m, CLEAN, CORRUPT, METRIC)
    patch_head_map(m, CLEAN, CORRUPT, METRIC)
    patch_layer_map(m, CLEAN, CORRUPT, METRIC)
    assert hook_count(m) == before
    calls = {"n": 0}

    def exploding(logits, pairs):
        calls["n"] += 1
        if calls["n"] > 2:  # after the two plain runs, inside the replays
            raise RuntimeError("boom")
        return logits[:, 0]

    for fn in (patch_resid_map, patch_head_map, patch_layer_map):
        calls["n"] = 0
        with pytest.raises(RuntimeError, match="boom"):
            fn(m, CLEAN, CORRUPT, exploding)
        assert hook_count(m) == before

    def explode_in_replay(module, args, output):  # raises inside a replay, while patches are installed
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("boom in forward")

    handle = m.module.transformer.ln_f.register_forward_hook(explode_in_replay)
    try:
        for fn in (patch_resid_map, patch_head_map, patch_layer_map):
            calls["n"] = 0
            with pytest.raises(RuntimeError, match="boom in forward"):
                fn(m, CLEAN, CORRUPT, METRIC)
            assert hook_count(m) == before + 1
    finally:
        handle.remove()
    assert hook_count(m) == before
