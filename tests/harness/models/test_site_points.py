"""The finer sites (resid_mid, MLP neurons, per-head queries/keys/values, the final norm's input and
scale) against an oracle written with raw torch hooks on the Hugging Face modules.

Six tiny random models cover the ways these activations sit in a module's tensor: GPT-2 (q, k, v
in thirds of one fused Conv1D, ungated MLP), Llama and Qwen2 (separate projections, grouped-query
attention, gated MLP, RMSNorm; Qwen2 with q/k/v biases), Phi-3 (q, k, v in one projection under
grouped-query attention, gate and up projections in one module), OPT (an MLP run on ``[batch * pos, d]``),
GPT-NeoX (per-head fused q/k/v, parallel residual) and Falcon (grouped fused q/k/v, parallel). The
oracle reads each activation off the module named here, with the head and unit layout of the
Hugging Face modelling code written out per architecture, and edits it in place of the harness.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch

from harness.errors import InterventionError, SiteError
from harness.interventions import Ablate, Add, Patch, Positions, Record, check_acted, intervene
from harness.models.architectures import architectures
from harness.models.loaded import LoadedModel, pad_rows
from harness.models.site_table import site_table
from harness.models.sites import Site

ARCHS = ("gpt2", "llama", "qwen2", "opt", "gpt_neox", "falcon", "phi3")
H, D, DH = 4, 32, 8          # heads, width, head width of every model here
ROWS = [[5, 9, 12, 40, 7, 3], [11, 2, 30], [8, 8, 21, 33, 17]]
OTHER = [[6, 9, 13, 41, 2, 3], [10, 4, 31], [9, 8, 20, 35, 16]]   # the same lengths: a patch source
ATOL = 1e-5

def _config(arch: str):
    import transformers as tf

    common = dict(vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=1)
    if arch == "gpt2":
        return tf.GPT2Config(n_embd=D, n_layer=2, n_head=H, n_positions=32, resid_pdrop=0.0, embd_pdrop=0.0,
                             attn_pdrop=0.0, **common)
    if arch == "llama":
        return tf.LlamaConfig(hidden_size=D, intermediate_size=48, num_hidden_layers=2, num_attention_heads=H,
                              num_key_value_heads=2, max_position_embeddings=32, **common)
    if arch == "qwen2":
        return tf.Qwen2Config(hidden_size=D, intermediate_size=48, num_hidden_layers=2, num_attention_heads=H,
                              num_key_value_heads=2, head_dim=DH, max_position_embeddings=32, **common)
    if arch == "phi3":
        return tf.Phi3Config(hidden_size=D, intermediate_size=48, num_hidden_layers=2, num_attention_heads=H,
                             num_key_value_heads=2, max_position_embeddings=32, sliding_window=None, **common)
    if arch == "opt":
        return tf.OPTConfig(hidden_size=D, ffn_dim=48, num_hidden_layers=2, num_attention_heads=H,
                            word_embed_proj_dim=D, max_position_embeddings=32, dropout=0.0,
                            attention_dropout=0.0, activation_dropout=0.0, **common)
    if arch == "gpt_neox":
        return tf.GPTNeoXConfig(hidden_size=D, intermediate_size=48, num_hidden_layers=2, num_attention_heads=H,
                                max_position_embeddings=32, use_parallel_residual=True, rotary_pct=0.5, **common)
    return tf.FalconConfig(hidden_size=D, num_hidden_layers=2, num_attention_heads=H, new_decoder_architecture=True,
                           num_kv_heads=2, parallel_attn=True, bias=False, ffn_hidden_size=48,
                           max_position_embeddings=32, alibi=False, **common)


@functools.lru_cache(maxsize=None)
def model(arch: str) -> LoadedModel:
    from transformers import AutoModelForCausalLM

    config = _config(arch)
    config._attn_implementation = "eager"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        with torch.no_grad():  # weights large enough that an edit shows in the logits
            for name, p in module.named_parameters():
                if p.dim() >= 2 and "norm" not in name:
                    p.normal_(0.0, 0.2)
    layout = architectures()[arch]
    name = f"tiny:{arch}"
    return LoadedModel(name=name, spec=name, module=module, tokenizer=None, layout=layout,
                       sites=site_table(module, layout, name), fingerprint=arch)


# --------------------------------------------------------------------------- the oracle


@dataclass(frozen=True)
class Where:
    """Where the oracle finds a site: the module (path from the root), its input or output, and
    `take(t, batch, pos)`, a *view* of the site's activation ``[batch, pos, w]`` in that tensor."""

    path: str
    kind: str
    take: Callable[[torch.Tensor, int, int], torch.Tensor]


