"""Neuron and query/key/value patching maps: each cell equals a full forward of the corrupt prompts
with raw torch hooks on the Hugging Face modules writing the clean run's neuron or head into the
module's tensor (no harness code in the oracle), on tiny random GPT-2 (fused q/k/v, ungated MLP),
Llama (grouped-query attention, gated MLP), Phi-3 (fused q/k/v and gate/up under grouped-query
attention), GPT-NeoX and Falcon (per-head and grouped fused q/k/v) and OPT (an MLP run on
``[batch * pos, d]``), with right-padded pairs of three lengths;
clear errors for bad arguments; no hook left attached."""

from __future__ import annotations

import re

import pytest
import torch

from harness.errors import DataError, SiteError
from harness.measures.patching import answer_logit_diff
from harness.measures.patching_units import SitePatchMap, patch_neuron_map, patch_qkv_map
from harness.models.loaded import LoadedModel
from harness.models.sites import Site
from tests.harness.models.test_site_points import OTHER, ROWS, model, oracle_forward

CLEAN, CORRUPT = OTHER, ROWS          # token ids; pair i of one length (6, 3, 5 tokens)
RIGHT, WRONG = [3, 7, 11], [20, 25, 30]
METRIC = answer_logit_diff(RIGHT, WRONG)
ATOL = 1e-5


def hook_count(m: LoadedModel) -> int:
    return sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks) for mod in m.module.modules())


def oracle_cell(arch: str, site: Site, clean_value: torch.Tensor, at: str) -> torch.Tensor:
    """The metric of each pair with `site` of the corrupt prompts replaced by `clean_value`
    (``[pairs, pos, w]``, read by the oracle off the clean forward) at the last real token or at
    every real position: one full forward with raw hooks."""
    lengths = torch.tensor([len(r) for r in CORRUPT])

    def edit(view, real):
        on = real.clone() if at == "all" else torch.zeros_like(real)
        if at == "last":
            on[torch.arange(len(lengths)), lengths - 1] = True
        return torch.where(on[..., None], clean_value, view)

    _, logits = oracle_forward(arch, CORRUPT, {site: edit})
    last = logits[torch.arange(len(lengths)), lengths - 1]
    rows = torch.arange(len(lengths))
    return last[rows, torch.tensor(RIGHT)] - last[rows, torch.tensor(WRONG)]


def assert_equals_the_oracle(arch: str, pm: SitePatchMap, at: str) -> None:
    sites = [pm.site(r, c) for r in range(len(pm.layers)) for c in range(len(pm.columns))]
    clean_values, _ = oracle_forward(arch, CLEAN, reads=tuple(sites))
    worst = 0.0
    for r in range(len(pm.layers)):
        for c in range(len(pm.columns)):
            site = pm.site(r, c)
            want = oracle_cell(arch, site, clean_values[site], at)
            worst = max(worst, float((pm.values[:, r, c] - want).abs().max()))
    assert worst < ATOL, worst


NEURON_CASES = [("gpt2", "mlp_post", "last"), ("gpt2", "mlp_pre", "all"), ("llama", "mlp_pre_linear", "last"),
                ("llama", "mlp_post", "all"), ("opt", "mlp_post", "last"), ("opt", "mlp_pre", "all"),
                ("phi3", "mlp_pre_linear", "all"), ("gpt_neox", "mlp_post", "last"), ("gpt_neox", "mlp_pre", "all")]


@pytest.mark.parametrize("arch,point,at", NEURON_CASES, ids=[f"{a}-{p}-{t}" for a, p, t in NEURON_CASES])
def test_neuron_map_equals_a_per_cell_oracle(arch, point, at):
    m = model(arch)
    before = hook_count(m)
    pm = patch_neuron_map(m, CLEAN, CORRUPT, METRIC, point=point, at=at, batch_size=37)
    d_mlp = 4 * 32 if arch == "gpt2" else 48
    assert pm.values.shape == (3, 2, d_mlp)
    assert pm.columns == tuple(range(d_mlp)) and pm.layers == [1, 2] and pm.column_kind == "neuron"
    assert str(pm.site(1, 45)) == f"blocks.2.{point}.neuron45"
    assert not torch.allclose(pm.values, pm.corrupt[:, None, None])   # some neuron moves the metric
    assert_equals_the_oracle(arch, pm, at)
    assert hook_count(m) == before


def test_neuron_map_of_some_layers_and_units_takes_them_in_the_order_given():
    m = model("llama")
    full = patch_neuron_map(m, CLEAN, CORRUPT, METRIC)
    some = patch_neuron_map(m, CLEAN, CORRUPT, METRIC, layers=[2], units=[40, 3, 17], batch_size=2)
    assert some.values.shape == (3, 1, 3) and some.layers == [2] and some.columns == (40, 3, 17)
    assert str(some.site(0, 0)) == "blocks.2.mlp_post.neuron40"
    torch.testing.assert_close(some.values[:, 0], full.values[:, 1, [40, 3, 17]], atol=1e-5, rtol=0)
    torch.testing.assert_close(some.clean, full.clean)


QKV_CASES = [("gpt2", "q", "all"), ("gpt2", "k", "last"), ("gpt2", "v", "all"), ("llama", "q", "last"),
             ("llama", "k", "all"), ("llama", "v", "all"), ("llama", "v", "last"), ("phi3", "k", "all"),
             ("gpt_neox", "q", "all"), ("gpt_neox", "k", "last"), ("gpt_neox", "v", "all"), ("falcon", "q", "all"),
             ("falcon", "k", "last")]


