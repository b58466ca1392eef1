"""Where each site's activation lives on a concrete model.

    resolve_hook(model, layout, table, site) -> Hook
    Hook                                    a module, "input" or "output", and how the site's
                                            activation sits in the tensor seen there
    NormScale                               the final norm's scale, derived from its input

The `SiteTable` that `resolve_hook` validates against is built by
`harness.models.site_table.site_table`.

A site's activation is ``[batch, pos, width]``. The tensor a hook sees may hold more: a head's
columns of the output projection's input, q, k or v inside a fused projection, chosen neurons,
or rows flattened to ``[batch * pos, d]`` (OPT's MLP). `Hook.view` takes the site's activation
out of that tensor and `Hook.put` writes an edited one back; whatever changes a site goes
through these two.

The columns of the fused layouts (``StackLayout.qkv_layout``), d = d_head, H = n_heads,
G = n_kv_heads, r = H // G:

    "thirds"    [q (H*d) | k (G*d) | v (G*d)]          GPT-2, MPT, Phi-3, multi-query BigCode/Falcon
    "per_head"  head h: [q | k | v] at h * 3d            GPT-NeoX, BLOOM (G = H)
    "grouped"   group g: [q_{g r} .. q_{g r + r - 1} | k_g | v_g] at g * (r + 2) d   Falcon (new)

A gated MLP whose gate and up projections are one module (``mlp_gate == mlp_pre``, Phi-3's
``gate_up_proj``) holds the gate in its first d_mlp columns and the up projection in the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from harness.errors import InterventionError, SiteError
from harness.models.pattern import attention_point
from harness.models.sites import HEAD_POINTS, PATTERN_POINTS, Site, SiteTable, StackShape

if TYPE_CHECKING:
    from harness.models.architectures import Layout, StackLayout

__all__ = ["Hook", "NormScale", "resolve_hook"]


@dataclass(frozen=True)
class NormScale:
    """The scale a norm divides its (centred) input by, TransformerLens' ``hook_scale``:
    ``sqrt(mean(x**2) + eps)`` for an RMSNorm, ``sqrt(var(x) + eps)`` for a LayerNorm (``kind``
    "rms" or "layernorm"), over the last dimension, computed in float32: ``[..., d] -> [..., 1]``.
    The norm's output is ``(x - mean if layernorm) / scale * weight (+ bias)``."""

    kind: str
    eps: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        if self.kind == "layernorm":
            x32 = x32 - x32.mean(-1, keepdim=True)
        return torch.sqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps).to(x.dtype)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(-1, keepdim=True) if self.kind == "layernorm" else x
        return centred / self(x)