_BLOCKS = {"gpt2": "transformer.h", "llama": "model.layers", "qwen2": "model.layers", "phi3": "model.layers",
           "opt": "model.decoder.layers", "gpt_neox": "gpt_neox.layers", "falcon": "transformer.h"}
_FINAL = {"gpt2": "transformer.ln_f", "llama": "model.norm", "qwen2": "model.norm", "phi3": "model.norm",
          "opt": "model.decoder.final_layer_norm", "gpt_neox": "gpt_neox.final_layer_norm", "falcon": "transformer.ln_f"}
_MLP = {  # point -> (block-relative path, kind, the first column of the site in that tensor)
    "gpt2": {"mlp_pre": ("mlp.c_fc", "output", 0), "mlp_post": ("mlp.c_proj", "input", 0)},
    "llama": {"mlp_pre": ("mlp.gate_proj", "output", 0), "mlp_pre_linear": ("mlp.up_proj", "output", 0),
              "mlp_post": ("mlp.down_proj", "input", 0)},
    # gate_up_proj(x).chunk(2, dim=-1): the gate, then the up projection
    "phi3": {"mlp_pre": ("mlp.gate_up_proj", "output", 0), "mlp_pre_linear": ("mlp.gate_up_proj", "output", 48),
             "mlp_post": ("mlp.down_proj", "input", 0)},
    "opt": {"mlp_pre": ("fc1", "output", 0), "mlp_post": ("fc2", "input", 0)},
    "gpt_neox": {"mlp_pre": ("mlp.dense_h_to_4h", "output", 0), "mlp_post": ("mlp.dense_4h_to_h", "input", 0)},
    "falcon": {"mlp_pre": ("mlp.dense_h_to_4h", "output", 0), "mlp_post": ("mlp.dense_4h_to_h", "input", 0)},
}
_MLP["qwen2"] = _MLP["llama"]
_RESID_MID = {"gpt2": "ln_2", "llama": "post_attention_layernorm", "qwen2": "post_attention_layernorm",
              "phi3": "post_attention_layernorm",
              "opt": "final_layer_norm"}


def _rows3(t: torch.Tensor, b: int, p: int) -> torch.Tensor:
    return t.view(b, p, t.shape[-1])  # OPT's MLP and norms see [batch * pos, d]


