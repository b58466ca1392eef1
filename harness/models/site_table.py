"""What a concrete model offers: its `SiteTable`, read off the model against its layout.

    site_table(model, layout, name)   the model's `SiteTable`: every path of the layout checked,
                                      the widths (heads, key/value heads, d_mlp) read off the
                                      modules, the points it lacks and why (`StackShape.lacks`)

Widths come from the modules the layout names wherever those are linear layers (``nn.Linear``
or GPT-2's ``Conv1D``), so a site's width is what its hook sees (`harness.models.site_hooks`):
a fused q/k/v projection's width must fit its ``qkv_layout``, a gated MLP's gate and up
projections the input width of its down projection. A point the stack cannot offer is left
out with the reason, shown in the error for such a site.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from harness.models.pattern import why_no_attention_points
from harness.models.site_hooks import _get, _norm_scale
from harness.models.sites import HEAD_POINTS, PATTERN_POINTS, UNIT_POINTS, SiteTable, StackShape

if TYPE_CHECKING:
    from harness.models.architectures import Layout, StackLayout

__all__ = ["site_table"]

_BASE_POINTS = ("resid_pre", "resid_post", "attn_out", "mlp_out", "block_out", "head")


def _out_width(module: torch.nn.Module) -> int | None:
    """The output width of a linear layer (``nn.Linear`` or GPT-2's ``Conv1D``), else None."""
    for attr in ("out_features", "nf"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    return None


def _in_width(module: torch.nn.Module) -> int | None:
    for attr in ("in_features", "nx"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    return None


def site_table(model: torch.nn.Module, layout: "Layout", model_name: str) -> "SiteTable":
    """Build the `SiteTable` of a concrete model, checking every path of the layout exists.

    Widths come from the config (heads, d_head, d_model) and, where the layout names the
    modules, from those modules (key/value heads, d_mlp), so a site's width is what its hook
    sees. A point the stack cannot offer is left out with the reason (`StackShape.lacks`).

    Raises `SiteError` for a path of the stack itself (blocks, final norm, attn_out, head_in,
    mlp_out, cross_attn_out) that the model lacks, naming the path; a missing optional path
    (q/k/v, the MLP projections, resid_mid) only leaves its points out, saying why.
    """
    config = model.config
    n_heads = int(getattr(config, layout.n_heads_attr))
    d_model = int(getattr(config, "d_model", None) or getattr(config, "hidden_size", None)
                  or getattr(config, "n_embd"))
    head_dim = getattr(config, layout.head_dim_attr, None) if layout.head_dim_attr else None
    d_head = int(head_dim) if head_dim else d_model // n_heads
    shapes = []
    for stack in layout.stacks:
        blocks = _get(model, stack.blocks)
        final_norm = _get(model, stack.final_norm)
        for block in blocks:
            for path in (stack.attn_out, stack.head_in, stack.mlp_out, stack.cross_attn_out):
                if path is not None:
                    _get(block, path)
        points = list(_BASE_POINTS)
        lacks: list[tuple[str, str]] = []
        if stack.cross_attn_out is not None:
            points.append("cross_attn_out")
        resid_mid = getattr(stack, "resid_mid", None)
        why = _why_no_resid_mid(layout) if resid_mid is None else _absent(blocks, [resid_mid])
        if why is None:
            points.append("resid_mid")
        else:
            lacks.append(("resid_mid", why))
        block = blocks[0] if len(blocks) else None
        qkv_paths = [getattr(stack, n, None) for n in ("q", "k", "v", "qkv")]
        why = _absent(blocks, [p for p in qkv_paths if p is not None])
        n_kv, why = (None, why) if why else _kv_heads(config, layout, stack, block, n_heads, d_head)
        if why is None:
            points.extend(HEAD_POINTS)
        else:
            lacks.extend((p, why) for p in HEAD_POINTS)
        mlp_paths = [getattr(stack, n, None) for n in ("mlp_pre", "mlp_gate", "mlp_post")]
        why = _absent(blocks, [p for p in mlp_paths if p is not None])
        d_mlp, mlp_points, mlp_lacks = (None, [], [(p, why) for p in UNIT_POINTS]) if why else \
            _mlp(config, layout, stack, block)
        points.extend(mlp_points)
        lacks.extend(mlp_lacks)
        why = why_no_attention_points(model)
        if why is None:
            points.extend(PATTERN_POINTS)
        else:
            lacks.extend((p, why) for p in PATTERN_POINTS)
        points.append("final_norm_in")
        if _norm_scale(final_norm, d_model) is not None:
            points.append("final_scale")
        else:
            lacks.append(("final_scale", f"the final norm {type(final_norm).__name__} is neither a LayerNorm nor an "
                          "RMSNorm with a readable `eps` (checked on a random input); record final_norm_in and "
                          "compute the scale from it"))
        shapes.append(StackShape(stack.name, len(blocks), n_heads, d_model, d_head, tuple(points),
                                 n_kv_heads=n_kv, d_mlp=d_mlp, lacks=tuple(lacks)))
    return SiteTable(model_name, tuple(shapes))


def _absent(blocks: torch.nn.Module, paths: list[str]) -> str | None:
    """Why the optional module `paths` cannot serve (one missing from some block), or None."""
    for i, block in enumerate(blocks):
        for path in paths:
            try:
                block.get_submodule(path)
            except AttributeError:
                return (f"module path {path!r} of the architecture table entry does not exist in block {i} of "
                        f"this model (e.g. a checkpoint of another MLP or attention variant)")
    return None


def _why_no_resid_mid(layout: "Layout") -> str:
    if getattr(layout, "parallel", False):
        return (f"blocks of {layout.architecture} are parallel (attention and MLP both read resid_pre and "
                "add their outputs to it together), so no residual lies between them; use resid_pre, "
                "attn_out or mlp_out")
    return (f"the architecture table entry of {layout.architecture} names no resid_mid module for this stack "
            "(StackLayout.resid_mid is None)")


def _kv_heads(config: Any, layout: "Layout", stack: "StackLayout", block: torch.nn.Module | None,
              n_heads: int, d_head: int) -> tuple[int | None, str | None]:
    """The key/value head count (None: as many as heads), or why q/k/v sites are not offered."""
    attr = getattr(layout, "n_kv_heads_attr", None)
    declared = getattr(config, attr, None) if attr else None
    n_kv = int(declared) if declared else n_heads
    q, k, qkv = getattr(stack, "q", None), getattr(stack, "k", None), getattr(stack, "qkv", None)
    if qkv is None and None in (q, k, getattr(stack, "v", None)):
        return None, (f"the architecture table entry of {layout.architecture} names no query/key/value "
                      "projections for this stack (StackLayout q, k and v, or qkv, are None)")
    if block is None:
        return n_kv, None
    if qkv is not None:
        kind, width = stack.qkv_layout, _out_width(_get(block, qkv))
        if kind == "per_head":
            if declared and n_kv != n_heads:
                return None, (f"qkv_layout 'per_head' has one key and value per head, but the config gives "
                              f"{n_kv} key/value heads for {n_heads} heads")
            n_kv = n_heads
        elif not declared and width is not None and width % d_head == 0 and (width // d_head - n_heads) % 2 == 0:
            n_kv = max((width // d_head - n_heads) // 2, 1)  # e.g. multi-query: read off the width
        if kind == "grouped" and n_heads % n_kv:
            return None, f"qkv_layout 'grouped' needs n_heads ({n_heads}) to be a multiple of n_kv_heads ({n_kv})"
        want = (n_heads + 2 * n_kv) * d_head
        if width is not None and width != want:
            return None, (f"the fused projection {qkv!r} outputs {width} columns, not the {want} of its layout "
                          f"{kind!r} with {n_heads} heads and {n_kv} key/value heads of width {d_head}")
        return n_kv, None
    q_width = _out_width(_get(block, q))
    k_width = _out_width(_get(block, k)) if k is not None else None
    if k_width is not None and not declared and k_width != n_kv * d_head and k_width % d_head == 0:
        n_kv = k_width // d_head  # e.g. a multi-query model whose config has no key/value head count
    if q_width is not None and q_width != n_heads * d_head or k_width is not None and k_width != n_kv * d_head:
        return None, (f"the projections {q!r} / {k!r} output {q_width} / {k_width} columns, not "
                      f"{n_heads} x {d_head} / {n_kv} x {d_head} (heads x d_head)")
    return n_kv, None


def _mlp(config: Any, layout: "Layout", stack: "StackLayout", block: torch.nn.Module | None
         ) -> tuple[int | None, list[str], list[tuple[str, str]]]:
    """d_mlp, the MLP points offered and those lacked (with why)."""
    pre, gate, post = (getattr(stack, n, None) for n in ("mlp_pre", "mlp_gate", "mlp_post"))
    if pre is None or post is None:
        why = (f"the architecture table entry of {layout.architecture} names no MLP projections for this stack "
               "(StackLayout mlp_pre / mlp_post are None); a sparse mixture-of-experts block has no single MLP "
               "of one width d_mlp (each expert has its own, over the tokens routed to it)")
        return None, [], [(p, why) for p in UNIT_POINTS]
    d_mlp = _in_width(_get(block, post)) if block is not None else None
    if d_mlp is None:
        attr = getattr(layout, "d_mlp_attr", None)
        value = getattr(config, attr, None) if attr else None
        d_mlp = int(value) if value else None
    if d_mlp is None:
        why = (f"the MLP width of {layout.architecture} is unknown: {post!r} is no linear layer and the "
               "config has no `d_mlp_attr` value")
        return None, [], [(p, why) for p in UNIT_POINTS]
    if block is not None:
        fused = gate is not None and gate == pre
        for path in {pre, gate} - {None}:
            width = _out_width(_get(block, path))
            want = 2 * d_mlp if fused else d_mlp
            if width is not None and width != want:
                why = (f"{path!r} outputs {width} columns, not the {want} the MLP width d_mlp = {d_mlp} "
                       f"(the input of {post!r}) gives")
                return None, [], [(p, why) for p in UNIT_POINTS]
    if gate is None:
        return d_mlp, ["mlp_pre", "mlp_post"], [(
            "mlp_pre_linear", f"the MLP of {layout.architecture} is not gated: mlp_pre is its only "
            "pre-activation (TransformerLens' hook_pre_linear exists only for gated MLPs)")]
    return d_mlp, list(UNIT_POINTS), []
