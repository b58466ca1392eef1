"""Attribution patching (`harness.measures.attribution`) against activation patching.

    exactness        where the metric is linear in the site (a planted read-out: identity final
                     norm, the last block's MLP removed where attention is estimated) every
                     family's estimate equals its patching map within 1e-5, with and without
                     integrated gradients
    agreement        on tiny random GPT-2, Llama, Qwen2 (grouped-query attention), Gemma and Gemma-2 the
                     estimates correlate with the patching maps (Pearson r over cells, thresholds
                     well below what is measured), fields and shapes equal the patching map's;
                     integrated gradients of whole-site cells converge to the patching value
    AtP* fixes       a saturated attention head whose query/key cells AtP puts near 0 while
                     patching is large: the qk fix equals patching; a direct and an indirect path
                     whose gradients cancel: AtP near 0, GradDrop recovers the size of the effect
    hygiene          no .grad on any parameter, no weight changed, no hook left, grad mode
                     restored, under no_grad and inference_mode too
    bad input        unequal pairs, metrics without a gradient, a site cut from the graph, options
"""

from __future__ import annotations

import pytest
import torch

from harness.errors import DataError, InterventionError, ShapeError
from harness.measures.attribution import (attribute_head_map, attribute_layer_map, attribute_neuron_map,
                                          attribute_qkv_map, attribute_resid_map)
from harness.measures.patching import PatchMap, answer_logit_diff, answer_logprob, patch_head_map, patch_resid_map
from harness.measures.patching_outputs import patch_layer_map
from harness.measures.patching_units import SitePatchMap, patch_neuron_map, patch_qkv_map
from harness.models.load import from_module
from harness.models.loaded import LoadedModel

CLEAN = ["ab=1+2;", "xy", "no: 4-3", "hello w", "The cat sat"]
CORRUPT = ["ab=3+2;", "xz", "no: 7-3", "jello w", "The dog sat"]
A, B = 100, 101                          # the logit difference's tokens ('a', 'b' in the byte vocabulary)
METRIC = answer_logit_diff(A, B)

# family -> (patching map, attribution map, keyword arguments)
FAMILIES = {
    "resid": (patch_resid_map, attribute_resid_map, {}),
    "head": (patch_head_map, attribute_head_map, {}),
    "head_last": (patch_head_map, attribute_head_map, {"at": "last"}),
    "layer": (patch_layer_map, attribute_layer_map, {}),
    "layer_all": (patch_layer_map, attribute_layer_map, {"at": "all"}),
    "neuron": (patch_neuron_map, attribute_neuron_map, {}),
    "q": (patch_qkv_map, attribute_qkv_map, {"which": "q"}),
    "k": (patch_qkv_map, attribute_qkv_map, {"which": "k"}),
    "v": (patch_qkv_map, attribute_qkv_map, {"which": "v", "at": "last"}),
}


def effects(pm: PatchMap) -> torch.Tensor:
    return pm.values - pm.corrupt[:, None, None]


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.flatten(), y.flatten()
    ok = ~(x.isnan() | y.isnan())
    return float(torch.corrcoef(torch.stack([x[ok], y[ok]]))[0, 1])


def hook_count(m: LoadedModel) -> int:
    return sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks) for mod in m.module.modules())


# --------------------------------------------------------------------------- planted models


def gpt2(n_layer: int = 2, n_embd: int = 24, n_head: int = 4, seed: int = 0, std: float = 0.2, **config):
    import transformers as tf

    cfg = tf.GPT2Config(vocab_size=384, n_positions=64, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=1,
                        pad_token_id=0, **config)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        module = tf.GPT2LMHeadModel(cfg)
        with torch.no_grad():
            for name, p in module.named_parameters():
                if p.dim() == 2 and "ln" not in name:
                    p.normal_(0.0, std)
    return module.eval()


def load(module, name: str) -> LoadedModel:
    import transformers as tf

    return from_module(module, tf.ByT5Tokenizer(), name=name)


