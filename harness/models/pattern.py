"""Attention scores and pattern, one head at a time, as points that hooks can read and edit.

    attention_point(model, attention, which, head, label)   the `AttentionPoint` of one head
    AttentionPoint          an identity module that one head's scores or pattern passes through
    why_no_attention_points(model)    None, or why the model's attention cannot be opened up
    HARNESS_ATTENTION       the name of the attention implementation registered with transformers

Fused attention kernels never form the scores or the pattern. Most decoder families in
transformers compute attention through the function its ``AttentionInterface`` holds under
``config._attn_implementation``; this module registers one more there, ``harness_eager``, that
computes exactly the ``eager`` function (GQA's shared key/value heads repeated, scores
``q k^T * scaling``, soft-capped where the model passes ``softcap``, plus the additive mask;
pattern the softmax in float32 cast to the query's dtype; dropout only in training) and passes
each head's scores and pattern, ``[batch, query, key]``, through that head's `AttentionPoint`
when hooks are attached to it.

The points are never attached to the model: ``model.named_modules()``, its state dict and its
hooks stay as they were. Registering the first hook on any point of a model switches the model
to ``harness_eager`` (``set_attn_implementation``); removing the last one puts the model's own
implementation (e.g. ``sdpa``) back, so with no hooks attached the model runs as it did.

    scores      after scaling, soft-capping and the mask: a masked key holds the mask's large
                negative value (TransformerLens' ``hook_attn_scores`` after its causal mask)
    pattern     the softmax of the scores; each query's row sums to 1 over the keys the mask
                allows, 0 elsewhere (TransformerLens' ``hook_pattern``)

An edit of a pattern row must leave it a distribution over the allowed keys: an edited row whose
sum over the allowed keys is off 1 by more than ``1e-4`` (``3e-2`` in half precision), or that
puts more than that on a masked key, raises `InterventionError` naming the site, the row and the
sum; the harness does not renormalise it (an edit of the scores is renormalised by the softmax).
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import torch

from harness.errors import InterventionError, ShapeError, SiteError

__all__ = ["HARNESS_ATTENTION", "AttentionPoint", "attention_point", "why_no_attention_points"]

HARNESS_ATTENTION = "harness_eager"
WHICH = ("scores", "pattern")

# attention module -> {(which, head): point}
_POINTS: "weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple[str, int], AttentionPoint]]" = \
    weakref.WeakKeyDictionary()
# model -> [hooks attached to its points, the implementation to put back]
_SWITCHED: "weakref.WeakKeyDictionary[torch.nn.Module, list]" = weakref.WeakKeyDictionary()
_REGISTERED = False

# keyword arguments of the attention interface that change what eager attention computes and
# that this implementation does not reproduce
_UNSUPPORTED = ("s_aux", "sinks", "head_mask", "position_bias", "alibi")


class AttentionPoint(torch.nn.Module):
    """An identity module: one head's scores or pattern, ``[batch, query, key]``, pass through it
    while a hook is attached to it (see the module docstring). `label` names the site in errors."""

    def __init__(self, model: torch.nn.Module, which: str, head: int, label: str) -> None:
        super().__init__()
        self._model = weakref.ref(model)
        self.which, self.head, self.label = which, head, label

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def hooked(self) -> bool:
        return bool(self._forward_hooks or self._forward_pre_hooks)

    def register_forward_hook(self, hook: Callable, *args: Any, **kwargs: Any) -> "_Handle":
        return self._switched(super().register_forward_hook(hook, *args, **kwargs))

    def register_forward_pre_hook(self, hook: Callable, *args: Any, **kwargs: Any) -> "_Handle":
        return self._switched(super().register_forward_pre_hook(hook, *args, **kwargs))

    def _switched(self, handle: Any) -> "_Handle":
        model = self._model()
        if model is None:
            handle.remove()
            raise SiteError(f"the model of site {self.label} no longer exists")
        try:
            _switch_in(model)
        except BaseException:
            handle.remove()
            raise
        return _Handle(handle, model)


class _Handle:
    """The handle of a hook on an `AttentionPoint`: removing it removes the hook and, with the
    model's last such hook, puts the model's own attention implementation back."""

    def __init__(self, handle: Any, model: torch.nn.Module) -> None:
        self._handle, self._model = handle, weakref.ref(model)

    def remove(self) -> None:
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        handle.remove()
        model = self._model()
        if model is not None:
            _switch_out(model)

    def __enter__(self) -> "_Handle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def _register() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers.masking_utils import AttentionMaskInterface, eager_mask
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(HARNESS_ATTENTION, _harness_eager)
    AttentionMaskInterface.register(HARNESS_ATTENTION, eager_mask)  # the additive mask eager uses
    _REGISTERED = True


def _switch_in(model: torch.nn.Module) -> None:
    _register()
    state = _SWITCHED.get(model)
    if state is not None and state[0] > 0:
        state[0] += 1
        return
    original = model.config._attn_implementation
    try:
        model.set_attn_implementation(HARNESS_ATTENTION)
    except (ValueError, ImportError, KeyError) as err:
        raise SiteError(f"{type(model).__name__} cannot switch its attention from {original!r} to "
                        f"{HARNESS_ATTENTION!r} ({err}), so its scores and pattern cannot be hooked") from None
    if model.config._attn_implementation != HARNESS_ATTENTION:
        model.set_attn_implementation(original)
        raise SiteError(f"{type(model).__name__} kept its attention implementation {original!r} when asked for "
                        f"{HARNESS_ATTENTION!r}, so its scores and pattern cannot be hooked")
    _SWITCHED[model] = [1, original]


def _switch_out(model: torch.nn.Module) -> None:
    state = _SWITCHED.get(model)
    if state is None or state[0] <= 0:
        return
    state[0] -= 1
    if state[0] == 0:
        model.set_attn_implementation(state[1])
        del _SWITCHED[model]


def why_no_attention_points(model: torch.nn.Module) -> str | None:
    """None if `model`'s attention goes through transformers' attention interface (so its
    scores and pattern can be hooked), else why not."""
    name = type(model).__name__
    if not getattr(type(model), "_supports_attention_backend", False):
        return (f"{name} computes attention in its own code (e.g. BLOOM's and MPT's ALiBi, T5's relative "
                "position bias), not through transformers' attention interface, so its scores and pattern are "
                "formed where no hook reaches; read the weights with harness.measures.attention.attention_weights")
    can_set = getattr(model, "_can_set_attn_implementation", None)
    if callable(can_set) and not can_set():
        return f"{name} cannot switch its attention implementation (transformers' set_attn_implementation)"
    return None


def attention_point(model: torch.nn.Module, attention: torch.nn.Module, which: str, head: int,
                    label: str) -> AttentionPoint:
    """The `AttentionPoint` of head `head`'s `which` ("scores" or "pattern") in the attention
    module `attention` (the module whose forward calls the attention interface) of `model`,
    made on first use and kept while `attention` lives. Raises `SiteError` when the model's
    attention does not go through the interface (see `why_no_attention_points`)."""
    if which not in WHICH:
        raise SiteError(f"`which` must be one of {list(WHICH)}, got {which!r}")
    why = why_no_attention_points(model)
    if why is not None:
        raise SiteError(f"site {label} is not offered: {why}")
    points = _POINTS.setdefault(attention, {})
    key = (which, int(head))
    if key not in points:
        points[key] = AttentionPoint(model, which, int(head), label)
    return points[key]


def _through(points: dict, which: str, x: torch.Tensor) -> torch.Tensor:
    """`x` ``[batch, heads, query, key]`` with each hooked head's slice passed through its point."""
    hooked = [(key[1], p) for key, p in points.items() if key[0] == which and p.hooked()]
    if not hooked:
        return x
    parts = list(x.unbind(1))
    for head, point in hooked:
        out = point(parts[head])
        if not isinstance(out, torch.Tensor) or out.shape != parts[head].shape:
            raise ShapeError(f"the {which} at {point.label} must stay {tuple(parts[head].shape)} "
                             f"[batch, query, key], got {getattr(out, 'shape', type(out).__name__)}")
        parts[head] = out.to(x.dtype)
    return torch.stack(parts, 1)