def _qkv_head(arch: str, which: str, h: int) -> tuple[str, Callable]:
    """(block-relative module path, view of head h's queries/keys/values) as the HF code splits them."""
    i = "qkv".index(which)
    if arch == "gpt2":  # c_attn(x).split(d, dim=2): [q | k | v], heads side by side in each
        return "attn.c_attn", lambda t, b, p: t[..., i * D + h * DH: i * D + (h + 1) * DH]
    if arch == "phi3":  # qkv[..., :H*d], then the key/value heads' keys, then their values
        base = (0, H * DH, (H + 2) * DH)[i]
        return "self_attn.qkv_proj", lambda t, b, p: t[..., base + h * DH: base + (h + 1) * DH]
    if arch == "gpt_neox":  # qkv.view(b, p, heads, 3 * head_size).chunk(3, -1)
        return "attention.query_key_value", lambda t, b, p: t.view(b, p, H, 3, DH)[:, :, h, i]
    if arch == "falcon":  # view(b, p, kv, heads // kv + 2, head_dim): queries of a group, then k, v
        r = H // 2

        def take(t, b, p):
            grouped = t.view(b, p, 2, r + 2, DH)
            return grouped[:, :, h // r, h % r] if which == "q" else grouped[:, :, h, r + i - 1]
        return "self_attention.query_key_value", take
    return f"self_attn.{which}_proj", lambda t, b, p: t[..., h * DH:(h + 1) * DH]


def where(arch: str, site: Site) -> Where:
    """The oracle's place of `site` (a site with one head, or a range of units, or neither)."""
    k = site.layer - 1
    block = f"{_BLOCKS[arch]}.{k}"
    if site.point in ("attn.q", "attn.k", "attn.v"):
        path, take = _qkv_head(arch, site.point[-1], site.head)
        return Where(f"{block}.{path}", "output", take)
    if site.point in _MLP[arch]:
        path, kind, first = _MLP[arch][site.point]
        lo, hi = (0, 4 * D if arch == "gpt2" else 48) if site.units is None else (site.units[0], site.units[-1] + 1)
        assert site.units is None or list(site.units) == list(range(lo, hi)), "the oracle takes ranges"
        lo, hi = lo + first, hi + first
        return Where(f"{block}.{path}", kind, lambda t, b, p: _rows3(t, b, p)[..., lo:hi])
    if site.point == "resid_mid":
        return Where(f"{block}.{_RESID_MID[arch]}", "input", _rows3)
    if site.point == "final_norm_in":
        return Where(_FINAL[arch], "input", _rows3)
    raise AssertionError(site)


def oracle_forward(arch: str, rows, edits: dict[Site, Callable] | None = None,
                   reads: tuple[Site, ...] = ()) -> tuple[dict[Site, torch.Tensor], torch.Tensor]:
    """One forward with raw hooks: `edits` maps a site to f(view, real) -> new values written into
    the view; `reads` are captured (after any edit at the same module). Returns (reads, logits)."""
    m = model(arch)
    ids, mask = pad_rows(rows, pad_id=0)
    b, p = ids.shape
    real = mask.bool()
    got: dict[Site, torch.Tensor] = {}
    handles = []

    def make(site: Site, w: Where, edit: Callable | None):
        def apply(t: torch.Tensor) -> torch.Tensor:
            if edit is not None:
                t = t.clone()
                view = w.take(t, b, p)
                view.copy_(edit(view.clone(), real))
            if site in reads:
                got[site] = w.take(t, b, p).detach().clone()
            return t

        module = m.module.get_submodule(w.path)
        if w.kind == "output":
            return module.register_forward_hook(
                lambda mod, args, out: (apply(out[0]),) + tuple(out[1:]) if isinstance(out, tuple) else apply(out))
        return module.register_forward_pre_hook(lambda mod, args: (apply(args[0]),) + tuple(args[1:]))

    plan = dict(edits or {})
    for site in reads:
        plan.setdefault(site, None)
    try:
        for site, edit in plan.items():
            handles.append(make(site, where(arch, site), edit))
        with torch.no_grad():
            logits = m.module(input_ids=ids, attention_mask=mask).logits
    finally:
        for handle in handles:
            handle.remove()
    return got, logits


def harness_forward(arch: str, rows, plan: dict) -> tuple[dict[Site, torch.Tensor], torch.Tensor]:
    m = model(arch)
    ids, mask = pad_rows(rows, pad_id=0)
    with torch.no_grad(), intervene(m, plan, masks={"blocks": mask}) as run:
        logits = m.module(input_ids=ids, attention_mask=mask).logits
    return run.recorded, logits


def offered(arch: str) -> list[Site]:
    """Every single-head q/k/v site, every MLP layer, a neuron range, resid_mid and the final norm's input."""
    m = model(arch)
    shape = m.sites.stack("blocks")
    out = [s for p in ("attn.q", "attn.k", "attn.v") for s in m.sites.all_sites(p)]
    for point in ("mlp_pre", "mlp_pre_linear", "mlp_post", "resid_mid"):
        if point in shape.points:
            out += m.sites.all_sites(point)
    out += [Site("blocks", 2, "mlp_post", units=(5, 6, 7)), Site("blocks", 1, "mlp_pre", units=(47,))]
    return out + [Site("blocks", 2, "final_norm_in")]


archs = pytest.mark.parametrize("arch", ARCHS)


# --------------------------------------------------------------------------- reading


@archs
def test_every_recorded_site_equals_the_module_activation_the_oracle_reads(arch):
    sites = tuple(offered(arch))
    recorded, _ = harness_forward(arch, ROWS, {s: Record() for s in sites})
    expected, _ = oracle_forward(arch, ROWS, reads=sites)
    ids, _ = pad_rows(ROWS, pad_id=0)
    for site in sites:
        assert recorded[site].shape == (*ids.shape, model(arch).width(site)), site
        assert torch.equal(recorded[site], expected[site]), site


@archs
def test_all_heads_of_q_k_v_are_the_heads_side_by_side(arch):
    m = model(arch)
    shape = m.sites.stack("blocks")
    sites = [Site("blocks", 2, p) for p in ("attn.q", "attn.k", "attn.v")]
    heads = [s for p in ("attn.q", "attn.k", "attn.v") for s in m.sites.all_sites(p) if s.layer == 2]
    recorded, _ = harness_forward(arch, ROWS, {s: Record() for s in sites + heads})
    for site in sites:
        parts = [recorded[Site("blocks", 2, site.point, head=h)] for h in range(shape.heads_of(site.point))]
        assert torch.equal(recorded[site], torch.cat(parts, -1))
        assert m.width(site) == shape.heads_of(site.point) * DH


@archs
def test_the_final_norm_scale_is_its_rms_or_std(arch):
    m = model(arch)
    scale, inp = Site("blocks", 2, "final_scale"), Site("blocks", 2, "final_norm_in")
    recorded, _ = harness_forward(arch, ROWS, {scale: Record(), inp: Record()})
    x = recorded[inp].double()
    config = m.module.config
    if arch in ("llama", "qwen2", "phi3"):  # RMSNorm
        want = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + config.rms_norm_eps)
    else:
        eps = getattr(config, "layer_norm_epsilon", None) or getattr(config, "layer_norm_eps", 1e-5)
        want = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps)
    assert recorded[scale].shape == (*x.shape[:2], 1)
    assert torch.allclose(recorded[scale].double(), want, rtol=1e-5, atol=0)
    assert m.width(scale) == 1