@pytest.fixture(scope="module")
def linear_readout():
    """GPT-2 whose final norm is the identity: the logits (so the logit difference) are linear in
    the last block's MLP output and neurons."""
    module = gpt2()
    module.transformer.ln_f = torch.nn.Identity()
    return load(module, "planted:linear-readout")


@pytest.fixture(scope="module")
def linear_attention():
    """As `linear_readout`, with the last block's MLP adding nothing: the metric is linear in the
    last block's attention output, heads and (at the last token) values."""
    module = gpt2()
    module.transformer.ln_f = torch.nn.Identity()
    with torch.no_grad():
        module.transformer.h[-1].mlp.c_proj.weight.zero_()
        module.transformer.h[-1].mlp.c_proj.bias.zero_()
    return load(module, "planted:linear-attention")


def last_block(pm: PatchMap) -> torch.Tensor:
    return pm.values[:, -1]


LINEAR_CASES = [   # (planted model, family, extra arguments): cells of the last block, linear in the metric
    ("linear_readout", "layer", dict(points=("mlp_out",))),
    ("linear_readout", "neuron", dict(layers=[2])),
    ("linear_attention", "layer", dict(points=("attn_out",))),
    ("linear_attention", "head_last", {}),
    ("linear_attention", "v", {}),
]


@pytest.mark.parametrize("planted,family,extra", LINEAR_CASES, ids=[f"{p}-{f}" for p, f, _ in LINEAR_CASES])
@pytest.mark.parametrize("ig_steps", [None, 3])
def test_the_estimate_equals_patching_where_the_metric_is_linear_in_the_site(planted, family, extra, ig_steps,
                                                                            request):
    m = request.getfixturevalue(planted)
    patch, attribute, kw = FAMILIES[family]
    want = patch(m, CLEAN, CORRUPT, METRIC, **kw, **extra)
    got = attribute(m, CLEAN, CORRUPT, METRIC, ig_steps=ig_steps, **kw, **extra)
    assert effects(want)[:, -1].abs().max() > 0.1          # the cells do something
    err = (last_block(got) - last_block(want)).abs().max()
    assert err < 1e-5, f"{family} on {planted}: max |estimate - patching| {err:.3g} in the linear block"


# --------------------------------------------------------------------------- agreement


AGREEMENT = {   # (arch, family) -> the least Pearson r over cells; measured (5 pairs) in the comments
    ("gpt2", "head"): 0.9, ("gpt2", "layer_all"): 0.9, ("gpt2", "neuron"): 0.95, ("gpt2", "v"): 0.9,  # .98 .97 1.0 .97
    ("gpt2", "resid"): 0.6,                                                                     # .81
    ("llama", "head"): 0.6, ("llama", "neuron"): 0.75, ("llama", "k"): 0.6,                      # .76 .89 .81
    ("qwen2", "head"): 0.7, ("qwen2", "neuron"): 0.9, ("qwen2", "resid"): 0.5,                   # .85 .98 .69
    ("gemma2", "head"): 0.7, ("gemma2", "neuron"): 0.8, ("gemma2", "k"): 0.6,                    # .85 .92 .81
    ("gemma", "head"): 0.8, ("gemma", "neuron"): 0.85, ("gemma", "q"): 0.45,                    # .92 .96 .59
}


