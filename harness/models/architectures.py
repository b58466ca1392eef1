"""One small declarative table per architecture: abstract sites -> module paths.

    StackLayout     where one stack's blocks, final norm and per-block points live
    Layout          the stacks of one architecture
    LAYOUTS         model_type -> Layout (t5, gpt2, and the Llama layout of llama/qwen2/gemma2)
    layout_for      the Layout of a loaded Hugging Face model, or a clear error
    resolve_hook    Site -> (module, "input"|"output", head slice) on a concrete model

Paths inside a block are relative to the block module. "attn_out" names the module whose
output is what attention adds to the residual (for Gemma-2 that is the post-attention norm,
not o_proj); "head_in" the module whose *input* is the concatenation of the heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.errors import SiteError
from harness.models.sites import Site, SiteTable, StackShape

__all__ = ["StackLayout", "Layout", "LAYOUTS", "layout_for", "resolve_hook", "site_table", "Hook"]


@dataclass(frozen=True)
class StackLayout:
    name: str
    blocks: str
    final_norm: str
    attn_out: str
    head_in: str
    mlp_out: str
    cross_attn_out: str | None = None


@dataclass(frozen=True)
class Layout:
    architecture: str
    stacks: tuple[StackLayout, ...]
    n_heads_attr: str
    head_dim_attr: str | None  # None: d_model // n_heads

    def stack(self, name: str) -> StackLayout:
        for s in self.stacks:
            if s.name == name:
                return s
        raise SiteError(f"`stack` must be one of {[s.name for s in self.stacks]}, got {name!r}")


_T5 = Layout(
    architecture="t5",
    stacks=(
        StackLayout("encoder", "encoder.block", "encoder.final_layer_norm",
                    attn_out="layer.0.SelfAttention.o", head_in="layer.0.SelfAttention.o",
                    mlp_out="layer.1.DenseReluDense"),
        StackLayout("decoder", "decoder.block", "decoder.final_layer_norm",
                    attn_out="layer.0.SelfAttention.o", head_in="layer.0.SelfAttention.o",
                    mlp_out="layer.2.DenseReluDense", cross_attn_out="layer.1.EncDecAttention.o"),
    ),
    n_heads_attr="num_heads",
    head_dim_attr="d_kv",
)
_GPT2 = Layout(
    architecture="gpt2",
    stacks=(StackLayout("blocks", "transformer.h", "transformer.ln_f",
                        attn_out="attn.c_proj", head_in="attn.c_proj", mlp_out="mlp"),),
    n_heads_attr="n_head",
    head_dim_attr=None,
)
_LLAMA = Layout(
    architecture="llama",
    stacks=(StackLayout("blocks", "model.layers", "model.norm",
                        attn_out="self_attn.o_proj", head_in="self_attn.o_proj", mlp_out="mlp"),),
    n_heads_attr="num_attention_heads",
    head_dim_attr="head_dim",
)
_GEMMA2 = Layout(
    architecture="gemma2",
    stacks=(StackLayout("blocks", "model.layers", "model.norm",
                        attn_out="post_attention_layernorm", head_in="self_attn.o_proj",
                        mlp_out="post_feedforward_layernorm"),),
    n_heads_attr="num_attention_heads",
    head_dim_attr="head_dim",
)

LAYOUTS: dict[str, Layout] = {
    "t5": _T5,
    "gpt2": _GPT2,
    "llama": _LLAMA,
    "qwen2": _LLAMA,
    "gemma2": _GEMMA2,
}


def layout_for(model: torch.nn.Module) -> Layout:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in LAYOUTS:
        raise SiteError(
            f"architecture `model_type` {model_type!r} has no site table; supported are "
            f"{sorted(LAYOUTS)} (add a Layout to harness/models/architectures.py)"
        )
    return LAYOUTS[model_type]


def _get(model: torch.nn.Module, path: str) -> torch.nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError as err:
        raise SiteError(f"module path {path!r} does not exist on this model ({err})") from None


def site_table(model: torch.nn.Module, layout: Layout, model_name: str) -> SiteTable:
    """Build the `SiteTable` of a concrete model, checking every path of the layout exists."""
    config = model.config
    n_heads = int(getattr(config, layout.n_heads_attr))
    d_model = int(getattr(config, "d_model", None) or getattr(config, "hidden_size", None)
                  or getattr(config, "n_embd"))
    head_dim = getattr(config, layout.head_dim_attr, None) if layout.head_dim_attr else None
    d_head = int(head_dim) if head_dim else d_model // n_heads
    shapes = []
    for stack in layout.stacks:
        blocks = _get(model, stack.blocks)
        _get(model, stack.final_norm)
        for block in blocks:
            for path in (stack.attn_out, stack.head_in, stack.mlp_out, stack.cross_attn_out):
                if path is not None:
                    _get(block, path)
        points = ["resid_pre", "resid_post", "attn_out", "mlp_out", "block_out", "head"]
        if stack.cross_attn_out is not None:
            points.append("cross_attn_out")
        shapes.append(StackShape(stack.name, len(blocks), n_heads, d_model, d_head, tuple(points)))
    return SiteTable(model_name, tuple(shapes))


@dataclass(frozen=True)
class Hook:
    """Where a site's activation is read or replaced.

    ``kind`` is "output" (a forward hook on ``module``) or "input" (a forward pre-hook: the
    first positional argument or ``hidden_states``). ``head`` selects columns
    ``[head * d_head, (head + 1) * d_head)`` of that tensor.
    """

    module: torch.nn.Module
    kind: str
    head: int | None = None
    d_head: int | None = None


def resolve_hook(model: torch.nn.Module, layout: Layout, table: SiteTable, site: Site) -> Hook:
    site = table.validate(site)
    stack = layout.stack(site.stack)
    shape = table.stack(site.stack)
    blocks = _get(model, stack.blocks)
    if site.point == "resid_post":
        if site.layer == 0:
            return Hook(blocks[0], "input")
        if site.layer == shape.n_layers:
            return Hook(_get(model, stack.final_norm), "output")
        return Hook(blocks[site.layer - 1], "output")
    block = blocks[site.layer - 1]
    if site.point == "resid_pre":
        return Hook(block, "input")
    if site.point == "block_out":
        return Hook(block, "output")
    if site.point == "attn_out":
        return Hook(_get(block, stack.attn_out), "output")
    if site.point == "mlp_out":
        return Hook(_get(block, stack.mlp_out), "output")
    if site.point == "cross_attn_out":
        return Hook(_get(block, stack.cross_attn_out), "output")  # type: ignore[arg-type]
    if site.point == "head":
        return Hook(_get(block, stack.head_in), "input", head=site.head, d_head=shape.d_head)
    raise SiteError(f"point {site.point!r} has no hook rule")  # unreachable after validate