@archs
def test_padding_and_batching_do_not_change_recorded_values(arch):
    sites = tuple(offered(arch)) + (Site("blocks", 2, "final_scale"),)
    batched, _ = harness_forward(arch, ROWS, {s: Record() for s in sites})
    for i, row in enumerate(ROWS):
        alone, _ = harness_forward(arch, [row], {s: Record() for s in sites})
        for site in sites:
            assert torch.allclose(batched[site][i, :len(row)], alone[site][0], atol=ATOL, rtol=0), (site, i)


# --------------------------------------------------------------------------- editing


def _direction(width: int, seed: int) -> torch.Tensor:
    return torch.randn(width, generator=torch.Generator().manual_seed(seed))


def edit_cases(arch: str) -> list[tuple[str, Site]]:
    gated = "mlp_pre_linear" in model(arch).sites.stack("blocks").points
    cases = [("add", Site("blocks", 1, "mlp_post", units=(3, 4, 5, 6))), ("add", Site("blocks", 2, "mlp_pre", units=(9,))),
             ("patch", Site("blocks", 1, "attn.q", head=3)), ("zero", Site("blocks", 2, "attn.k", head=1)),
             ("mean", Site("blocks", 1, "attn.v", head=0)), ("patch", Site("blocks", 2, "mlp_post")),
             ("zero", Site("blocks", 1, "attn.q", head=0))]
    if gated:
        cases.append(("add", Site("blocks", 1, "mlp_pre_linear", units=(40, 41))))
    if "resid_mid" in model(arch).sites.stack("blocks").points:
        cases.append(("add", Site("blocks", 2, "resid_mid")))
    return cases


ALL_EDITS = [(arch, kind, site) for arch in ARCHS for kind, site in edit_cases(arch)]