@pytest.mark.parametrize("arch,family", sorted(AGREEMENT))
def test_estimates_agree_with_patching_on_tiny_random_models(arch, family):
    from tests._support.architectures import loaded

    m = loaded(arch, "eager")
    patch, attribute, kw = FAMILIES[family]
    want = patch(m, CLEAN, CORRUPT, METRIC, **kw)
    got = attribute(m, CLEAN, CORRUPT, METRIC, batch_size=2, **kw)    # three batches
    assert type(got) is type(want) and got.values.shape == want.values.shape and got.kind == want.kind
    assert torch.equal(got.values.isnan(), want.values.isnan())
    assert torch.allclose(got.clean, want.clean, atol=1e-5) and torch.allclose(got.corrupt, want.corrupt, atol=1e-5)
    assert torch.equal(got.lengths, want.lengths) and got.fingerprint == want.fingerprint
    if isinstance(want, SitePatchMap):
        assert (got.point, got.block_layers, got.columns, got.column_kind, got.at) == \
            (want.point, want.block_layers, want.columns, want.column_kind, want.at)
    r = pearson(effects(got), effects(want))
    assert r > AGREEMENT[arch, family], f"{arch} {family}: Pearson r {r:.3f} between estimate and patching"


@pytest.mark.parametrize("arch", ["gpt2", "qwen2"])
def test_integrated_gradients_of_whole_site_cells_converge_to_patching(arch):
    from tests._support.architectures import loaded

    m = loaded(arch, "eager")
    want = patch_layer_map(m, CLEAN, CORRUPT, METRIC, at="all")
    errors = {k: float((attribute_layer_map(m, CLEAN, CORRUPT, METRIC, at="all", ig_steps=k).values
                        - want.values).abs().max()) for k in (None, 2, 16)}
    assert errors[16] < errors[2] < errors[None]
    assert errors[16] < 0.02 * float(effects(want).abs().max()), errors


def test_a_subset_of_layers_and_units_is_the_same_cells_of_the_whole_map():
    from tests._support.architectures import loaded

    m = loaded("llama", "eager")
    whole = attribute_neuron_map(m, CLEAN, CORRUPT, METRIC)
    part = attribute_neuron_map(m, CLEAN, CORRUPT, METRIC, layers=[2], units=[5, 1])
    assert part.values.shape == (5, 1, 2) and part.columns == (5, 1)
    assert torch.allclose(part.values, whole.values[:, 1:2][:, :, [5, 1]], atol=1e-6)


def test_a_logprob_metric_with_per_pair_targets():
    from tests._support.architectures import loaded

    m = loaded("gpt2", "eager")
    metric = answer_logprob([100, 101, 102, 103, 104])
    want, got = patch_head_map(m, CLEAN, CORRUPT, metric), attribute_head_map(m, CLEAN, CORRUPT, metric)
    assert pearson(effects(got), effects(want)) > 0.8


# --------------------------------------------------------------------------- AtP*: the qk fix


X, TOKEN_A, TOKEN_B = 60, 50, 51                                   # prompts [X, A] (clean) and [X, B]
E_X, E_A, E_B, R = (torch.eye(8)[i] - torch.eye(8)[i + 1] for i in (0, 2, 4, 6))   # mean-zero, orthogonal


@pytest.fixture(scope="module")
def saturated():
    """One GPT-2 block (identity final norm, no MLP) with two saturated heads (scores 20 apart:
    softmax weights e^-20 off the chosen key). The last token's query in head 0 and its key in head 1
    decide whether the head reads token X (value +1) or itself (value -1) into the logit
    difference: the corrupt prompt [X, B] gives +1 + 1; the clean token A moves head 0's query
    (to its own key) and head 1's key (to twice the match of X's), so patching either changes the
    metric by -2 while the gradient at the saturated softmax is ~0."""
    module = gpt2(n_layer=1, n_embd=8, n_head=2, std=0.0, tie_word_embeddings=False)
    t = module.transformer
    t.ln_f = torch.nn.Identity()
    e_x, e_a, e_b, r = (v / 2 ** 0.5 for v in (E_X, E_A, E_B, R))      # unit: LayerNorm(e) = sqrt(8) e
    kappa = 40 ** 0.5 / 8 ** 0.5                                      # q.k / sqrt(d_head) = 20 for a match
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
        t.h[0].ln_1.weight.fill_(1.0)
        t.h[0].ln_2.weight.fill_(1.0)
        t.wte.weight[X], t.wte.weight[TOKEN_A], t.wte.weight[TOKEN_B] = e_x, e_a, e_b
        w = t.h[0].attn.c_attn.weight                                # Conv1D [in, q | k | v], head h at 4h
        w[:, 1], w[:, 0] = kappa * e_a, kappa * e_b                  # head 0: q(A) = f1, q(B) = f0
        w[:, 8 + 0], w[:, 8 + 1] = kappa * e_x, kappa * (e_a + e_b)  # k(X) = f0, k(A) = k(B) = f1
        w[:, 4] = kappa * (e_x + e_a + e_b)                          # head 1: one query f0 for every token
        w[:, 12] = kappa * (e_x + 2 * e_a)                           # k(X) = f0, k(A) = 2 f0, k(B) = 0
        for h in (0, 1):                                             # v(X) = +1, v(A) = v(B) = -1 on dim 2
            w[:, 16 + 4 * h + 2] = (e_x - e_a - e_b) / 8 ** 0.5
            t.h[0].attn.c_proj.weight[4 * h + 2] = r                 # ... written along r
        module.lm_head.weight[A] = r
    return load(module, "planted:saturated")