@pytest.mark.parametrize("arch,which,at", QKV_CASES, ids=[f"{a}-{w}-{t}" for a, w, t in QKV_CASES])
def test_qkv_map_equals_a_per_cell_oracle(arch, which, at):
    m = model(arch)
    before = hook_count(m)
    pm = patch_qkv_map(m, CLEAN, CORRUPT, METRIC, which=which, at=at, batch_size=3)
    heads = 2 if which in "kv" and arch in ("llama", "phi3", "falcon") else 4   # key/value heads under GQA
    assert pm.values.shape == (3, 2, heads) and pm.columns == tuple(range(heads))
    assert pm.column_kind == ("query head" if which == "q" else "key/value head")
    assert str(pm.site(0, heads - 1)) == f"blocks.1.attn.{which}.head{heads - 1}"
    assert not torch.allclose(pm.values, pm.corrupt[:, None, None])
    assert_equals_the_oracle(arch, pm, at)
    assert hook_count(m) == before


def test_patching_the_corrupt_run_with_itself_changes_nothing():
    m = model("llama")
    pm = patch_neuron_map(m, CORRUPT, CORRUPT, METRIC, at="all")
    assert torch.equal(pm.values, pm.corrupt[:, None, None].expand_as(pm.values))
    qm = patch_qkv_map(m, CORRUPT, CORRUPT, METRIC, which="k")
    assert torch.equal(qm.values, qm.corrupt[:, None, None].expand_as(qm.values))


def test_bad_arguments_are_one_clear_error_naming_the_argument_and_the_fix():
    m = model("llama")
    with pytest.raises(SiteError, match=re.escape(
            "`units` must be neuron indices in 0..47 for mlp_post of blocks of tiny:llama (d_mlp = 48), got 48")):
        patch_neuron_map(m, CLEAN, CORRUPT, METRIC, units=[3, 48])
    with pytest.raises(DataError, match=re.escape("`units` must be a list of neuron indices, got the single "
                                                  "index 5; write units=[5]")):
        patch_neuron_map(m, CLEAN, CORRUPT, METRIC, units=5)
    with pytest.raises(DataError, match=re.escape(
            "`point` must be one of ['mlp_pre', 'mlp_pre_linear', 'mlp_post'] (the MLP points that have neurons), "
            "got 'attn_out'; patch what the MLP adds to the residual with patch_layer_map")):
        patch_neuron_map(m, CLEAN, CORRUPT, METRIC, point="attn_out")
    with pytest.raises(SiteError, match="the MLP of gpt2 is not gated"):
        patch_neuron_map(model("gpt2"), CLEAN, CORRUPT, METRIC, point="mlp_pre_linear")
    with pytest.raises(DataError, match=re.escape("`which` must be 'q' (queries), 'k' (keys) or 'v' (values), "
                                                  "got 'x'")):
        patch_qkv_map(m, CLEAN, CORRUPT, METRIC, which="x")
    with pytest.raises(DataError, match=re.escape("`layers` must be distinct block numbers in 1..2 of tiny:llama "
                                                  "(blocks are counted from 1), got [0]: 0 is not one")):
        patch_qkv_map(m, CLEAN, CORRUPT, METRIC, layers=[0])
    with pytest.raises(DataError, match="`at` must be 'all'"):
        patch_neuron_map(m, CLEAN, CORRUPT, METRIC, at="first")
    assert hook_count(m) == 0


def test_a_mixture_of_experts_mlp_has_no_neuron_map_and_says_why():
    import transformers as tf

    from harness.models.architectures import architectures
    from harness.models.site_table import site_table

    config = tf.MixtralConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                              num_key_value_heads=2, num_local_experts=2, num_experts_per_tok=1,
                              max_position_embeddings=32, vocab_size=64, pad_token_id=0)
    module = tf.AutoModelForCausalLM.from_config(config).eval()
    m = LoadedModel(name="tiny:mixtral", spec="tiny:mixtral", module=module, tokenizer=None,
                    layout=architectures()["mixtral"], sites=site_table(module, architectures()["mixtral"],
                                                                         "tiny:mixtral"), fingerprint="mixtral")
    with pytest.raises(SiteError, match=r"`point` 'mlp_post' is no site of blocks of tiny:mixtral: "):
        patch_neuron_map(m, CLEAN, CORRUPT, METRIC)
    assert hook_count(m) == 0


def test_a_chunk_of_many_neurons_patches_their_activation_with_one_hook(monkeypatch):
    """The cells of one chunk at d_mlp neuron sites of one ``mlp_post`` are one edit there, not
    one hook per neuron (each of which would copy the whole activation)."""
    m = model("gpt2")
    calls = []
    for name in ("register_forward_hook", "register_forward_pre_hook"):
        original = getattr(torch.nn.Module, name)

        def counting(self, *args, _original=original, **kwargs):
            calls.append(type(self).__name__)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.nn.Module, name, counting)
    pm = patch_neuron_map(m, CLEAN, CORRUPT, METRIC, at="all", batch_size=64)
    cells = int((pm.values != pm.corrupt[:, None, None]).sum())
    assert cells > 200                      # 3 pairs x 2 blocks x 128 neurons, nearly all replayed
    assert len(calls) < 40, len(calls)      # recording and capture, then one hook per chunk
