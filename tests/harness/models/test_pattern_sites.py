"""One head's attention scores and pattern, read and edited through its `AttentionPoint`, against
the model's own eager attention and an oracle written with raw torch hooks on the Hugging Face
modules: tiny GPT-2 (fused q/k/v) and Llama (grouped-query attention) built from configs."""

from __future__ import annotations

import functools

import pytest
import torch

from harness.errors import InterventionError, SiteError
from harness.models.pattern import HARNESS_ATTENTION, attention_point

H, D, DH = 4, 32, 8
IDS = torch.tensor([[5, 9, 12, 40, 7, 3], [11, 2, 30, 0, 0, 0]])
OTHER = torch.tensor([[6, 9, 13, 41, 2, 3], [10, 4, 31, 0, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])


@functools.lru_cache(maxsize=None)
def model(arch: str) -> torch.nn.Module:
    import transformers as tf

    common = dict(vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=1)
    if arch == "gpt2":
        config = tf.GPT2Config(n_embd=D, n_layer=2, n_head=H, n_positions=32, resid_pdrop=0.0, embd_pdrop=0.0,
                               attn_pdrop=0.0, **common)
    elif arch == "llama":
        config = tf.LlamaConfig(hidden_size=D, intermediate_size=48, num_hidden_layers=2, num_attention_heads=H,
                                num_key_value_heads=2, max_position_embeddings=32, **common)
    elif arch == "gemma2":   # soft-capping at 1.0, so that it changes the scores
        config = tf.Gemma2Config(hidden_size=D, intermediate_size=48, num_hidden_layers=2, num_attention_heads=H,
                                 num_key_value_heads=2, head_dim=DH, max_position_embeddings=32,
                                 attn_logit_softcapping=1.0, sliding_window=4, **common)
    else:
        config = tf.BloomConfig(hidden_size=D, n_layer=2, n_head=H, **common)
    config._attn_implementation = "eager" if arch in ("bloom", "gemma2") else "sdpa"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = tf.AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        with torch.no_grad():  # weights large enough that the pattern is far from uniform
            for name, p in module.named_parameters():
                if p.dim() >= 2 and "norm" not in name:
                    p.normal_(0.0, 0.2)
    return module


def attention(arch: str, layer: int) -> torch.nn.Module:
    m = model(arch)
    return m.transformer.h[layer - 1].attn if arch == "gpt2" else m.model.layers[layer - 1].self_attn


def point(arch: str, layer: int, which: str, head: int):
    return attention_point(model(arch), attention(arch, layer), which, head,
                           f"blocks.{layer}.attn.{which}.head{head}")


def run(arch: str, ids: torch.Tensor, hooks: dict) -> torch.Tensor:
    """Logits with forward hooks {(layer, which, head): fn} on the points, all removed after."""
    handles = []
    try:
        for (layer, which, head), fn in hooks.items():
            handles.append(point(arch, layer, which, head).register_forward_hook(fn))
        with torch.no_grad():
            return model(arch)(input_ids=ids, attention_mask=MASK).logits
    finally:
        for h in reversed(handles):
            h.remove()


def record(arch: str, ids: torch.Tensor, keys: list) -> tuple[dict, torch.Tensor]:
    got: dict = {}
    hooks = {k: (lambda k: lambda mod, args, out: got.__setitem__(k, out.clone()))(k) for k in keys}
    logits = run(arch, ids, hooks)
    return got, logits


def own_eager(arch: str, ids: torch.Tensor):
    m = model(arch)
    original = m.config._attn_implementation
    m.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            return m(input_ids=ids, attention_mask=MASK, output_attentions=True)
    finally:
        m.set_attn_implementation(original)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma2"])
def test_recorded_patterns_equal_the_models_own_eager_attentions(arch):
    keys = [(layer, "pattern", h) for layer in (1, 2) for h in range(H)]
    keys += [(layer, "scores", h) for layer in (1, 2) for h in range(H)]
    got, logits = record(arch, IDS, keys)
    ref = own_eager(arch, IDS)
    for layer in (1, 2):
        for h in range(H):
            pattern = got[(layer, "pattern", h)]
            assert pattern.shape == (2, 6, 6)
            torch.testing.assert_close(pattern, ref.attentions[layer - 1][:, h], atol=1e-6, rtol=0)
            torch.testing.assert_close(torch.softmax(got[(layer, "scores", h)], -1), pattern, atol=1e-6, rtol=0)
            if arch == "gemma2":   # soft-capped to (-1, 1) where the mask allows
                allowed = ref.attentions[layer - 1][:, h] > 0
                assert got[(layer, "scores", h)][allowed].abs().max() < 1
    torch.testing.assert_close(logits, ref.logits, atol=1e-5, rtol=0)
    assert not (got[(2, "pattern", 0)] - got[(2, "pattern", 1)]).abs().max() < 1e-3  # heads differ


def _value_and_head_in(arch: str, layer: int):
    """The oracle's modules: where head h's values are (a function of the module output) and
    the module whose input holds the heads' outputs side by side."""
    m = model(arch)
    if arch == "gpt2":
        block = m.transformer.h[layer - 1].attn
        return block.c_attn, (lambda out, h: out[..., 2 * D + h * DH: 2 * D + (h + 1) * DH]), block.c_proj
    block = m.model.layers[layer - 1].self_attn
    r = H // m.config.num_key_value_heads
    return block.v_proj, (lambda out, h: out[..., (h // r) * DH: (h // r + 1) * DH]), block.o_proj


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("head", [1, 2])
def test_patching_a_heads_pattern_changes_its_output_as_the_oracle_recomputes_it(arch, head):
    layer = 2
    source, _ = record(arch, OTHER, [(layer, "pattern", head)])
    patched = source[(layer, "pattern", head)]
    got = run(arch, IDS, {(layer, "pattern", head): lambda mod, args, out: patched})

    v_module, take_v, head_in = _value_and_head_in(arch, layer)
    seen: dict = {}

    def keep_v(mod, args, out):
        seen["v"] = take_v(out, head).detach()

    def replace(mod, args):
        x = args[0].clone()
        x[..., head * DH:(head + 1) * DH] = torch.matmul(patched, seen["v"])   # [b, q, k] @ [b, k, d]
        return (x,) + tuple(args[1:])

    handles = [v_module.register_forward_hook(keep_v), head_in.register_forward_pre_hook(replace)]
    try:
        with torch.no_grad():
            want = model(arch)(input_ids=IDS, attention_mask=MASK).logits
    finally:
        for h in reversed(handles):
            h.remove()
    clean = run(arch, IDS, {})
    assert (want - clean).abs().max() > 1e-3  # the patch matters
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_an_edit_of_the_scores_is_renormalised_by_the_softmax():
    bump = torch.zeros(2, 6, 6)
    bump[..., 0] = 3.0
    got, _ = record("llama", IDS, [(1, "pattern", 0)])
    seen: dict = {}
    hooks = {(1, "scores", 0): lambda mod, args, out: out + bump,
             (1, "pattern", 0): lambda mod, args, out: seen.__setitem__("p", out.clone())}
    run("llama", IDS, hooks)
    want = got[(1, "pattern", 0)] * torch.exp(bump)
    torch.testing.assert_close(seen["p"], want / want.sum(-1, keepdim=True), atol=1e-6, rtol=0)


def test_a_pattern_edit_whose_rows_do_not_sum_to_1_is_an_error_naming_the_site_and_row():
    with pytest.raises(InterventionError, match=r"blocks\.2\.attn\.pattern\.head3.*sums to 1\.5"):
        run("gpt2", IDS, {(2, "pattern", 3): lambda mod, args, out: out * 1.5})
    uniform = MASK[:, None, :].float().expand(2, 6, 6).tril()
    uniform = uniform / uniform.sum(-1, keepdim=True)   # mass on a masked (padded) key in row 1: error
    leaky = torch.full((2, 6, 6), 1 / 6)
    with pytest.raises(InterventionError, match="masked key"):
        run("gpt2", IDS, {(2, "pattern", 3): lambda mod, args, out: leaky})
    run("gpt2", IDS, {(2, "pattern", 3): lambda mod, args, out: uniform})   # a distribution: accepted


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_the_models_implementation_and_modules_are_back_after_the_hooks_also_on_error(arch):
    m = model(arch)
    before = (m.config._attn_implementation, [n for n, _ in m.named_modules()],
              sum(len(x._forward_hooks) + len(x._forward_pre_hooks) for x in m.modules()))
    p, q = point(arch, 1, "pattern", 0), point(arch, 2, "scores", 1)
    first = p.register_forward_hook(lambda mod, args, out: None)
    second = q.register_forward_hook(lambda mod, args, out: None)
    assert m.config._attn_implementation == HARNESS_ATTENTION
    first.remove()
    assert m.config._attn_implementation == HARNESS_ATTENTION   # one hook still attached
    second.remove()
    second.remove()   # removing twice is harmless
    with pytest.raises(RuntimeError, match="boom"):
        run(arch, IDS, {(1, "pattern", 2): lambda mod, args, out: (_ for _ in ()).throw(RuntimeError("boom"))})
    after = (m.config._attn_implementation, [n for n, _ in m.named_modules()],
             sum(len(x._forward_hooks) + len(x._forward_pre_hooks) for x in m.modules()))
    assert after == before and before[0] == "sdpa"
    assert not p.hooked() and not q.hooked()


def test_an_architecture_whose_attention_bypasses_the_interface_is_an_error_saying_why():
    m = model("bloom")
    with pytest.raises(SiteError, match=r"blocks\.1\.attn\.pattern\.head0.*BloomForCausalLM.*attention interface"):
        attention_point(m, m.transformer.h[0].self_attention, "pattern", 0, "blocks.1.attn.pattern.head0")


def test_attention_with_sinks_is_an_error_naming_them():
    from harness.models import pattern

    q = torch.zeros(1, H, 3, DH)
    with pytest.raises(SiteError, match=r"\['s_aux'\].*cannot be hooked"):
        pattern._harness_eager(attention("llama", 1), q, q, q, None, scaling=1.0, s_aux=torch.zeros(H))


# --------------------------------------------------------------------------- as sites, through intervene


@functools.lru_cache(maxsize=None)
def loaded(arch: str):
    from harness.models.architectures import architectures
    from harness.models.loaded import LoadedModel
    from harness.models.site_table import site_table

    module = model(arch)
    layout = architectures()[arch]
    return LoadedModel(name=f"tiny:{arch}", spec=f"tiny:{arch}", module=module, tokenizer=None, layout=layout,
                       sites=site_table(module, layout, f"tiny:{arch}"), fingerprint=arch)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_the_pattern_site_records_and_patches_through_intervene(arch):
    """``blocks.2.attn.pattern.head1`` through `intervene`: Record gives the model's own eager
    attention of that head; Patch from another run gives the logits of the raw-hook patch (pinned
    against the oracle above); the model's own implementation is back afterwards."""
    from harness.interventions import Patch, Record, intervene

    m = loaded(arch)
    implementation = m.module.config._attn_implementation
    site = m.site("blocks.2.attn.pattern.head1")
    with torch.no_grad(), intervene(m, {site: Record()}, masks={"blocks": MASK}) as rec:
        m.module(input_ids=OTHER, attention_mask=MASK)
    source = rec.recorded[site]
    assert source.shape == (2, 6, 6)
    torch.testing.assert_close(source, own_eager(arch, OTHER).attentions[1][:, 1], atol=1e-6, rtol=0)
    with torch.no_grad(), intervene(m, {site: Patch(source)}, masks={"blocks": MASK}):
        got = m.module(input_ids=IDS, attention_mask=MASK).logits
    want = run(arch, IDS, {(2, "pattern", 1): lambda mod, args, out: source})
    real = MASK.bool()   # Patch edits real query positions; the raw hook replaced the padded rows too
    torch.testing.assert_close(got[real], want[real], atol=1e-6, rtol=0)
    assert (got[real] - run(arch, IDS, {})[real]).abs().max() > 1e-3   # the patch matters
    assert m.module.config._attn_implementation == implementation


def test_the_site_table_offers_patterns_where_the_attention_interface_runs_and_says_why_not_elsewhere():
    m = loaded("llama")
    assert [str(s) for s in m.sites.all_sites("attn.scores")][:2] == ["blocks.1.attn.scores.head0",
                                                                       "blocks.1.attn.scores.head1"]
    assert len(m.sites.all_sites("attn.pattern")) == 2 * H
    with pytest.raises(SiteError, match=r"has no fixed width: its last dimension is the key count"):
        m.width("blocks.1.attn.pattern.head0")
    with pytest.raises(SiteError, match=r"head"):
        m.site("blocks.1.attn.pattern")            # a head is required
    with pytest.raises(SiteError, match=r"`head` must be in 0..3"):
        m.site("blocks.1.attn.pattern.head4")
    bloom = loaded("bloom")
    with pytest.raises(SiteError, match=r"attn.pattern"):
        bloom.site("blocks.1.attn.pattern.head0")