@pytest.mark.parametrize("which,head", [("q", 0), ("k", 1)])
def test_the_qk_fix_repairs_attribution_through_a_saturated_softmax(saturated, which, head):
    m = saturated
    clean, corrupt = [[X, TOKEN_A]], [[X, TOKEN_B]]
    want = effects(patch_qkv_map(m, clean, corrupt, METRIC, which=which))[0, 0]
    atp = effects(attribute_qkv_map(m, clean, corrupt, METRIC, which=which))[0, 0]
    fixed = effects(attribute_qkv_map(m, clean, corrupt, METRIC, which=which, qk_fix=True))[0, 0]
    assert abs(float(want[head]) + 2.0) < 1e-3 and abs(float(want[1 - head])) < 1e-3
    assert atp.abs().max() < 1e-3, f"AtP through the saturated softmax: {atp.tolist()}"
    assert (fixed - want).abs().max() < 1e-4                 # the metric is linear in the pattern: exact


def test_the_qk_fix_under_grouped_query_attention_sums_a_key_head_over_its_query_heads():
    from tests._support.architectures import loaded

    m = loaded("qwen2", "eager")                                  # 4 query heads, 2 key/value heads
    want = patch_qkv_map(m, CLEAN, CORRUPT, METRIC, which="k")
    got = attribute_qkv_map(m, CLEAN, CORRUPT, METRIC, which="k", qk_fix=True)
    assert got.values.shape == want.values.shape == (5, 2, 2) and got.column_kind == "key/value head"
    assert pearson(effects(got), effects(want)) > 0.85                                    # measured .92
    plain = attribute_qkv_map(m, CLEAN, CORRUPT, METRIC, which="k")
    assert pearson(effects(got), effects(want)) > pearson(effects(plain), effects(want))  # .92 vs .71


def test_the_qk_fix_changes_nothing_for_values():
    from tests._support.architectures import loaded

    m = loaded("llama", "eager")
    a = attribute_qkv_map(m, CLEAN, CORRUPT, METRIC, which="v")
    b = attribute_qkv_map(m, CLEAN, CORRUPT, METRIC, which="v", qk_fix=True)
    assert torch.equal(a.values, b.values)


# --------------------------------------------------------------------------- AtP*: GradDrop


U = torch.tensor([1.0, -1.0, 0, 0, 0, 0, 0, 0]) / 2 ** 0.5      # mean-zero unit directions
V = torch.tensor([0, 0, 1.0, -1.0, 0, 0, 0, 0]) / 2 ** 0.5
TOKEN_CLEAN, TOKEN_CORRUPT = 50, 51