@pytest.mark.parametrize(("arch", "kind", "site"), ALL_EDITS, ids=[f"{a}-{k}-{s}" for a, k, s in ALL_EDITS])
def test_an_edit_changes_the_output_exactly_as_the_oracle_edit_does(arch, kind, site):
    m = model(arch)
    width = m.width(site)
    _, plain = oracle_forward(arch, ROWS)
    if kind == "add":  # at the last real token of each row
        d, alpha = _direction(width, 1), 2.5
        edit = Add(d, alpha=alpha, positions=Positions.last())
        ids, mask = pad_rows(ROWS, pad_id=0)
        last = Positions.last().resolve(mask)

        def oracle(view, real):
            return torch.where(last[..., None], view + alpha * d, view)
    elif kind == "patch":  # from another run
        source, _ = oracle_forward(arch, OTHER, reads=(site,))
        edit = Patch(source[site])

        def oracle(view, real):
            return torch.where(real[..., None], source[site], view)
    elif kind == "zero":
        edit = Ablate.zero()

        def oracle(view, real):
            return torch.where(real[..., None], torch.zeros_like(view), view)
    else:  # a mean over another run's real tokens
        reference, _ = oracle_forward(arch, OTHER, reads=(site,))
        _, other_mask = pad_rows(OTHER, pad_id=0)
        mean = reference[site][other_mask.bool()].mean(0)
        edit = Ablate.mean(reference[site], other_mask)

        def oracle(view, real):
            return torch.where(real[..., None], mean, view)
    _, got = harness_forward(arch, ROWS, {site: edit})
    _, want = oracle_forward(arch, ROWS, edits={site: oracle})
    assert (want - plain).abs().max() > 1e-3, "the edit must change the output for this test to mean anything"
    assert torch.allclose(got, want, atol=ATOL, rtol=0), float((got - want).abs().max())


def test_a_non_contiguous_neuron_set_takes_those_columns_in_the_order_given():
    site = Site("blocks", 1, "mlp_post", units=(17, 2, 40))
    whole = Site("blocks", 1, "mlp_post")
    recorded, _ = harness_forward("llama", ROWS, {site: Record(), whole: Record()})
    assert torch.equal(recorded[site], recorded[whole][..., [17, 2, 40]])
    d = _direction(3, 5)
    _, got = harness_forward("llama", ROWS, {site: Add(d)})
    _, want = harness_forward("llama", ROWS, {whole: Add(torch.zeros(48).index_put((torch.tensor([17, 2, 40]),), d))})
    assert torch.allclose(got, want, atol=ATOL, rtol=0)


def test_an_edit_at_one_query_head_leaves_the_other_heads_and_k_v_unchanged():
    edited = Site("blocks", 1, "attn.q", head=2)
    reads = [Site("blocks", 1, "attn.q"), Site("blocks", 1, "attn.k"), Site("blocks", 1, "attn.v")]
    plain, _ = harness_forward("gpt2", ROWS, {s: Record() for s in reads})
    after, _ = harness_forward("gpt2", ROWS, {edited: Add(_direction(DH, 3)), **{s: Record() for s in reads}})
    changed = (after[reads[0]] - plain[reads[0]]).abs().amax((0, 1)) > 0
    assert changed.tolist() == [2 * DH <= c < 3 * DH for c in range(H * DH)]
    assert torch.equal(after[reads[1]], plain[reads[1]]) and torch.equal(after[reads[2]], plain[reads[2]])


@pytest.mark.parametrize("arch, site", [
    ("llama", Site("blocks", 1, "mlp_post", units=(17, 2, 40))),   # a neuron set, out of order
    ("opt", Site("blocks", 1, "mlp_post", units=(3, 4))),          # OPT's MLP runs on [batch * pos, d]
    ("gpt_neox", Site("blocks", 1, "attn.q", head=1)),             # a fused q/k/v projection, per head
    ("falcon", Site("blocks", 2, "attn.v", head=0)),               # grouped fused q/k/v
])
def test_check_acted_confines_an_edit_to_the_sites_columns(arch, site):
    """check_acted compares the whole tensor the site lives in, per position (OPT's flattened
    rows unflattened): an edit of the site's columns at the last position changes those
    positions only and nothing outside the site's columns."""
    m = model(arch)
    ids, mask = pad_rows(ROWS, pad_id=0)
    forward = lambda: m.module(input_ids=ids, attention_mask=mask)  # noqa: E731
    width = m.width(m.site(site))
    rep = check_acted(m, site, Add(_direction(width, 1), positions=Positions.last()), forward=forward,
                      masks={"blocks": mask})
    assert rep.held, str(rep)
    assert rep.leaked == 0 and rep.max_change_outside == 0
    assert torch.equal(rep.changed, Positions.last().resolve(mask))


