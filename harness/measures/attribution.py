"""Attribution patching: every cell of an activation-patching map from one backward pass.

    attribute_resid_map(model, clean, corrupt, metric)    estimates of `patch_resid_map`
    attribute_head_map(model, clean, corrupt, metric)     estimates of `patch_head_map`
    attribute_layer_map(model, clean, corrupt, metric)    estimates of `patch_layer_map`
    attribute_neuron_map(model, clean, corrupt, metric)   estimates of `patch_neuron_map`
    attribute_qkv_map(model, clean, corrupt, metric)      estimates of `patch_qkv_map`
    (edges between heads, and from heads and MLPs to the residual readers:
    `harness.measures.attribution_edges`)

Each takes the arguments of its activation-patching counterpart (the same pairs, metric, layers,
units, heads, ``at``) and returns the same result (`PatchMap`, or `SitePatchMap` with the same
rows and columns, ``kind`` and ``clean`` / ``corrupt`` metrics), so a claim can swap one for the
other. A cell's *estimate* is the first-order Taylor estimate of patching it (Nanda 2023,
"Attribution patching: activation patching at industrial scale"; Kramár et al. 2024, AtP*,
arXiv 2403.00745)::

    estimate(cell) = sum over the cell's positions and columns of (a_clean - a_corrupt) * dM/da

with the gradient of the metric M taken on the corrupt run at the cell's site, and the map's value
is ``corrupt metric + estimate``, in the units of the patching map's values (``values - corrupt``
is the estimated effect). Where the metric is linear in the site's activation (a site whose every
path to the logits is linear, read by a linear metric) the estimate equals patching exactly.

How it runs: per batch of pairs (right padded, each pair one length in both prompts, the metric
read at each pair's last real token as in `harness.measures.patching`), one forward of the clean
prompts recording the sites (no gradients), one forward of the corrupt prompts in which every site
of the map passes through ``a + delta`` with ``delta`` a zero leaf tensor, and one
``torch.autograd.grad`` of the metric's sum over rows with respect to those deltas (rows are
independent, so row r's gradient is its own). Gradients are enabled locally (also under
``torch.no_grad`` or ``torch.inference_mode``) and nothing is left on the parameters: no
``.grad`` is written, no weight changes, and every hook is removed when a call returns or raises.

Options (each off by default; the estimates then are plain attribution patching, AtP):

``ig_steps=k``  integrated gradients along the straight path from the corrupt to the clean
    activation at the site (the EAP-IG idea on activations, Hanna et al. 2024; Marks et al. 2024):
    the gradient is the mean over k midpoints ``alpha = (i + 1/2) / k`` of the gradient taken with
    one site of the map set to ``a_corrupt + alpha (a_clean - a_corrupt)`` at the positions the
    map's cells patch (every other site corrupt), one site at a time: a layer's ``resid_pre`` (all
    positions together), ``attn_out`` or ``mlp_out``, one head's output, or a layer's whole
    ``mlp_post`` / ``attn.q`` / ``attn.k`` / ``attn.v``. A cell that is a whole such site
    (`attribute_layer_map`, `attribute_head_map`) then converges to its patching value as k grows
    (the path integral of the gradient is the change of the metric); the columns of a shared site
    (positions, neurons, q/k/v heads) sum to their site's patching value. Cost: k forwards and
    backwards of the batch (as ``k * batch`` rows) per site.
``grad_drop=True``  AtP*'s GradDrop (its equation 11): for each block l of the
    stack, the backward pass is repeated with the gradient through block l's contributions to
    the residual stream (its ``attn_out`` and ``mlp_out``) set to zero, giving estimates
    ``e_l(cell)``; the cell's estimate is ``sum_l |e_l(cell)| / (L - 1)`` over the L blocks. A
    node inside block l (a head, an MLP or attention output, a neuron, a query) gets ``e_l = 0``
    (all its paths leave through block l), so without any cancellation the result is ``|AtP|``;
    a ``resid_pre`` cell keeps its skip path under every l. Where a direct and an indirect path
    cancel in the gradient, dropping one of them exposes the other. The estimate is then a
    *magnitude* (>= 0): the map's values are ``corrupt + magnitude``, to be compared with
    ``|patching - corrupt|``. Cost: one forward, L + 1 backwards per batch. With `qk_fix` too it
    is AtP* (the qk fix's pattern gradients are taken under each dropped block).
``qk_fix=True`` (`attribute_qkv_map`, ``which`` "q" or "k")  AtP*'s fix for saturated attention
    (its QK fix): a query or key cell's effect goes only through its head's attention
    pattern, so the estimate is ``sum (A_patched - A_corrupt) * dM/dA`` over the pattern entries,
    with ``A_patched`` the pattern recomputed exactly (softmax and all) with the cell's queries
    (or keys) taken from the clean run, and ``dM/dA`` the gradient at the corrupt pattern. The
    patched patterns of every head of a layer come from one extra forward per layer (patching all
    of a layer's queries at once changes each head's pattern only through its own queries). A
    key/value head's key cell sums over the query heads that read it. Values (``which="v"``)
    enter the output linearly given the pattern, so for them the option changes nothing.

How far to trust it (measured when this module was written; the claims measure it per model): on
tiny random-weight 2-block models (5 pairs) Pearson r with the patching maps was 0.81/0.43/0.69/
0.49 for resid_pre (GPT-2/Llama/Qwen2/Gemma-2), 0.98/0.76/0.85/0.85 for heads, 0.97/0.21/0.72/0.81
for attention and MLP outputs, 0.89-1.0 for neurons; the qk fix raised keys from 0.71-0.83 to
0.86-0.98; with 8 integration steps heads and layer outputs reached r = 1.000. On SmolLM2-135M
(2 IOI pairs) r was 0.76 for the residual map, 0.98 for heads, 0.97 for attention outputs, as the
literature reports for GPT-2 small (0.75 residual, 0.98 attention outputs).

Errors: the pairs' errors of `patch_resid_map` (unequal lengths and so on); `DataError` for a
metric whose values carry no gradient from the logits (computed from an argmax, a comparison,
integers, or detached) or whose gradient is zero everywhere (a rounding or step function), for
bad options; `InterventionError` naming the site when the metric does
not depend differentiably on a site's activation (the forward after it is not differentiable).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from harness.models.loaded import LoadedModel
from harness.measures.attribution_engine import _check_options, _estimate, _Family, _pairs, _usual_mode
from harness.measures.patching import Metric, PatchMap
from harness.measures.patching_engine import check_at, where_at
from harness.measures.patching_outputs import _points
from harness.measures.patching_units import SitePatchMap, _layers, _point, _units, _which

__all__ = ["attribute_resid_map", "attribute_head_map", "attribute_layer_map", "attribute_neuron_map",
           "attribute_qkv_map"]


# --------------------------------------------------------------------------- the maps


def _sum_last(prods: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([p.sum(-1) for p in prods], -1)


@_usual_mode
def attribute_resid_map(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], metric: Metric, *,
                        batch_size: int = 64, ig_steps: int | None = None, grad_drop: bool = False) -> PatchMap:
    """Attribution-patching estimate of `patch_resid_map`: ``blocks.L.resid_pre`` at each position.

    Example::

        est = attribute_resid_map(m, clean_prompts, corrupt_prompts, answer_logit_diff(io, s))
        est.values      # [n_pairs, n_layers, max_len]: corrupt metric + estimate; NaN past a pair's length

    `clean`, `corrupt`, `metric`, `batch_size` (pairs per forward and backward): as
    `patch_resid_map`; `ig_steps`, `grad_drop`: see the module docstring. ``kind`` "resid_pre".
    """
    _check_options(ig_steps, grad_drop)
    runs = _pairs(model, clean, corrupt, metric, batch_size)
    stack = model.main_stack
    n = model.sites.stack(stack).n_layers
    fam = _Family(tuple(range(1, n + 1)), lambda L: [model.site(stack, L, "resid_pre")],
                  lambda L, prods: prods[0].sum(-1)[..., None], runs.mask.bool().cpu(), per_position=True)
    est, c, x = _estimate(model, runs, metric, fam, batch_size=batch_size, ig_steps=ig_steps, grad_drop=grad_drop)
    return PatchMap(values=x[:, None, None] + est, clean=c, corrupt=x, lengths=runs.mask.sum(1).cpu(),
                    kind="resid_pre", fingerprint=model.fingerprint)


@_usual_mode
def attribute_head_map(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], metric: Metric, *,
                       at: str = "all", batch_size: int = 64, ig_steps: int | None = None,
                       grad_drop: bool = False) -> PatchMap:
    """Attribution-patching estimate of `patch_head_map`: each head's output (``blocks.L.attn.head{h}``)
    at every position (``at="all"``) or at each pair's last real token (``at="last"``).

    Returns a `PatchMap` ``[n_pairs, n_layers, n_heads]`` of ``corrupt metric + estimate``, ``kind``
    "head" or "head_last". Raises `DataError` for a bad `at` or option, and the errors of
    `patch_resid_map` for bad pairs or metrics.
    """
    check_at(at)
    _check_options(ig_steps, grad_drop)
    runs = _pairs(model, clean, corrupt, metric, batch_size)
    stack = model.main_stack
    shape = model.sites.stack(stack)
    fam = _Family(tuple(range(1, shape.n_layers + 1)),
                  lambda L: [model.site(stack, L, "head", head=h) for h in range(shape.n_heads)],
                  lambda L, prods: _sum_last(prods), where_at(at, runs.mask).cpu())
    est, c, x = _estimate(model, runs, metric, fam, batch_size=batch_size, ig_steps=ig_steps, grad_drop=grad_drop)
    return PatchMap(values=x[:, None, None] + est, clean=c, corrupt=x, lengths=runs.mask.sum(1).cpu(),
                    kind="head" if at == "all" else "head_last", fingerprint=model.fingerprint)


@_usual_mode
def attribute_layer_map(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], metric: Metric, *,
                        points: Sequence[str] = ("attn_out", "mlp_out"), at: str = "last", batch_size: int = 64,
                        ig_steps: int | None = None, grad_drop: bool = False) -> PatchMap:
    """Attribution-patching estimate of `patch_layer_map`: what each block's attention (``attn_out``)
    and MLP (``mlp_out``) add to the residual, at the last token (``at="last"``) or every position.

    Returns a `PatchMap` ``[n_pairs, n_layers, len(points)]``, ``kind`` "layer". With `ig_steps` a
    cell is its layer's whole site at the cell's positions, so the estimate converges to the
    patching value as the steps grow. Raises `DataError` for bad `points`, `at` or options.
    """
    cols = _points(points)
    check_at(at)
    _check_options(ig_steps, grad_drop)
    runs = _pairs(model, clean, corrupt, metric, batch_size)
    stack = model.main_stack
    n = model.sites.stack(stack).n_layers
    fam = _Family(tuple(range(1, n + 1)), lambda L: [model.site(stack, L, p) for p in cols],
                  lambda L, prods: _sum_last(prods), where_at(at, runs.mask).cpu())
    est, c, x = _estimate(model, runs, metric, fam, batch_size=batch_size, ig_steps=ig_steps, grad_drop=grad_drop)
    return PatchMap(values=x[:, None, None] + est, clean=c, corrupt=x, lengths=runs.mask.sum(1).cpu(),
                    kind="layer", fingerprint=model.fingerprint)


@_usual_mode
def attribute_neuron_map(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], metric: Metric, *,
                         point: str = "mlp_post", layers: Sequence[int] | None = None,
                         units: Sequence[int] | None = None, at: str = "last", batch_size: int = 64,
                         ig_steps: int | None = None, grad_drop: bool = False) -> SitePatchMap:
    """Attribution-patching estimate of `patch_neuron_map`: each MLP neuron of ``point`` in each of
    `layers`, at the last token (``at="last"``) or every position; all neurons of a layer from the
    same gradient.

    Returns a `SitePatchMap` ``[n_pairs, len(layers), len(units)]`` laid out as `patch_neuron_map`'s
    (``kind`` "neuron" or "neuron_all"). Raises the errors of `patch_neuron_map`, and `DataError`
    for bad options.
    """
    point = _point(point)
    check_at(at)
    _check_options(ig_steps, grad_drop)
    chosen = _layers(model, layers)
    model.site(model.main_stack, chosen[0], point)
    picked = _units(model, units, point, chosen)
    runs = _pairs(model, clean, corrupt, metric, batch_size)
    stack = model.main_stack
    index = torch.tensor(picked, dtype=torch.long)
    fam = _Family(chosen, lambda L: [model.site(stack, L, point)],
                  lambda L, prods: prods[0].index_select(-1, index.to(prods[0].device)), where_at(at, runs.mask).cpu())
    est, c, x = _estimate(model, runs, metric, fam, batch_size=batch_size, ig_steps=ig_steps, grad_drop=grad_drop)
    return SitePatchMap(values=x[:, None, None] + est, clean=c, corrupt=x, lengths=runs.mask.sum(1).cpu(),
                        kind="neuron" if at == "last" else "neuron_all", fingerprint=model.fingerprint, point=point,
                        block_layers=chosen, columns=picked, column_kind="neuron", at=at, stack=stack)


@_usual_mode
def attribute_qkv_map(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], metric: Metric, *,
                      which: str = "q", layers: Sequence[int] | None = None, at: str = "all", batch_size: int = 64,
                      ig_steps: int | None = None, grad_drop: bool = False, qk_fix: bool = False) -> SitePatchMap:
    """Attribution-patching estimate of `patch_qkv_map`: each query head's queries, or each
    key/value head's keys or values (``which`` "q", "k", "v"), at every position or the last.

    With `qk_fix` (AtP*), query and key cells are estimated through the exactly recomputed attention
    pattern (module docstring); under grouped-query attention a key cell sums over the query heads
    that share its key/value head. Returns a `SitePatchMap` ``[n_pairs, len(layers), heads]`` laid
    out as `patch_qkv_map`'s. Raises the errors of `patch_qkv_map`, `DataError` for bad options,
    and `SiteError` (saying why) with `qk_fix` on a model whose attention pattern cannot be hooked.
    """
    which = _which(which)
    check_at(at)
    _check_options(ig_steps, grad_drop, qk_fix)
    chosen = _layers(model, layers)
    point = f"attn.{which}"
    stack = model.main_stack
    model.site(stack, chosen[0], point)
    shape = model.sites.stack(stack)
    n_heads, d_head = shape.heads_of(point), shape.d_head
    qk = which if qk_fix and which in ("q", "k") else None
    if qk:
        model.site(stack, chosen[0], "attn.pattern", head=0)   # the pattern can be hooked (SiteError says why not)
    runs = _pairs(model, clean, corrupt, metric, batch_size)

    def reduce(L: int, prods: list[torch.Tensor]) -> torch.Tensor:
        p = prods[0]
        return p.reshape(*p.shape[:2], n_heads, d_head).sum(-1)

    fam = _Family(chosen, lambda L: [model.site(stack, L, point)], reduce, where_at(at, runs.mask).cpu(), qk=qk)
    est, c, x = _estimate(model, runs, metric, fam, batch_size=batch_size, ig_steps=ig_steps, grad_drop=grad_drop)
    return SitePatchMap(values=x[:, None, None] + est, clean=c, corrupt=x, lengths=runs.mask.sum(1).cpu(),
                        kind=which if at == "all" else f"{which}_last", fingerprint=model.fingerprint, point=point,
                        block_layers=chosen, columns=tuple(range(n_heads)),
                        column_kind="query head" if which == "q" else "key/value head", at=at, stack=stack)
