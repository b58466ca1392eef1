"""Conformance: on every architecture, each site reads the activation its definition names.

One forward per architecture records every point at every layer (heads at a few layers) and
is checked against the model's own ``output_hidden_states`` and its modules.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

from harness.models.architectures import LAYOUTS, layout_for, site_table
from harness.errors import SiteError
from harness.interventions import Record, intervene
from harness.models.loaded import pad_rows
from harness.models.sites import Site
from tests._support.tiny import ARCHITECTURES, tiny_model

TEXTS = ["the quick brown fox jumps over the lazy dog", "hi", "abc def"]
DECODER_ROWS = [[0, 50, 60, 70], [0, 80], [0, 90, 91]]
ATOL = 1e-5

# (stack, n_layers, n_heads, d_model, d_head) of each tiny model, as in the real configs
EXPECTED_TABLE = {
    "byt5-small": [("encoder", 12, 6, 32, 8), ("decoder", 4, 6, 32, 8)],
    "gpt2": [("blocks", 12, 12, 48, 4)],
    "qwen2.5-0.5b": [("blocks", 24, 14, 56, 4)],
    "gemma-2-2b": [("blocks", 26, 8, 32, 8)],
}


@dataclasses.dataclass
class Trace:
    recorded: dict[Site, torch.Tensor]
    hidden: dict[str, tuple[torch.Tensor, ...]]   # stack -> hidden_states
    head_in: dict[tuple[str, int], torch.Tensor]  # (stack, layer) -> o-projection input
    masks: dict[str, torch.Tensor]


def head_layers(n: int) -> list[int]:
    return sorted({1, n // 2, n})


@functools.lru_cache(maxsize=None)
def trace(arch: str) -> Trace:
    """Record every point at every layer (heads at a few layers) in one forward."""
    m = tiny_model(arch)
    ids, mask = pad_rows(m.tokenize(TEXTS), pad_id=m.pad_id)
    masks = {m.main_stack: mask}
    if m.is_encoder_decoder:
        dec_ids, dec_mask = pad_rows(DECODER_ROWS, pad_id=m.pad_id)
        masks["decoder"] = dec_mask
    plan: dict[Site, Record] = {}
    head_in: dict[tuple[str, int], torch.Tensor] = {}
    handles = []
    for shape in m.sites.stacks:
        for point in shape.points:
            if point != "head":
                plan.update((s, Record()) for s in m.sites.all_sites(point, shape.name))
        layout = m.layout.stack(shape.name)
        blocks = m.module.get_submodule(layout.blocks)
        for layer in head_layers(shape.n_layers):
            plan.update((Site(shape.name, layer, "head", head=h), Record()) for h in range(shape.n_heads))

            def keep(module, args, key=(shape.name, layer)):
                head_in[key] = args[0].detach().clone()

            handles.append(blocks[layer - 1].get_submodule(layout.head_in).register_forward_pre_hook(keep))
    try:
        with torch.no_grad(), intervene(m, plan, masks=masks) as run:
            if m.is_encoder_decoder:
                out = m.module(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids,
                               decoder_attention_mask=dec_mask, output_hidden_states=True)
                hidden = {"encoder": out.encoder_hidden_states, "decoder": out.decoder_hidden_states}
            else:
                out = m.module(input_ids=ids, attention_mask=mask, output_hidden_states=True)
                hidden = {"blocks": out.hidden_states}
    finally:
        for handle in handles:
            handle.remove()
    return Trace(run.recorded, hidden, head_in, masks)


def stacks_of(arch: str):
    return tiny_model(arch).sites.stacks


def close(a: torch.Tensor, b: torch.Tensor, atol: float = ATOL) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, rtol=0))


archs = pytest.mark.parametrize("arch", ARCHITECTURES)


# --------------------------------------------------------------------------- the site table


@archs
def test_the_site_table_has_the_stacks_layers_and_heads_of_the_real_model(arch):
    got = [(s.name, s.n_layers, s.n_heads, s.d_model, s.d_head) for s in stacks_of(arch)]
    assert got == EXPECTED_TABLE[arch]


@archs
def test_every_stack_offers_every_point_and_only_the_decoder_offers_cross_attention(arch):
    for shape in stacks_of(arch):
        assert set(shape.points) >= {"resid_pre", "resid_post", "attn_out", "mlp_out", "block_out", "head"}
        assert ("cross_attn_out" in shape.points) == (shape.name == "decoder")


@archs
def test_hidden_states_has_one_entry_per_resid_post_layer(arch):
    t = trace(arch)
    for shape in stacks_of(arch):
        assert len(t.hidden[shape.name]) == shape.n_layers + 1


# --------------------------------------------------------------------------- residual stream


@archs
def test_resid_post_at_every_layer_is_hidden_states_at_that_layer(arch):
    t = trace(arch)
    for shape in stacks_of(arch):
        for layer in range(shape.n_layers + 1):
            got = t.recorded[Site(shape.name, layer, "resid_post")]
            assert close(got, t.hidden[shape.name][layer]), f"{shape.name}.{layer}.resid_post"


@archs
def test_resid_pre_at_every_layer_is_hidden_states_of_the_layer_before(arch):
    t = trace(arch)
    for shape in stacks_of(arch):
        for layer in range(1, shape.n_layers + 1):
            got = t.recorded[Site(shape.name, layer, "resid_pre")]
            assert close(got, t.hidden[shape.name][layer - 1]), f"{shape.name}.{layer}.resid_pre"


@archs
def test_block_out_is_resid_post_before_the_last_block(arch):
    t = trace(arch)
    for shape in stacks_of(arch):
        for layer in range(1, shape.n_layers):
            assert close(t.recorded[Site(shape.name, layer, "block_out")], t.hidden[shape.name][layer])


@archs
def test_block_out_of_the_last_block_is_the_input_of_the_final_norm(arch):
    m, t = tiny_model(arch), trace(arch)
    for shape in stacks_of(arch):
        n = shape.n_layers
        raw = t.recorded[Site(shape.name, n, "block_out")]
        final_norm = m.module.get_submodule(m.layout.stack(shape.name).final_norm)
        with torch.no_grad():
            assert close(final_norm(raw), t.hidden[shape.name][n])
        assert not close(raw, t.hidden[shape.name][n], atol=1e-3)  # it is not the normed output


@archs
def test_a_block_adds_its_attention_and_mlp_outputs_to_its_input(arch):
    t = trace(arch)
    for shape in stacks_of(arch):
        for layer in range(1, shape.n_layers + 1):
            def at(point):
                return t.recorded[Site(shape.name, layer, point)]

            total = at("resid_pre") + at("attn_out") + at("mlp_out")
            if "cross_attn_out" in shape.points:
                total = total + at("cross_attn_out")
            assert close(at("block_out"), total, atol=1e-4), f"{shape.name}.{layer}"


@archs
def test_attention_and_mlp_outputs_are_not_zero(arch):
    t = trace(arch)
    for shape in stacks_of(arch):
        for point in ("attn_out", "mlp_out"):
            assert t.recorded[Site(shape.name, 1, point)].abs().max() > 1e-3


# --------------------------------------------------------------------------- heads


@archs
def test_the_heads_side_by_side_are_the_input_of_the_output_projection(arch):
    t = trace(arch)
    for shape in stacks_of(arch):
        for layer in head_layers(shape.n_layers):
            heads = [t.recorded[Site(shape.name, layer, "head", head=h)] for h in range(shape.n_heads)]
            assert all(h.shape[-1] == shape.d_head for h in heads)
            assert close(torch.cat(heads, -1), t.head_in[(shape.name, layer)], atol=0.0)


@archs
def test_a_head_site_reads_its_own_columns(arch):
    t = trace(arch)
    shape = stacks_of(arch)[0]
    layer, h = shape.n_layers, shape.n_heads - 1
    full = t.head_in[(shape.name, layer)]
    assert torch.equal(t.recorded[Site(shape.name, layer, "head", head=h)],
                       full[..., h * shape.d_head:(h + 1) * shape.d_head])


@pytest.mark.slow
@archs
def test_every_head_of_every_layer_is_its_slice_of_the_output_projection_input(arch):
    m, t = tiny_model(arch), trace(arch)
    ids, mask = pad_rows(m.tokenize(TEXTS), pad_id=m.pad_id)
    masks = dict(t.masks)
    for shape in stacks_of(arch):
        layout = m.layout.stack(shape.name)
        blocks = m.module.get_submodule(layout.blocks)
        seen: dict[int, torch.Tensor] = {}
        handles = [blocks[i].get_submodule(layout.head_in).register_forward_pre_hook(
            lambda mod, args, i=i: seen.__setitem__(i + 1, args[0].detach().clone())) for i in range(shape.n_layers)]
        try:
            with torch.no_grad(), intervene(m, {s: Record() for s in m.sites.all_sites("head", shape.name)},
                                            masks=masks) as run:
                if m.is_encoder_decoder:
                    dec_ids, dec_mask = pad_rows(DECODER_ROWS, pad_id=m.pad_id)
                    m.module(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids,
                             decoder_attention_mask=dec_mask)
                else:
                    m.module(input_ids=ids, attention_mask=mask)
        finally:
            for handle in handles:
                handle.remove()
        for layer in range(1, shape.n_layers + 1):
            heads = [run.recorded[Site(shape.name, layer, "head", head=h)] for h in range(shape.n_heads)]
            assert torch.equal(torch.cat(heads, -1), seen[layer]), f"{shape.name}.{layer}"


# --------------------------------------------------------------------------- the layout table


def test_every_supported_model_type_has_a_layout_with_its_own_architecture_name():
    assert set(LAYOUTS) == {"t5", "gpt2", "llama", "qwen2", "gemma2"}
    assert {LAYOUTS[k].architecture for k in ("llama", "qwen2")} == {"llama"}


@archs
def test_the_layout_resolves_for_the_model_type(arch):
    m = tiny_model(arch)
    assert layout_for(m.module) is m.layout


def test_a_layout_path_missing_from_the_model_is_an_error_naming_the_path():
    m = tiny_model("gpt2")
    stack = dataclasses.replace(m.layout.stacks[0], final_norm="transformer.ln_final")
    broken = dataclasses.replace(m.layout, stacks=(stack,))
    with pytest.raises(SiteError, match=r"module path 'transformer.ln_final' does not exist on this model"):
        site_table(m.module, broken, "tiny:gpt2")


def test_a_layout_asked_for_a_stack_it_lacks_lists_its_stacks():
    with pytest.raises(SiteError, match=r"`stack` must be one of \['encoder', 'decoder'\], got 'blocks'"):
        LAYOUTS["t5"].stack("blocks")
