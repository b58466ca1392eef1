"""harness.saes: SAE hook names <-> sites, loading (offline), feature directions, encoding, training.

The hook-name rule is pinned three ways: against each tiny model's own ``output_hidden_states``
(every block, every architecture), against TransformerLens itself (a HookedTransformer built
from the same weights, every hook name, GPT-2 and Gemma-2), and as a round trip. The fixture
setting of the steering study runs end to end on a random-weight Gemma-2 of the gemma-2-2b
topology: train an SAE at one residual site, save, reload through sae-lens, steer with a feature.
Nothing is downloaded.
"""

from __future__ import annotations

import functools
import json
from typing import Callable
import socket
import time

import numpy as np
import pytest
import torch

from harness.errors import DataError, ModelLoadError, ShapeError, SiteError
from harness.interventions import Add, Record, intervene
from harness.measures.directions import Direction
from harness.measures.scores import logit_diff, next_token_logits
from harness.measures.sweeps import scorer, sweep, symmetric
from harness.models.loaded import pad_rows
from harness.models.sites import Site
from harness.saes import (FeatureDirection, encode_at, feature_direction, hook_for_site, load_sae, measure_sae,
                          sae_site, site_activations, site_for_hook, train_sae)
from harness.saes.hooks import HookRef, hook_ref_for_site
from tests._support.tiny import ARCHITECTURES, tiny_model

TEXTS = ["def add(a, b): return a + b", "x", "for i in range(10): print(i)"]
WORDS = "def return class import for while if else lambda yield print self value list dict int str".split()
ATOL = 1e-5


def corpus(n: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(3, 9, (1,), generator=g))
        out.append(" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (k,), generator=g)))
    return out


def random_sae(d_in: int, d_sae: int, hook_name: str | None, *, seed: int = 0, **metadata):
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    meta = SAEMetadata(model_name="tiny", **({"hook_name": hook_name} if hook_name else {}), **metadata)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, metadata=meta))
        with torch.no_grad():
            sae.b_enc.normal_(0.0, 0.5)
    return sae.eval()


# --------------------------------------------------------------------------- hook name <-> site