@pytest.fixture(scope="module")
def cancelling():
    """Two GPT-2 blocks, attention off, built so that block 1's MLP output s*V (s = 5 clean, 0
    corrupt) reaches the logit difference directly (+s) and through block 2's MLP, which reads it
    through a LayerNorm (so as s / sqrt(1 + s^2)) and subtracts it: at s = 0 the two gradients
    cancel exactly (AtP estimates 0) while patching changes the metric by 5 - 5/sqrt(26) = 4.02."""
    module = gpt2(n_layer=2, n_embd=8, n_head=2, std=0.0, tie_word_embeddings=False, activation_function="gelu_new")
    t = module.transformer
    t.ln_f = torch.nn.Identity()
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
        for block in t.h:
            block.ln_1.weight.fill_(1.0)
            block.ln_2.weight.fill_(1.0)
        t.wte.weight[TOKEN_CLEAN], t.wte.weight[TOKEN_CORRUPT] = U, -U
        root8 = 8 ** 0.5
        fc1, fc2 = t.h[0].mlp.c_fc, t.h[1].mlp.c_fc                       # Conv1D: weight [in, out]
        fc1.weight[:, 0], fc1.bias[0] = U * 2.5 / root8, 2.5             # LN(+-U) = +-sqrt(8) U: pre = 5 or 0
        t.h[0].mlp.c_proj.weight[0] = V
        fc2.weight[:, 0], fc2.bias[0] = V / root8, 10.0                  # pre = s / sqrt(1 + s^2) + 10: gelu ~ identity
        t.h[1].mlp.c_proj.weight[0] = -V
        module.lm_head.weight[A] = V
    return load(module, "planted:cancelling")


def test_grad_drop_recovers_an_effect_whose_direct_and_indirect_gradients_cancel(cancelling):
    m = cancelling
    clean, corrupt = [[TOKEN_CLEAN]], [[TOKEN_CORRUPT]]
    want = effects(patch_layer_map(m, clean, corrupt, METRIC))[0, 0, 1]        # block 1's mlp_out
    atp = effects(attribute_layer_map(m, clean, corrupt, METRIC))[0, 0, 1]
    gd = effects(attribute_layer_map(m, clean, corrupt, METRIC, grad_drop=True))[0, 0, 1]
    assert abs(float(want) - (5 - 5 / 26 ** 0.5)) < 1e-3
    assert abs(float(atp)) < 0.01 * abs(float(want))                  # the cancellation: AtP misses it
    assert abs(float(gd) - 5.0) < 1e-3                                # the direct path alone: 5 (|patch| 4.02)


def test_grad_drop_of_a_last_block_node_is_the_absolute_atp_estimate():
    from tests._support.architectures import loaded

    m = loaded("gpt2", "eager")                                   # 2 blocks: e_1 = AtP, e_2 = 0
    atp = effects(attribute_head_map(m, CLEAN, CORRUPT, METRIC))
    gd = effects(attribute_head_map(m, CLEAN, CORRUPT, METRIC, grad_drop=True))
    assert torch.allclose(gd[:, -1], atp[:, -1].abs(), atol=1e-6)
    assert (gd >= 0).all()


# --------------------------------------------------------------------------- hygiene