def _check_rows(points: dict, computed: torch.Tensor, edited: torch.Tensor,
                allowed: torch.Tensor | None) -> None:
    """Raise `InterventionError` for an edited pattern row that is no distribution over its allowed keys."""
    if edited is computed:
        return
    tol = 1e-4 if edited.dtype in (torch.float32, torch.float64) else 3e-2
    changed = (edited != computed).any(-1)                                  # [batch, heads, query]
    if not changed.any():
        return
    e = edited.double()
    ok = torch.ones_like(e, dtype=torch.bool) if allowed is None else allowed.expand_as(e)
    sums = torch.where(ok, e, torch.zeros_like(e)).sum(-1)
    leak = torch.where(ok, torch.zeros_like(e), e.abs()).amax(-1)
    bad = changed & (((sums - 1).abs() > tol) | (leak > tol))
    if bad.any():
        b, h, q = (int(i) for i in bad.nonzero()[0])
        label = points[("pattern", h)].label
        raise InterventionError(
            f"the edited pattern at {label} is no distribution over its keys: row (batch {b}, query {q}) sums to "
            f"{float(sums[b, h, q]):.6g} over the keys the mask allows and puts {float(leak[b, h, q]):.3g} on a "
            f"masked key ({int(bad.sum())} such rows); a pattern row must sum to 1 within {tol:g} over the allowed "
            "keys and be 0 elsewhere. The harness does not renormalise it: renormalise the edit, or edit the "
            "scores (the softmax normalises them)")


def _harness_eager(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                   softcap: float | None = None, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention (``[batch, heads, query, d_head]`` queries, ``[batch, kv_heads, key, d_head]``
    keys and values -> ``[batch, query, heads, d_head]`` output and the ``[batch, heads, query, key]``
    pattern), each hooked head's scores and pattern passed through its `AttentionPoint`."""
    odd = [k for k in _UNSUPPORTED if kwargs.get(k) is not None]
    if odd:
        raise SiteError(f"{type(module).__name__} passes {odd} to its attention function, which the "
                        f"{HARNESS_ATTENTION!r} implementation does not reproduce; its scores and pattern cannot "
                        "be hooked")
    points = _POINTS.get(module, {})
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # transformers' repeat_kv: key/value head g serves query heads g*r .. g*r + r - 1
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    allowed = None
    if attention_mask is not None:
        mask = attention_mask[:, :, :, : key.shape[-2]]
        if mask.dtype == torch.bool:
            allowed = mask
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            allowed = mask > torch.finfo(mask.dtype).min / 2
            scores = scores + mask
    scores = _through(points, "scores", scores)
    computed = torch.nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    pattern = _through(points, "pattern", computed)
    _check_rows(points, computed, pattern, allowed)
    weights = torch.nn.functional.dropout(pattern, p=dropout, training=module.training)
    out = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return out, pattern