@dataclass(frozen=True)
class Hook:
    """Where a site's activation is read or replaced.

    ``kind`` is "output" (a forward hook on ``module``) or "input" (a forward pre-hook: the
    first positional argument or ``hidden_states``). ``columns``: the site's columns of the last
    dimension of that tensor, in order (None: all of them); ``head`` and ``d_head`` are set for
    the per-head point ``attn.head{h}`` (its columns ``[head * d_head, (head + 1) * d_head)``).
    ``derive``: a read-only value computed from the tensor (the final norm's scale).
    """

    module: torch.nn.Module
    kind: str
    head: int | None = None
    d_head: int | None = None
    columns: tuple[int, ...] | None = None
    derive: NormScale | None = None

    def _select(self, device: torch.device) -> slice | torch.Tensor:
        cols = self.columns
        assert cols is not None
        if all(b == a + 1 for a, b in zip(cols, cols[1:])):
            return slice(cols[0], cols[-1] + 1)
        return torch.tensor(cols, dtype=torch.long, device=device)

    def view(self, full: torch.Tensor, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """The site's activation in `full`, the tensor the hook sees: ``[batch, pos, width]``.

        `rows` is ``(batch, pos)``: a 2-D ``[batch * pos, d]`` tensor (a module run on flattened
        rows) is viewed as ``[batch, pos, d]``. A tensor that fits no such shape is returned as
        it is, for the caller's shape check to report."""
        x = _unflatten(full, rows)
        if self.derive is not None:
            return self.derive(x)
        if self.columns is None:
            return x
        return x[..., self._select(x.device)]

    def put(self, full: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """`full` with the site's activation replaced by `act` (``[batch, pos, width]``), in
        `full`'s own shape; `full` itself is never modified.

        Raises `InterventionError` for a changed value of a read-only (derived) site."""
        if self.derive is not None:
            if torch.equal(act, self.view(full, tuple(act.shape[:2]))):
                return full
            raise InterventionError(
                "the final norm's scale (final_scale) can be recorded, not edited: the norm computes it "
                "from its input; edit the input instead (the final_norm_in site)"
            )
        if self.columns is None:
            return act.reshape(full.shape) if act.shape != full.shape else act
        x = _unflatten(full, tuple(act.shape[:2])).clone()
        x[..., self._select(x.device)] = act
        return x.reshape(full.shape)

    def whole(self, full: torch.Tensor, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """All of `full` as ``[batch, pos, D]`` (rows unflattened as in `view`), every column kept:
        with `column_mask`, what a check that an edit stayed inside its site compares."""
        return _unflatten(full, rows)

    def column_mask(self, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """``[width]`` bool: True at the site's columns of a tensor of last dimension `width`."""
        mask = torch.zeros(width, dtype=torch.bool, device=device)
        if self.columns is None:
            mask[:] = True
        else:
            mask[list(self.columns)] = True
        return mask


def _unflatten(full: torch.Tensor, rows: tuple[int, ...] | None) -> torch.Tensor:
    if rows is not None and len(rows) == 2 and full.dim() == 2 and full.shape[0] == rows[0] * rows[1] \
            and rows[1] > 0:
        return full.reshape(rows[0], rows[1], full.shape[-1])
    return full


def _get(model: torch.nn.Module, path: str) -> torch.nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError as err:
        raise SiteError(f"module path {path!r} does not exist on this model ({err})") from None


def _norm_scale(norm: torch.nn.Module, d_model: int) -> NormScale | None:
    """The `NormScale` of a LayerNorm or RMSNorm module, recognised by what it computes: on a
    random input (a seeded local generator) its output must be an affine function, per column,
    of the input normalised one of the two ways. None when neither fits or `eps` is unreadable."""
    eps = next((getattr(norm, a) for a in ("variance_epsilon", "eps", "epsilon")
                if isinstance(getattr(norm, a, None), (int, float))), None)
    if eps is None:
        return None
    param = next(iter(norm.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, d_model, generator=gen, dtype=torch.float64) + 3 * torch.randn(64, 1, generator=gen,
                                                                                      dtype=torch.float64)
    try:
        with torch.no_grad():  # .forward: hooks a user or an intervention installed on it stay silent
            y = norm.forward(x.to(device=device, dtype=dtype))
    except Exception:  # a norm that cannot run alone on [rows, d]
        return None
    if not isinstance(y, torch.Tensor) or y.shape != x.shape:
        return None
    y = y.detach().to("cpu", torch.float64)
    tol = 1e-4 if dtype in (torch.float32, torch.float64) else 3e-2
    for kind in ("rms", "layernorm"):
        rule = NormScale(kind, float(eps))
        n = rule.normalise(x)
        nc, yc = n - n.mean(0), y - y.mean(0)
        slope = (nc * yc).sum(0) / (nc * nc).sum(0).clamp_min(1e-30)
        residual = yc - slope * nc
        if residual.norm() <= tol * max(float(yc.norm()), 1e-12):
            return rule
    return None


def resolve_hook(model: torch.nn.Module, layout: "Layout", table: SiteTable, site: Site) -> Hook:
    """The `Hook` of `site` (validated against `table`) on `model`; see the module docstring."""
    site = table.validate(site)
    stack = layout.stack(site.stack)
    shape = table.stack(site.stack)
    blocks = _get(model, stack.blocks)
    point = site.point
    if point == "resid_post":
        if site.layer == 0:
            return Hook(blocks[0], "input")
        if site.layer == shape.n_layers:
            return Hook(_get(model, stack.final_norm), "output")
        return Hook(blocks[site.layer - 1], "output")
    if point == "final_norm_in":
        return Hook(_get(model, stack.final_norm), "input")
    if point == "final_scale":
        norm = _get(model, stack.final_norm)
        return Hook(norm, "input", derive=_norm_scale(norm, shape.d_model))
    block = blocks[site.layer - 1]
    plain = {"resid_pre": None, "block_out": None, "attn_out": stack.attn_out, "mlp_out": stack.mlp_out,
             "cross_attn_out": stack.cross_attn_out}
    if point in plain:
        path = plain[point]
        return Hook(block if path is None else _get(block, path), "input" if point == "resid_pre" else "output")
    if point == "resid_mid":
        return Hook(_get(block, stack.resid_mid), "input")  # type: ignore[arg-type]
    if point == "head":
        d = shape.d_head
        return Hook(_get(block, stack.head_in), "input", head=site.head, d_head=d,
                    columns=tuple(range(site.head * d, (site.head + 1) * d)))  # type: ignore[operator]
    if point in PATTERN_POINTS:  # the attention module: the one whose output projection is head_in
        attention = _get(block, stack.head_in.rpartition(".")[0]) if "." in stack.head_in else block
        return Hook(attention_point(model, attention, point.rpartition(".")[2], site.head, str(site)),  # type: ignore[arg-type]
                    "output")
    if point in HEAD_POINTS:
        return _qkv_hook(block, stack, shape, site)
    return _mlp_hook(block, stack, shape, site)


def _qkv_hook(block: torch.nn.Module, stack: "StackLayout", shape: StackShape, site: Site) -> Hook:
    which = site.point[-1]
    d, n_heads, n_kv = shape.d_head, shape.n_heads, shape.kv_heads
    heads = range(shape.heads_of(site.point)) if site.head is None else [site.head]
    if stack.qkv is None:
        module = _get(block, getattr(stack, which))
        columns = None if site.head is None else tuple(range(site.head * d, (site.head + 1) * d))
        return Hook(module, "output", columns=columns)
    if stack.qkv_layout == "thirds":
        base = {"q": 0, "k": n_heads * d, "v": (n_heads + n_kv) * d}[which]
        starts = [base + h * d for h in heads]
    elif stack.qkv_layout == "per_head":
        starts = [(3 * h + "qkv".index(which)) * d for h in heads]
    else:  # "grouped"
        r = n_heads // n_kv
        if which == "q":
            starts = [((h // r) * (r + 2) + h % r) * d for h in heads]
        else:
            starts = [(g * (r + 2) + r + (which == "v")) * d for g in heads]
    columns = tuple(c for s in starts for c in range(s, s + d))
    return Hook(_get(block, stack.qkv), "output", columns=columns)


def _mlp_hook(block: torch.nn.Module, stack: "StackLayout", shape: StackShape, site: Site) -> Hook:
    d_mlp = int(shape.d_mlp)  # type: ignore[arg-type]
    if site.point == "mlp_post":
        module, kind, offset = _get(block, stack.mlp_post), "input", 0  # type: ignore[arg-type]
        fused = False
    else:
        gated = stack.mlp_gate is not None
        fused = gated and stack.mlp_gate == stack.mlp_pre  # one gate_up projection: [gate | up]
        path = stack.mlp_gate if site.point == "mlp_pre" and gated else stack.mlp_pre
        module, kind = _get(block, path), "output"  # type: ignore[arg-type]
        offset = d_mlp if site.point == "mlp_pre_linear" and fused else 0
    if site.units is None and not fused:
        return Hook(module, kind)
    units = range(d_mlp) if site.units is None else site.units
    return Hook(module, kind, columns=tuple(offset + u for u in units))