def test_no_gradient_weight_change_or_hook_is_left_and_the_grad_mode_is_restored():
    from tests._support.architectures import loaded

    m = loaded("qwen2", "sdpa")
    before = {k: v.clone() for k, v in m.module.state_dict().items()}
    hooks, impl = hook_count(m), m.module.config._attn_implementation
    calls = [lambda: attribute_resid_map(m, CLEAN, CORRUPT, METRIC, grad_drop=True),
             lambda: attribute_head_map(m, CLEAN, CORRUPT, METRIC, ig_steps=2),
             lambda: attribute_layer_map(m, CLEAN, CORRUPT, METRIC),
             lambda: attribute_neuron_map(m, CLEAN, CORRUPT, METRIC, at="all"),
             lambda: attribute_qkv_map(m, CLEAN, CORRUPT, METRIC, which="k", qk_fix=True, grad_drop=True)]
    for call in calls:
        for mode in (torch.no_grad, torch.inference_mode, torch.enable_grad):
            with mode():
                call()
                assert torch.is_grad_enabled() == (mode is torch.enable_grad)
            assert all(p.grad is None for p in m.module.parameters())
            assert hook_count(m) == hooks and m.module.config._attn_implementation == impl
    after = m.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_values_do_not_depend_on_the_batch_size():
    from tests._support.architectures import loaded

    m = loaded("gemma2", "eager")
    one = attribute_resid_map(m, CLEAN, CORRUPT, METRIC, batch_size=1)
    all_ = attribute_resid_map(m, CLEAN, CORRUPT, METRIC, batch_size=64)
    assert torch.allclose(one.values, all_.values, atol=1e-5, equal_nan=True)


# --------------------------------------------------------------------------- bad input


def test_pairs_of_unequal_length_are_an_error_naming_the_pair():
    from tests._support.architectures import loaded

    with pytest.raises(ShapeError, match="pair 1: the clean prompt is 3 tokens but the corrupt prompt is 4"):
        attribute_resid_map(loaded("gpt2", "eager"), ["ab", "xy"], ["ab", "xyz"], METRIC)


@pytest.mark.parametrize("metric", [
    lambda logits, pairs: (logits.argmax(-1) == A).float(),           # argmax: no gradient
    lambda logits, pairs: (logits[:, A] - logits[:, B]).detach(),     # detached
    lambda logits, pairs: logits.argmax(-1),                          # integers
])
def test_a_metric_without_a_gradient_from_the_logits_is_an_error_saying_so(metric):
    from tests._support.architectures import loaded

    with pytest.raises(DataError, match="carry no gradient from the logits"):
        attribute_head_map(loaded("gpt2", "eager"), CLEAN, CORRUPT, metric)


def test_a_metric_whose_gradient_is_zero_everywhere_is_an_error_saying_so():
    from tests._support.architectures import loaded

    with pytest.raises(DataError, match="zero gradient with respect to the logits"):
        attribute_layer_map(loaded("gpt2", "eager"), CLEAN, CORRUPT, lambda logits, pairs: torch.round(logits[:, A]))


def test_a_site_cut_from_the_graph_is_an_error_naming_it():
    from tests._support.architectures import loaded

    m = loaded("gpt2", "eager")
    block = m.module.get_submodule("transformer.h.0")
    handle = block.register_forward_hook(lambda mod, args, out: (out[0].detach(), *out[1:])
                                         if isinstance(out, tuple) else out.detach())
    try:
        with pytest.raises(InterventionError, match=r"blocks\.1\.resid_pre.*not differentiable"):
            attribute_resid_map(m, CLEAN, CORRUPT, METRIC)
    finally:
        handle.remove()


@pytest.mark.parametrize("kw,match", [
    (dict(ig_steps=0), "`ig_steps` must be None"),
    (dict(ig_steps=2.5), "`ig_steps` must be None"),
    (dict(grad_drop=1), "`grad_drop` must be True or False"),
    (dict(ig_steps=4, grad_drop=True), "cannot be combined"),
    (dict(at="first"), "`at` must be 'all'"),
    (dict(batch_size=0), "`batch_size` must be a positive integer"),
])
def test_bad_options_are_clear_errors(kw, match):
    from tests._support.architectures import loaded

    with pytest.raises(DataError, match=match):
        attribute_head_map(loaded("gpt2", "eager"), CLEAN, CORRUPT, METRIC, **kw)


def test_qk_fix_with_integrated_gradients_is_an_error():
    from tests._support.architectures import loaded

    with pytest.raises(DataError, match="cannot be combined"):
        attribute_qkv_map(loaded("gpt2", "eager"), CLEAN, CORRUPT, METRIC, which="q", qk_fix=True, ig_steps=2)