# --------------------------------------------------------------------------- the table and bad input


def test_widths_and_counts_are_read_off_the_model():
    gpt2, llama, falcon, opt = model("gpt2"), model("llama"), model("falcon"), model("opt")
    assert gpt2.sites.stack("blocks").d_mlp == 4 * D   # n_inner is None: the width comes from c_proj
    assert (llama.sites.stack("blocks").kv_heads, llama.sites.stack("blocks").d_mlp) == (2, 48)
    assert falcon.sites.stack("blocks").kv_heads == 2 and opt.sites.stack("blocks").d_mlp == 48
    assert llama.width(llama.site("blocks", 1, "attn.k")) == 2 * DH
    assert llama.width(llama.site("blocks", 1, "mlp_post", units=range(4, 9))) == 5
    assert llama.site("blocks", 1, "attn.k.head1") == Site("blocks", 1, "attn.k", head=1)
    assert llama.site("blocks", 1, "mlp_post.neurons[4:6]") == Site("blocks", 1, "mlp_post", units=(4, 5))


@pytest.mark.parametrize("arch", ["gpt_neox", "falcon"])
def test_resid_mid_of_a_parallel_block_is_an_error_that_says_why(arch):
    with pytest.raises(SiteError, match=re.escape(
            f"`point` 'resid_mid' is no site of blocks of tiny:{arch}: blocks of {arch} are parallel (attention "
            "and MLP both read resid_pre and add their outputs to it together), so no residual lies between "
            "them; use resid_pre, attn_out or mlp_out; its points are [")):
        model(arch).site("blocks.1.resid_mid")


def test_mlp_pre_linear_of_an_ungated_mlp_is_an_error_that_says_why():
    with pytest.raises(SiteError, match=r"the MLP of gpt2 is not gated: mlp_pre is its only pre-activation"):
        model("gpt2").site("blocks.1.mlp_pre_linear")


def test_a_neuron_beyond_d_mlp_is_an_error():
    with pytest.raises(SiteError, match=re.escape(
            "`units` must be neuron indices in 0..47 for mlp_post of blocks of tiny:opt (d_mlp = 48), got 48")):
        model("opt").site("blocks.1.mlp_post.neuron48")


def test_a_key_addressed_by_a_query_head_under_gqa_is_an_error_naming_its_key_value_head():
    with pytest.raises(SiteError, match=re.escape(
            "`head` must be a key/value head in 0..1 for attn.k of blocks of tiny:llama, got 3: under grouped-query "
            "attention its 4 query heads share 2 key/value heads, query head h reading key/value head h // 2; "
            "query head 3 reads key/value head 1: write 'blocks.1.attn.k.head1'")):
        model("llama").site("blocks", 1, "attn.k", head=3)


def test_editing_the_final_norm_scale_is_an_error_and_leaves_no_hook():
    m = model("llama")
    ids, mask = pad_rows(ROWS, pad_id=0)
    norm = m.module.get_submodule("model.norm")
    with pytest.raises(InterventionError, match=r"the final norm's scale \(final_scale\) can be recorded, not edited"):
        with torch.no_grad(), intervene(m, {"blocks.2.final_scale": Add(torch.ones(1))}, masks={"blocks": mask}):
            m.module(input_ids=ids, attention_mask=mask)
    assert not norm._forward_pre_hooks and not norm._forward_hooks