@functools.lru_cache(maxsize=None)
def hook_trace(arch: str):
    """Every residual hook name's site recorded in one forward, with the model's hidden states."""
    m = tiny_model(arch)
    ids, mask = pad_rows(m.tokenize(TEXTS), pad_id=m.pad_id)
    masks = {m.main_stack: mask}
    names = {}
    for shape in m.sites.stacks:
        for k in range(shape.n_layers):
            for point in ("resid_pre", "resid_post"):
                name = f"{shape.name}.{k}.hook_{point}"
                names[name] = site_for_hook(m, name)
    with torch.no_grad(), intervene(m, {s: Record() for s in set(names.values())}, masks=masks) as run:
        if m.is_encoder_decoder:
            dec_ids, dec_mask = pad_rows([[0, 50, 60], [0, 70], [0, 80, 81]], pad_id=m.pad_id)
            masks["decoder"] = dec_mask
            out = m.module(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids,
                           decoder_attention_mask=dec_mask, output_hidden_states=True)
            hidden = {"encoder": out.encoder_hidden_states, "decoder": out.decoder_hidden_states}
        else:
            out = m.module(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            hidden = {"blocks": out.hidden_states}
    return m, names, run.recorded, hidden, masks


def real(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return t[mask.bool()]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_hook_resid_post_of_0_based_block_k_is_hidden_states_k_plus_1(arch):
    m, names, recorded, hidden, masks = hook_trace(arch)
    for shape in m.sites.stacks:
        n, hs, mask = shape.n_layers, hidden[shape.name], masks[shape.name]
        for k in range(n - 1):
            site = names[f"{shape.name}.{k}.hook_resid_post"]
            assert site == Site(shape.name, k + 1, "resid_post")
            assert torch.allclose(real(recorded[site], mask), real(hs[k + 1], mask), atol=ATOL), (arch, k)
        # the last block's hook_resid_post is the final norm's input; hidden_states[n] is its output
        last = names[f"{shape.name}.{n - 1}.hook_resid_post"]
        assert last == Site(shape.name, n, "block_out")
        final_norm = m.module.get_submodule(m.layout.stack(shape.name).final_norm)
        with torch.no_grad():
            normed = final_norm(recorded[last])
        assert torch.allclose(real(normed, mask), real(hs[n], mask), atol=ATOL)
        assert not torch.allclose(real(recorded[last], mask), real(hs[n], mask), atol=1e-2)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_hook_resid_pre_of_0_based_block_k_is_hidden_states_k(arch):
    m, names, recorded, hidden, masks = hook_trace(arch)
    for shape in m.sites.stacks:
        for k in range(shape.n_layers):
            site = names[f"{shape.name}.{k}.hook_resid_pre"]
            assert site == Site(shape.name, k + 1, "resid_pre")
            mask = masks[shape.name]
            assert torch.allclose(real(recorded[site], mask), real(hidden[shape.name][k], mask), atol=ATOL), (arch, k)


def test_gemma_scope_layer_12_is_the_harness_block_13():
    m = tiny_model("gemma-2-2b")
    assert site_for_hook(m, "blocks.12.hook_resid_post") == Site("blocks", 13, "resid_post")
    assert hook_for_site(m, "blocks.13.resid_post") == "blocks.12.hook_resid_post"
    assert site_for_hook(m, "model.layers.12") == Site("blocks", 13, "resid_post")  # sae-lens on HF models
    assert site_for_hook(m, "model.layers.12.output") == Site("blocks", 13, "resid_post")
    assert site_for_hook(m, "blocks.25.hook_resid_post") == Site("blocks", 26, "block_out")
    assert site_for_hook(m, "model.norm") == Site("blocks", 26, "resid_post")
    assert site_for_hook(m, "hook_embed") == Site("blocks", 0, "resid_post")
    assert site_for_hook(m, "blocks.12.hook_mlp_out") == Site("blocks", 13, "mlp_out")


def transformer_lens_twin(arch: str):
    """A HookedTransformer with the tiny model's weights, built offline from an explicit config."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions import convert_gemma_weights, convert_gpt2_weights

    m = tiny_model(arch)
    c = m.module.config
    if arch == "gpt2":
        cfg = HookedTransformerConfig(
            n_layers=c.n_layer, d_model=c.n_embd, n_ctx=c.n_positions, d_head=c.n_embd // c.n_head,
            n_heads=c.n_head, d_mlp=4 * c.n_embd, d_vocab=c.vocab_size, act_fn="gelu_new",
            normalization_type="LN", eps=c.layer_norm_epsilon, original_architecture="GPT2LMHeadModel")
        state = convert_gpt2_weights(m.module, cfg)
    else:  # TransformerLens' gemma-2-2b config at the tiny model's sizes
        cfg = HookedTransformerConfig(
            n_layers=c.num_hidden_layers, d_model=c.hidden_size, n_ctx=c.max_position_embeddings,
            d_head=c.head_dim, n_heads=c.num_attention_heads, d_mlp=c.intermediate_size, d_vocab=c.vocab_size,
            act_fn="gelu_pytorch_tanh", normalization_type="RMS", eps=c.rms_norm_eps, rotary_base=10000.0,
            positional_embedding_type="rotary", rotary_dim=c.head_dim, use_attn_scale=True,
            n_key_value_heads=c.num_key_value_heads, window_size=c.sliding_window, use_local_attn=True,
            attn_types=["local", "global"] * (c.num_hidden_layers // 2),
            attn_scores_soft_cap=c.attn_logit_softcapping, output_logits_soft_cap=c.final_logit_softcapping,
            gated_mlp=True, final_rms=True, use_normalization_before_and_after=True,
            original_architecture="Gemma2ForCausalLM")
        state = convert_gemma_weights(m.module, cfg)
    tl = HookedTransformer(cfg)
    tl.load_and_process_state_dict(state, fold_ln=False, center_writing_weights=False, center_unembed=False,
                                   fold_value_biases=False, refactor_factored_attn_matrices=False)
    return m, tl.eval()


@pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated:DeprecationWarning")
@pytest.mark.parametrize("arch", ["gpt2", "gemma-2-2b"])
def test_every_hook_name_reads_what_transformer_lens_hooks_there(arch):
    m, tl = transformer_lens_twin(arch)
    text = "def f(x): return x + 1  # longer than gemma's sliding window of 16"
    ids = torch.tensor([m.tokenize([text])[0]])
    names = [f"blocks.{k}.hook_{p}" for k in range(m.sites.stack("blocks").n_layers)
             for p in ("resid_pre", "resid_post", "attn_out", "mlp_out")]
    names += ["hook_embed"] if arch == "gemma-2-2b" else []
    sites = {name: site_for_hook(m, name) for name in names}
    with torch.no_grad():
        tl_logits, cache = tl.run_with_cache(ids)
        with intervene(m, {s: Record() for s in set(sites.values())}, masks={"blocks": torch.ones_like(ids)}) as run:
            hf_logits = m.module(input_ids=ids).logits
    assert torch.allclose(tl_logits, hf_logits, atol=1e-4)  # the twin is the same model
    for name, site in sites.items():
        want = cache[name]
        assert torch.allclose(run.recorded[site], want, atol=1e-5 * max(1.0, float(want.abs().max()))), (name, site)


@pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated:DeprecationWarning")
@pytest.mark.parametrize("arch", ["gpt2", "gemma-2-2b"])
def test_the_finer_hook_names_read_what_transformer_lens_hooks_there(arch):
    """resid_mid, the MLP's pre/post activations (whole, and chosen neurons), q/k/v (every head, and
    each head: key/value heads under Gemma-2's grouped-query attention), hook_z per head, and the
    final norm's scale, against a HookedTransformer with the same weights."""
    m, tl = transformer_lens_twin(arch)
    text = "def f(x): return x + 1  # longer than gemma's sliding window of 16"
    ids = torch.tensor([m.tokenize([text])[0]])
    shape = m.sites.stack("blocks")
    hooks = ["hook_resid_mid", "mlp.hook_pre", "mlp.hook_post", "attn.hook_q", "attn.hook_k", "attn.hook_v"]
    hooks += ["mlp.hook_pre_linear"] if arch == "gemma-2-2b" else []
    wanted: dict[Site, tuple[str, Callable]] = {}
    for k in sorted({0, shape.n_layers // 2, shape.n_layers - 1}):
        for hook in hooks:
            name = f"blocks.{k}.{hook}"
            wanted[site_for_hook(m, name)] = (name, lambda t: t.flatten(2))   # heads side by side
            if hook.startswith("attn."):
                for h in range(shape.heads_of(site_for_hook(m, name).point)):
                    wanted[site_for_hook(m, name, head=h)] = (name, lambda t, h=h: t[:, :, h])
            if hook.startswith("mlp."):
                wanted[site_for_hook(m, name, units=[5, 1])] = (name, lambda t: t[..., [5, 1]])
        for h in range(shape.n_heads):
            wanted[site_for_hook(m, f"blocks.{k}.attn.hook_z", head=h)] = (f"blocks.{k}.attn.hook_z",
                                                                         lambda t, h=h: t[:, :, h])
    wanted[site_for_hook(m, "ln_final.hook_scale")] = ("ln_final.hook_scale", lambda t: t)
    with torch.no_grad():
        _, cache = tl.run_with_cache(ids)
        with intervene(m, {s: Record() for s in wanted}, masks={"blocks": torch.ones_like(ids)}) as run:
            m.module(input_ids=ids)
    for site, (name, take) in wanted.items():
        want = take(cache[name])
        assert hook_ref_for_site(m, site).name == name
        assert run.recorded[site].shape == want.shape, (site, name)
        assert torch.allclose(run.recorded[site], want, atol=1e-5 * max(1.0, float(want.abs().max()))), (name, site)


def test_finer_hook_names_map_both_ways_and_refuse_what_the_model_lacks():
    gemma, gpt2 = tiny_model("gemma-2-2b"), tiny_model("gpt2")
    assert site_for_hook(gemma, "blocks.2.attn.hook_k", head=3) == Site("blocks", 3, "attn.k", head=3)
    assert hook_ref_for_site(gemma, "blocks.3.attn.k.head3") == HookRef("blocks.2.attn.hook_k", head=3)
    assert site_for_hook(gemma, "blocks.0.mlp.hook_post", units=range(4, 6)) == \
        Site("blocks", 1, "mlp_post", units=(4, 5))
    assert hook_for_site(gemma, "blocks.1.mlp_pre_linear") == "blocks.0.mlp.hook_pre_linear"
    assert hook_for_site(gemma, "blocks.26.final_scale") == "ln_final.hook_scale"
    assert hook_for_site(gemma, "blocks.26.final_norm_in") == "blocks.25.hook_resid_post"
    byt5 = tiny_model("byt5-small")
    assert hook_for_site(byt5, "decoder.2.resid_mid") == "decoder.1.hook_resid_mid_cross"
    assert site_for_hook(byt5, "decoder.1.hook_resid_mid_cross") == Site("decoder", 2, "resid_mid")
    assert site_for_hook(byt5, "encoder.1.hook_resid_mid") == Site("encoder", 2, "resid_mid")
    assert site_for_hook(byt5, "encoder_final_ln.hook_scale") == Site("encoder", 12, "final_scale")
    with pytest.raises(SiteError, match=r"T5's decoder hook_resid_mid lies between self- and cross-attention"):
        site_for_hook(byt5, "decoder.1.hook_resid_mid")
    with pytest.raises(SiteError, match=r"'blocks.0.mlp.hook_pre_linear': blocks of tiny:gpt2 has no mlp_pre_linear "
                                        r"\(the MLP of gpt2 is not gated"):
        site_for_hook(gpt2, "blocks.0.mlp.hook_pre_linear")
    with pytest.raises(SiteError, match=r"hook name 'blocks.2.attn.hook_k' is blocks.3.attn.k.head5 on "
                                        r"tiny:gemma-2-2b, which is no site of it: `head` must be a key/value head "
                                        r"in 0..3 .* query head 5 reads key/value head 2"):
        site_for_hook(gemma, "blocks.2.attn.hook_k", head=5)
    with pytest.raises(SiteError, match=r"`units` must be neuron indices in 0..63"):
        site_for_hook(gemma, "blocks.0.mlp.hook_post", units=[64])
    with pytest.raises(SiteError, match=r"`head` goes with the per-head hooks attn.hook_q/k/v/z/attn_scores/pattern, not with "
                                        r"'blocks.0.hook_resid_pre'"):
        site_for_hook(gemma, "blocks.0.hook_resid_pre", head=1)
    with pytest.raises(SiteError, match=r"`units` go with the MLP hooks"):
        site_for_hook(gemma, "blocks.0.attn.hook_q", units=[1])
    with pytest.raises(SiteError, match=r"is neurons \[4, 5\] of 'blocks.0.mlp.hook_post'"):
        hook_for_site(gemma, "blocks.1.mlp_post.neurons[4:6]")


def test_hook_embed_follows_the_position_scheme_of_the_table():
    import dataclasses

    gpt2 = tiny_model("gpt2")
    rotary = dataclasses.replace(gpt2, layout=dataclasses.replace(gpt2.layout, positions="rotary"), _hooks={})
    assert site_for_hook(rotary, "hook_embed") == Site("blocks", 0, "resid_post")
    with pytest.raises(SiteError, match="absolute position embedding"):
        site_for_hook(gpt2, "hook_embed")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_hook_names_and_sites_round_trip(arch):
    m = tiny_model(arch)
    for shape in m.sites.stacks:
        for k in range(shape.n_layers):
            for point in [p for p in ("resid_pre", "resid_post", "attn_out", "mlp_out", "cross_attn_out")
                          if p in shape.points]:
                name = f"{shape.name}.{k}.hook_{point}"
                assert hook_for_site(m, site_for_hook(m, name)) == name
        for point in shape.points:
            for site in m.sites.all_sites(point, shape.name):
                ref = hook_ref_for_site(m, site)
                back = site_for_hook(m, ref.name, head=ref.head, units=ref.units)
                if site.point == "final_norm_in":  # the last block's output, hooked there
                    assert back == Site(shape.name, shape.n_layers, "block_out")
                    continue
                assert m.hook_for(back) == m.hook_for(site), (site, back)  # the same activation
        blocks, final = m.layout.stack(shape.name).blocks, m.layout.stack(shape.name).final_norm
        assert site_for_hook(m, f"{blocks}.3") == site_for_hook(m, f"{shape.name}.3.hook_resid_post")
        assert site_for_hook(m, f"{blocks}.0.input") == site_for_hook(m, f"{shape.name}.0.hook_resid_pre")
        assert site_for_hook(m, final) == Site(shape.name, shape.n_layers, "resid_post")
        assert hook_for_site(m, Site(shape.name, shape.n_layers, "resid_post")) == final


@pytest.mark.parametrize("name, says", [
    ("blocks.26.hook_resid_post", "0..25"),
    ("blocks.-1.hook_resid_post", "0..25"),
    ("ln_final.hook_normalized", "before the norm's weight"),
    ("blocks.3.ln2.hook_scale", "only the final norm's"),
    ("blocks.3.attn.hook_rot_q", "sites before rotary"),
    ("encoder.3.hook_resid_post", "does not have"),
    ("blocks.3.hook_cross_attn_out", "no cross_attn_out"),
    ("transformer.h.3", "valid forms"),
    ("", "non-empty"),
])
def test_a_hook_name_that_is_no_site_is_a_site_error_naming_the_valid_forms(name, says):
    m = tiny_model("gemma-2-2b")
    with pytest.raises(SiteError, match="valid forms|non-empty|0-based|no cross") as err:
        site_for_hook(m, name)
    assert says in str(err.value)


def test_attention_scores_and_patterns_map_by_head_and_need_one():
    m = tiny_model("gemma-2-2b")
    assert site_for_hook(m, "blocks.3.attn.hook_pattern", head=2) == Site("blocks", 4, "attn.pattern", head=2)
    assert site_for_hook(m, "blocks.0.attn.hook_attn_scores", head=0) == Site("blocks", 1, "attn.scores", head=0)
    assert hook_ref_for_site(m, "blocks.4.attn.pattern.head2") == HookRef("blocks.3.attn.hook_pattern", 2, None)
    with pytest.raises(SiteError, match=r"holds every head of its block, \[batch, head, query, key\].*pass head=h"):
        site_for_hook(m, "blocks.3.attn.hook_pattern")


def test_hook_embed_is_refused_where_it_is_not_hidden_states_0():
    with pytest.raises(SiteError, match="position embedding"):
        site_for_hook(tiny_model("gpt2"), "hook_embed")
    with pytest.raises(SiteError, match="both stacks"):
        site_for_hook(tiny_model("byt5-small"), "hook_embed")


def test_a_per_head_site_is_its_head_of_hook_z():
    m = tiny_model("gemma-2-2b")
    assert hook_ref_for_site(m, "blocks.3.attn.head2") == HookRef("blocks.2.attn.hook_z", head=2)
    with pytest.raises(SiteError, match=r"site blocks.3.attn.head2 is head 2 of 'blocks.2.attn.hook_z', which holds "
                                        r"every head of the block; .* use hook_ref_for_site"):
        hook_for_site(m, "blocks.3.attn.head2")
    assert site_for_hook(m, "blocks.2.attn.hook_z", head=2) == Site("blocks", 3, "head", head=2)
    with pytest.raises(SiteError, match=r"'blocks.2.attn.hook_z' holds every head of its block, "
                                        r"\[batch, pos, head, d_head\]; .* pass head=h"):
        site_for_hook(m, "blocks.2.attn.hook_z")


def test_sae_site_checks_d_in_against_the_site_width():
    m = tiny_model("gemma-2-2b")
    assert sae_site(m, random_sae(32, 8, "blocks.12.hook_resid_post")) == Site("blocks", 13, "resid_post")
    with pytest.raises(ShapeError, match=r"d_in is 2304 .* blocks\.13\.resid_post .* width 32"):
        sae_site(m, random_sae(2304, 8, "blocks.12.hook_resid_post"))


def test_sae_site_refuses_a_missing_hook_name_a_contradicting_site_and_one_head():
    m = tiny_model("gemma-2-2b")
    with pytest.raises(SiteError, match="no `hook_name`"):
        sae_site(m, random_sae(32, 8, None))
    assert sae_site(m, random_sae(32, 8, None), "blocks.5.resid_post") == Site("blocks", 5, "resid_post")
    sae = random_sae(32, 8, "blocks.12.hook_resid_post")
    assert sae_site(m, sae, "blocks.13.block_out") == Site("blocks", 13, "block_out")  # the same activation
    with pytest.raises(SiteError, match=r"blocks\.13\.resid_post .* not at blocks\.12\.resid_post"):
        sae_site(m, sae, "blocks.12.resid_post")
    with pytest.raises(SiteError, match="one head"):
        sae_site(m, random_sae(8, 8, "blocks.3.attn.hook_z", hook_head_index=2))


# --------------------------------------------------------------------------- loading


def test_a_saved_sae_loads_from_its_folder(tmp_path):
    sae = random_sae(32, 16, "blocks.12.hook_resid_post")
    sae.save_model(tmp_path / "sae")
    loaded = load_sae(tmp_path / "sae")
    assert type(loaded).__name__ == "StandardSAE" and loaded.cfg.metadata.hook_name == "blocks.12.hook_resid_post"
    for name, tensor in sae.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_a_folder_without_cfg_json_or_weights_is_a_model_load_error(tmp_path):
    random_sae(32, 16, "blocks.12.hook_resid_post").save_model(tmp_path)
    (tmp_path / "cfg.json").unlink()
    with pytest.raises(ModelLoadError, match=r"no cfg\.json .* SAE\.save_model"):
        load_sae(tmp_path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_sae(tmp_path / "nowhere")
    (tmp_path / "cfg.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="could not load the SAE"):
        load_sae(tmp_path)


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, and no network: a connection attempt fails the test."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    def no_network(*args, **kwargs):
        raise AssertionError("the SAE loader tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    return tmp_path / "hub"


def test_a_released_sae_missing_from_the_cache_fails_fast_saying_how_to_provide_it(empty_hub_cache):
    from huggingface_hub import constants
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    get_pretrained_saes_directory()  # parsed once per process (seconds); the lookup is what is timed
    offline_before = constants.HF_HUB_OFFLINE
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as err:
        load_sae("gemma-scope-2b-pt-res-canonical", "layer_12/width_16k/canonical")
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert "hf download google/gemma-scope-2b-pt-res --include 'layer_12/width_16k/average_l0_82/*'" in message
    assert "load_sae(DIR)" in message and str(empty_hub_cache) in message
    assert constants.HF_HUB_OFFLINE == offline_before  # offline mode is restored


def test_an_unknown_release_or_sae_id_is_a_model_load_error(empty_hub_cache):
    with pytest.raises(ModelLoadError, match="not in sae-lens' directory"):
        load_sae("gemma-scope-2b-pt-res-canonicall", "layer_12/width_16k/canonical")
    with pytest.raises(ModelLoadError, match="is not in release"):
        load_sae("gemma-scope-2b-pt-res-canonical", "layer_99/width_16k/canonical")
    with pytest.raises(ModelLoadError, match="hf download someone/saes"):
        load_sae("someone/saes", "blocks.3.hook_resid_post")


def test_one_string_release_slash_id_is_the_release_and_id_form(empty_hub_cache, tmp_path):
    with pytest.raises(ModelLoadError, match="hf download google/gemma-scope-2b-pt-res"):
        load_sae("gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical")
    with pytest.raises(ModelLoadError, match="not in sae-lens' directory"):
        load_sae("gemma-scope-2b-pt-res-canonicall/layer_12/width_16k/canonical")
    # an existing folder (even one whose path has a '/') is a folder, and a missing path that
    # starts with '/' or '.' stays a missing folder
    sae = random_sae(8, 4, "blocks.0.hook_resid_post")
    sae.save_model(tmp_path / "sae")
    assert torch.equal(load_sae(str(tmp_path / "sae")).W_dec, sae.W_dec)
    with pytest.raises(ModelLoadError, match="SAE folder .* does not exist"):
        load_sae(str(tmp_path / "nothing" / "here"))


def test_a_hub_sae_in_the_local_cache_loads_offline(empty_hub_cache):
    sae = random_sae(32, 16, "blocks.12.hook_resid_post")
    commit = "0" * 40
    repo = empty_hub_cache / "models--someone--saes"
    sae.save_model(repo / "snapshots" / commit / "layer_12")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    loaded = load_sae("someone/saes", "layer_12")
    assert torch.equal(loaded.W_dec, sae.W_dec)


# --------------------------------------------------------------------------- features


def test_a_feature_direction_is_its_decoder_row_at_the_sae_site():
    m = tiny_model("gemma-2-2b")
    sae = random_sae(32, 16, "blocks.12.hook_resid_post")
    d = feature_direction(m, sae, 5)
    assert isinstance(d, Direction) and isinstance(d, FeatureDirection)
    assert torch.equal(d.vector, sae.W_dec[5].detach()) and d.vector.dtype == torch.float32
    assert (d.site, d.feature, d.sae) == ("blocks.13.resid_post", 5, sae.get_name())
    assert "SAE feature 5 of" in d.kind and f"norm {d.norm:.4g}" in d.kind
    assert feature_direction(m, sae, 5, label="gemma-scope/12").kind.startswith("SAE feature 5 of gemma-scope/12")


@pytest.mark.parametrize("feature", [16, -1, 1.5, True, "3"])
def test_a_feature_index_out_of_range_is_a_data_error(feature):
    sae = random_sae(32, 16, "blocks.12.hook_resid_post")
    with pytest.raises(DataError, match=r"0\.\.15"):
        feature_direction(tiny_model("gemma-2-2b"), sae, feature)
    with pytest.raises(DataError, match=r"0\.\.15"):
        encode_at(tiny_model("gemma-2-2b"), sae, TEXTS, features=[0, feature])


def test_encode_at_equals_the_one_text_runs_and_is_zero_at_padding():
    m = tiny_model("gemma-2-2b")
    sae = random_sae(32, 16, "blocks.12.hook_resid_post")
    fa = encode_at(m, sae, TEXTS, batch_size=2)
    lengths = [len(t) for t in m.tokenize(TEXTS)]
    assert fa.acts.shape == (3, max(lengths), 16) and fa.mask.sum(1).tolist() == lengths
    assert fa.site == "blocks.13.resid_post"
    for i, text in enumerate(TEXTS):
        alone = encode_at(m, sae, [text])
        assert torch.allclose(fa.acts[i, : lengths[i]], alone.acts[0], atol=1e-5)
        assert not fa.acts[i, lengths[i]:].any()
    with torch.no_grad():
        direct = sae.encode(site_activations(m, TEXTS, "blocks.13.resid_post"))
    assert torch.allclose(fa.tokens(), direct, atol=1e-5)
    some = encode_at(m, sae, TEXTS, features=[7, 2], batch_size=2)
    assert some.features == (7, 2) and torch.equal(some.acts, fa.acts[..., [7, 2]])


def test_encode_at_refuses_a_decoder_site_of_an_encoder_decoder():
    m = tiny_model("byt5-small")
    with pytest.raises(DataError, match="encoder"):
        encode_at(m, random_sae(32, 8, "decoder.1.hook_resid_post"), TEXTS)


# --------------------------------------------------------------------------- training, end to end


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An SAE trained on the tiny Gemma-2 at Gemma Scope's layer-12 site, saved in sae-lens' format."""
    m = tiny_model("gemma-2-2b")
    site = site_for_hook(m, "blocks.12.hook_resid_post")
    path = tmp_path_factory.mktemp("sae") / "layer_12"
    return m, train_sae(m, corpus(80), site=site, d_sae=64, steps=300, seed=0, path=path)


def test_training_saves_an_sae_that_sae_lens_loads_and_reports_held_out_quality(trained):
    from sae_lens import SAE

    m, result = trained
    assert (result.site, result.hook_name) == ("blocks.13.resid_post", "blocks.12.hook_resid_post")
    cfg = json.loads((result.path / "cfg.json").read_text())
    assert cfg["architecture"] == "standard" and cfg["metadata"]["hook_name"] == "blocks.12.hook_resid_post"
    reloaded = SAE.load_from_disk(result.path)
    in_memory = train_sae(m, corpus(80), site="blocks.13.resid_post", d_sae=64, steps=300, seed=0).sae
    for name, tensor in in_memory.state_dict().items():  # same seed -> identical weights, and saved exactly
        assert torch.equal(reloaded.state_dict()[name], tensor), name
    x = site_activations(m, corpus(10, seed=1), result.site)
    with torch.no_grad():
        assert torch.equal(reloaded.encode(x), in_memory.encode(x))
        assert torch.equal(reloaded.decode(reloaded.encode(x)), in_memory.decode(in_memory.encode(x)))
    q = result.quality
    assert 0.3 < q.explained_variance <= 1.0 and 0 < q.mean_l0 < 64 and 0.0 <= q.dead_fraction < 1.0
    assert q.n_tokens > 0 and q.mse > 0
    assert measure_sae(reloaded, x).n_tokens == x.shape[0]
    assert len(result.losses) == 300 and result.losses[-1] < result.losses[0]


def test_another_seed_trains_other_weights(trained):
    m, result = trained
    other = train_sae(m, corpus(80), site=result.site, d_sae=64, steps=20, seed=1).sae
    assert not torch.equal(other.W_dec, result.sae.W_dec)


def test_steering_with_a_trained_feature_moves_the_next_token_logits_and_zero_moves_nothing(trained):
    m, result = trained
    prompts = corpus(6, seed=2)
    fa = encode_at(m, result.sae, prompts)
    feature = int(fa.tokens().gt(0).float().mean(0).argmax())  # the feature firing most often
    d = feature_direction(m, result.sae, feature)
    assert d.site == "blocks.13.resid_post"
    base = next_token_logits(m, prompts)
    zero = next_token_logits(m, prompts, interventions={d.site: Add(d.vector, alpha=0.0)})
    assert torch.equal(zero, base)
    alpha = 8.0 / d.norm  # 8 units along the feature's decoder row
    moved = next_token_logits(m, prompts, interventions={d.site: Add(d.vector, alpha=alpha)})
    assert (moved - base).abs().amax(1).min() > 1e-2
    again = encode_at(m, result.sae, prompts)  # reading is not steering: no hook is left behind
    assert torch.equal(again.acts, fa.acts)
    curve = sweep(m, prompts, at=d.site, direction=d, alphas=symmetric(alpha, steps=3),
                  score=scorer(logit_diff, "e", "t"))  # a sweep takes the feature direction as it is
    middle = logit_diff(m, prompts, "e", "t").double().numpy()
    assert np.allclose(curve.scores[:, 1], middle, atol=1e-5) and not np.allclose(curve.scores[:, 2], middle, atol=1e-3)


def test_a_jumprelu_sae_trains_saves_and_loads(tmp_path):
    m = tiny_model("gemma-2-2b")
    result = train_sae(m, corpus(40), site="blocks.6.resid_post", d_sae=32, steps=100, architecture="jumprelu",
                       path=tmp_path / "jr")
    loaded = load_sae(tmp_path / "jr")
    assert type(loaded).__name__ == "JumpReLUSAE" and loaded.cfg.metadata.hook_name == "blocks.5.hook_resid_post"
    assert torch.equal(loaded.threshold, result.sae.threshold)
    assert 0.0 <= result.quality.dead_fraction <= 1.0 and 0 < result.quality.mean_l0 < 32


def test_bad_training_input_is_refused():
    m = tiny_model("gemma-2-2b")
    with pytest.raises(DataError, match="at least 2 texts"):
        train_sae(m, ["one"], site="blocks.13.resid_post", d_sae=8)
    with pytest.raises(DataError, match="architecture"):
        train_sae(m, TEXTS, site="blocks.13.resid_post", d_sae=8, architecture="topk")
    with pytest.raises(SiteError):
        train_sae(m, TEXTS, site="blocks.13.attn.head1", d_sae=8)
    with pytest.raises(ShapeError, match=r"\[tokens, 32\]"):
        measure_sae(random_sae(32, 8, "blocks.12.hook_resid_post"), torch.zeros(4, 16))