def test_head_and_units_with_a_site_string_are_an_error():
    with pytest.raises(SiteError, match=r"`head` and `units` go with `stack`, `layer` and `point`"):
        model("llama").site("blocks.1.attn.q", head=1)
    with pytest.raises(SiteError, match=r"`point` 'attn.q.head1' already names its head or units"):
        model("llama").site("blocks", 1, "attn.q.head1", head=1)


# --------------------------------------------------------------------------- sweeps


@pytest.mark.parametrize(("arch", "site"), [
    ("byt5-small", "encoder.6.mlp_post.neurons[3:7]"),    # the encoder-cached sweep replays from block 6
    ("byt5-small", "encoder.6.attn.q.head2"),       # (one vector added to every key would change nothing)
    ("qwen2.5-0.5b", "blocks.12.attn.v.head1"),
    ("gpt2", "blocks.6.mlp_pre.neuron7"),
    ("gpt2", "blocks.12.final_norm_in"),
])
def test_a_sweep_at_a_neuron_or_head_site_equals_one_example_one_alpha_runs(arch, site):
    from harness.measures.scores import logit_diff, logprob_diff
    from harness.measures.sweeps import scorer, sweep
    from tests._support.tiny import tiny_model

    m = tiny_model(arch)
    texts, alphas = ["the quick brown fox", "hi", "abcdefg"], [-2.0, 0.0, 3.0]
    score = scorer(logprob_diff, "ok", "no") if arch == "byt5-small" else scorer(logit_diff, "e", "t")
    d = _direction(m.width(m.site(site)), 4)
    curve = sweep(m, texts, at=site, direction=d, alphas=alphas, score=score, batch_size=4)
    expected = [[float(score(m, [text], interventions={site: Add(d, alpha=a)})[0]) for a in alphas] for text in texts]
    assert float(abs(curve.scores[:, 2] - curve.scores[:, 1]).min()) > 1e-3, "the edit must move every score"
    np.testing.assert_allclose(curve.scores, np.array(expected), atol=1e-4, rtol=0)


def test_the_hook_says_which_columns_of_its_tensor_are_the_site():
    m = model("gpt2")
    hook = m.hook_for(m.site("blocks.1.attn.k.head2"))
    inside = hook.column_mask(3 * D)
    assert inside.nonzero().flatten().tolist() == list(range(D + 2 * DH, D + 3 * DH))
    opt = model("opt")
    flat = torch.arange(3 * 5 * 48.0).reshape(15, 48)   # OPT's MLP runs on [batch * pos, d_mlp]
    hook = opt.hook_for(opt.site("blocks.1.mlp_post.neurons[2:4]"))
    assert torch.equal(hook.whole(flat, (3, 5)), flat.reshape(3, 5, 48))
    assert torch.equal(hook.view(flat, (3, 5)), flat.reshape(3, 5, 48)[..., 2:4])
    assert torch.equal(hook.put(flat, torch.zeros(3, 5, 2)).reshape(3, 5, 48)[..., 2:4], torch.zeros(3, 5, 2))
    assert hook.column_mask(48).sum() == 2
    assert torch.equal(flat, torch.arange(3 * 5 * 48.0).reshape(15, 48))   # put never writes into its input


def test_a_head_point_without_its_head_says_the_head_is_required():
    with pytest.raises(SiteError, match=r"`head` is required exactly for the per-head point"):
        model("llama").site("blocks", 1, "head")


def test_an_optional_module_the_checkpoint_lacks_leaves_its_points_out_saying_why():
    import dataclasses

    m = model("llama")
    stack = dataclasses.replace(m.layout.stacks[0], mlp_gate="mlp.wi_0", resid_mid="ln_mid")
    table = site_table(m.module, dataclasses.replace(m.layout, stacks=(stack,)), "tiny:llama-variant")
    shape = table.stack("blocks")
    assert not {"mlp_pre", "mlp_post", "resid_mid"} & set(shape.points)
    assert {"attn.q", "resid_pre"} <= set(shape.points)
    with pytest.raises(SiteError, match=r"'mlp_post' is no site of blocks of tiny:llama-variant: module path "
                                        r"'mlp.wi_0' of the architecture table entry does not exist in block 0"):
        table.validate("blocks.1.mlp_post.neuron3")
