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
``grad_drop=True``  AtP*'s GradDrop (its section 3.1.2, equation 11): for each block l of the
    stack, the backward pass is repeated with the gradient through block l's contributions to
    the residual stream (its ``attn_out`` and ``mlp_out``) set to zero, giving estimates
    ``e_l(cell)``; the cell's estimate is ``sum_l |e_l(cell)| / (L - 1)`` over the L blocks. A
    node inside block l gets ``e_l = 0`` (all its paths leave through block l), so without any
    cancellation the result is ``|AtP|``; where a direct and an indirect path cancel in the
    gradient, dropping one of them exposes the other. The estimate is then a *magnitude* (>= 0):
    the map's values are ``corrupt + magnitude``, to be compared with ``|patching - corrupt|``.
    Cost: one forward, L + 1 backwards per batch.
``qk_fix=True`` (`attribute_qkv_map`, ``which`` "q" or "k")  AtP*'s fix for saturated attention
    (its section 3.1.1): a query or key cell's effect goes only through its head's attention
    pattern, so the estimate is ``sum (A_patched - A_corrupt) * dM/dA`` over the pattern entries,
    with ``A_patched`` the pattern recomputed exactly (softmax and all) with the cell's queries
    (or keys) taken from the clean run, and ``dM/dA`` the gradient at the corrupt pattern. The
    patched patterns of every head of a layer come from one extra forward per layer (patching all
    of a layer's queries at once changes each head's pattern only through its own queries). A
    key/value head's key cell sums over the query heads that read it. Values (``which="v"``)
    enter the output linearly given the pattern, so for them the option changes nothing.

Errors: the pairs' errors of `patch_resid_map` (unequal lengths and so on); `DataError` for a
metric whose values carry no gradient from the logits (computed from an argmax, a comparison,
integers, or detached) or whose gradient is zero everywhere (a rounding or step function), for
bad options; `InterventionError` naming the site when the metric does
not depend differentiably on a site's activation (the forward after it is not differentiable).
"""

from __future__ import annotations

import contextlib
import functools
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from harness.errors import DataError, InterventionError
from harness.interventions import Intervention, Patch, Positions, Record, intervene
from harness.models.load import LoadedModel, pad_rows
from harness.models.logits import last_logits
from harness.models.sites import Site
from harness.measures.patching import Metric, PatchMap
from harness.measures.patching_engine import check_at, check_map_args, token_pairs, where_at
from harness.measures.patching_outputs import _points
from harness.measures.patching_units import SitePatchMap, _layers, _point, _units, _which

__all__ = ["attribute_resid_map", "attribute_head_map", "attribute_layer_map", "attribute_neuron_map",
           "attribute_qkv_map"]


# --------------------------------------------------------------------------- taps and gates


@dataclass(eq=False)
class _Tap(Intervention):
    """Pass the activation through ``a + delta`` (``delta`` a zero leaf that requires grad), or, with
    ``base``, through ``where(on, base, a) + delta`` (an interpolated value at the positions ``on``);
    keeps the incoming activation (detached) and the tensor handed on."""

    delta: torch.Tensor
    base: torch.Tensor | None = None
    on: torch.Tensor | None = None
    seen: dict = field(default_factory=dict)

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: Any, context: Any = None) -> torch.Tensor:
        self.seen["act"] = act.detach()
        x = act
        if self.base is not None:
            x = torch.where(self.on[..., None], self.base.to(act.dtype), act)
        x = x + self.delta.to(act.dtype)
        self.seen["out"] = x
        return x


class _DropGrad(torch.autograd.Function):
    """Identity forward; backward zero while ``state["drop"]`` is this gate's block (GradDrop)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, state: dict, block: int) -> torch.Tensor:
        ctx.state, ctx.block = state, block
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        return (torch.zeros_like(grad) if ctx.state.get("drop") == ctx.block else grad), None, None


@dataclass(eq=False)
class _Gate(Intervention):
    state: dict
    block: int

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: Any, context: Any = None) -> torch.Tensor:
        return _DropGrad.apply(act, self.state, self.block)


def _usual_mode(fn: Callable) -> Callable:
    """Run `fn` outside inference mode (tensors made under ``torch.inference_mode`` cannot enter a
    graph); the caller's mode is restored on return."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with torch.inference_mode(False):
            return fn(*args, **kwargs)

    return wrapped


@contextlib.contextmanager
def _grad_on() -> Iterator[None]:
    """Gradients on for the block, whatever mode the caller is in; the mode is restored after."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


# --------------------------------------------------------------------------- the engine


@dataclass(frozen=True)
class _Family:
    """What one attribution map estimates: ``taps(L)`` the sites of layer L (1-based) whose
    gradients it needs; ``reduce(L, prods)`` the per-site products ``(a_clean - a_corrupt) * grad``
    (``[rows, pos, width]`` each) summed into the map's columns, ``[rows, pos, cols]``; ``at``
    ``[n, pos]`` the positions each cell patches (``per_position``: column p is position p alone)."""

    layers: tuple[int, ...]
    taps: Callable[[int], list[Site]]
    reduce: Callable[[int, list[torch.Tensor]], torch.Tensor]
    at: torch.Tensor
    per_position: bool = False
    qk: str | None = None          # "q" or "k": the qk fix on the patterns


def _check_options(ig_steps: Any, grad_drop: Any, qk_fix: Any = False) -> None:
    if ig_steps is not None and (isinstance(ig_steps, bool) or not isinstance(ig_steps, numbers.Integral)
                                 or ig_steps < 1):
        raise DataError(f"`ig_steps` must be None (plain attribution patching) or a positive number of "
                        f"integration steps, got {ig_steps!r}")
    for name, value in (("grad_drop", grad_drop), ("qk_fix", qk_fix)):
        if not isinstance(value, bool):
            raise DataError(f"`{name}` must be True or False, got {value!r}")
    if ig_steps is not None and (grad_drop or qk_fix):
        raise DataError(f"`ig_steps` ({ig_steps}) cannot be combined with grad_drop or qk_fix: integrated gradients "
                        "replace the single gradient that those two correct; choose one")


@dataclass
class _Pairs:
    ids_clean: torch.Tensor
    ids_corrupt: torch.Tensor
    mask: torch.Tensor


def _pairs(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], metric: Metric,
           batch_size: int) -> _Pairs:
    check_map_args(metric, batch_size)
    a, b = token_pairs(model, clean, corrupt, what="attribution maps",
                       swap="attribution patching compares activations")
    ids_c, mask = pad_rows(a, pad_id=model.pad_id, device=model.device)
    ids_x, _ = pad_rows(b, pad_id=model.pad_id, device=model.device)
    return _Pairs(ids_c, ids_x, mask)


def _scored(metric: Metric, logits: torch.Tensor, pairs: torch.Tensor, *, grad: bool) -> torch.Tensor:
    values = metric(logits, pairs)
    if not isinstance(values, torch.Tensor) or values.shape != (pairs.shape[0],):
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise DataError(f"`metric` must return one value per row, shape [{pairs.shape[0]}], got {shape}; "
                        "see the metric protocol in harness.measures.patching")
    if grad and not (values.is_floating_point() and values.requires_grad):
        raise DataError(
            "`metric` returned values that carry no gradient from the logits (dtype "
            f"{values.dtype}, requires_grad={values.requires_grad}): it is computed from an argmax, a comparison, "
            "integers or detached tensors, so attribution patching cannot differentiate it; give a metric that is "
            "a differentiable function of the logits (answer_logit_diff, answer_logprob, answer_prob), or use "
            "activation patching (patch_*_map) for this metric")
    return values


def _estimate(model: LoadedModel, runs: _Pairs, metric: Metric, fam: _Family, *, batch_size: int,
              ig_steps: int | None, grad_drop: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Estimates ``[n, len(layers), cols]`` (effects, not yet added to the corrupt metric) and the
    clean and corrupt metrics ``[n]``."""
    n = runs.mask.shape[0]
    stack = model.main_stack
    n_blocks = model.sites.stack(stack).n_layers
    if grad_drop and n_blocks < 2:
        raise DataError(f"`grad_drop` needs a stack of at least 2 blocks (it averages over the L - 1 blocks whose "
                        f"gradient it drops); {model.name} has {n_blocks}")
    est_rows, clean_m, corrupt_m = [], [], []
    for start in range(0, n, batch_size):
        rows = torch.arange(start, min(start + batch_size, n), device=runs.mask.device)
        width = int(runs.mask[rows].sum(1).max())
        mask = runs.mask[rows, :width]
        ids_c, ids_x = runs.ids_clean[rows, :width], runs.ids_corrupt[rows, :width]
        at = fam.at[rows.cpu(), :width].to(mask.device)
        e, cm, xm = _batch(model, ids_c, ids_x, mask, rows, at, metric, fam, n_blocks, ig_steps, grad_drop)
        if fam.per_position and width < runs.mask.shape[1]:
            e = torch.nn.functional.pad(e, (0, runs.mask.shape[1] - width), value=float("nan"))
        est_rows.append(e)
        clean_m.append(cm)
        corrupt_m.append(xm)
    return torch.cat(est_rows), torch.cat(clean_m), torch.cat(corrupt_m)


def _batch(model: LoadedModel, ids_c: torch.Tensor, ids_x: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor,
           at: torch.Tensor, metric: Metric, fam: _Family, n_blocks: int, ig_steps: int | None,
           grad_drop: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    stack = model.main_stack
    masks = {stack: mask}
    sites = {L: fam.taps(L) for L in fam.layers}
    every = [s for L in fam.layers for s in sites[L]]
    with torch.no_grad():
        with intervene(model, {s: Record() for s in every}, masks=masks) as rec:
            clean_metric = _scored(metric, last_logits(model, ids_c, mask), rows, grad=False).detach().float()
    clean = rec.recorded
    pattern_sites = _pattern_sites(model, fam) if fam.qk else {}
    grad_sites = every if not fam.qk else [s for L in fam.layers for s in pattern_sites[L]]
    with _grad_on():
        taps = {s: _Tap(_zeros(model, s, mask)) for s in grad_sites}
        plan: dict[Site, Any] = dict(taps)
        state: dict = {}
        if grad_drop:
            for L in range(1, n_blocks + 1):
                for point in ("attn_out", "mlp_out"):
                    s = model.site(stack, L, point)
                    plan[s] = [plan[s], _Gate(state, L)] if s in plan else _Gate(state, L)
        with intervene(model, plan, masks=masks):
            logits = _graded(model, last_logits(model, ids_x, mask), grad_sites[0])
            values = _scored(metric, logits, rows, grad=True)
        corrupt_metric = values.detach().float()
        total = values.sum()
        _check_slope(total, logits)
        drops = list(range(1, n_blocks + 1)) if grad_drop else [None]
        grads_of = []
        for drop in drops:
            state["drop"] = drop
            got = torch.autograd.grad(total, [taps[s].delta for s in grad_sites], retain_graph=drop != drops[-1],
                                      allow_unused=True)
            grads_of.append(dict(zip(grad_sites, _checked(got, grad_sites, model))))
    corrupt = {s: taps[s].seen["act"] for s in grad_sites}
    if fam.qk:
        patched = _qk_patterns(model, fam, ids_x, mask, clean, pattern_sites, at)
        ests = [_qk_estimate(model, fam, corrupt, patched, g, pattern_sites) for g in grads_of]
    else:
        if ig_steps is not None:
            grads_of = [_ig_grads(model, fam, sites, ids_x, mask, rows, at, clean, corrupt, metric, ig_steps)]
        ests = [_linear_estimate(fam, sites, clean, corrupt, g, at) for g in grads_of]
    est = ests[0] if not grad_drop else torch.stack(ests).abs().sum(0) / (n_blocks - 1)
    return est.detach().float().cpu(), clean_metric.cpu(), corrupt_metric.cpu()


def _graded(model: LoadedModel, logits: torch.Tensor, first: Site) -> torch.Tensor:
    """`logits`, checked to carry a gradient from the tapped sites."""
    if not logits.requires_grad:
        raise InterventionError(
            f"the logits of {model.name} carry no gradient from the map's sites (first {first}): the forward after "
            "them is not differentiable (a detach, an integer or no-grad computation in the model's code), so "
            "attribution patching cannot estimate these cells; use activation patching")
    return logits


def _check_slope(total: torch.Tensor, logits: torch.Tensor) -> None:
    """A metric whose gradient with respect to the logits is zero everywhere (a rounding or step
    function of them) would give every cell an estimate of 0: refuse it."""
    (slope,) = torch.autograd.grad(total, [logits], retain_graph=True)
    if not bool(slope.ne(0).any()):
        raise DataError("`metric` has a zero gradient with respect to the logits at every row (a step function of "
                        "them: round, floor, sign, a threshold), so every attribution estimate would be 0; give a "
                        "metric that is a differentiable function of the logits (answer_logit_diff, answer_logprob, "
                        "answer_prob), or use activation patching (patch_*_map) for this metric")


def _zeros(model: LoadedModel, site: Site, mask: torch.Tensor) -> torch.Tensor:
    width = model.width(site, varying=True)
    shape = (*mask.shape, mask.shape[1]) if width is None else (*mask.shape, width)
    return torch.zeros(shape, dtype=torch.float32, device=mask.device, requires_grad=True)


def _checked(grads: Sequence[torch.Tensor | None], sites: Sequence[Site], model: LoadedModel) -> list[torch.Tensor]:
    for g, s in zip(grads, sites):
        if g is None:
            raise InterventionError(
                f"the metric does not depend differentiably on the activation at {s} of {model.name}: no gradient "
                "reaches it (the forward after that site is not differentiable: a detach, an integer or "
                "no-grad computation in the model's code), so attribution patching cannot estimate its cells; "
                "use activation patching for this site")
    return list(grads)  # type: ignore[arg-type]


def _linear_estimate(fam: _Family, sites: dict[int, list[Site]], clean: dict, corrupt: dict, grads: dict,
                     at: torch.Tensor) -> torch.Tensor:
    out = []
    for L in fam.layers:
        prods = [((clean[s].float() - corrupt[s].float()) * grads[s].float()) for s in sites[L]]
        cols = fam.reduce(L, prods)                                        # [rows, pos, cols]
        if fam.per_position:
            out.append(torch.where(at, cols[..., 0], torch.full_like(cols[..., 0], float("nan"))))
        else:
            out.append((cols * at[..., None]).sum(1))
    return torch.stack(out, 1)


def _ig_grads(model: LoadedModel, fam: _Family, sites: dict[int, list[Site]], ids_x: torch.Tensor,
              mask: torch.Tensor, rows: torch.Tensor, at: torch.Tensor, clean: dict, corrupt: dict, metric: Metric,
              k: int) -> dict:
    """The mean gradient over k midpoints of the straight path, one site interpolated at a time."""
    b = mask.shape[0]
    alphas = (torch.arange(k, dtype=torch.float32, device=mask.device) + 0.5) / k
    alpha = alphas.repeat_interleave(b)[:, None, None]                     # step-major: [k * b, 1, 1]
    big_mask, big_ids, big_rows = mask.repeat(k, 1), ids_x.repeat(k, 1), rows.repeat(k)
    on = at.bool().repeat(k, 1)
    out: dict = {}
    for s in [s for L in fam.layers for s in sites[L]]:
        with _grad_on():
            a0, a1 = corrupt[s].float().repeat(k, 1, 1), clean[s].float().repeat(k, 1, 1)
            tap = _Tap(torch.zeros_like(a0, requires_grad=True), base=a0 + alpha * (a1 - a0), on=on)
            with intervene(model, {s: tap}, masks={model.main_stack: big_mask}):
                values = _scored(metric, last_logits(model, big_ids, big_mask), big_rows, grad=True)
            (g,) = _checked(torch.autograd.grad(values.sum(), [tap.delta], allow_unused=True), [s], model)
        out[s] = g.reshape(k, b, *g.shape[1:]).mean(0)
    return out


# --------------------------------------------------------------------------- the qk fix


def _pattern_sites(model: LoadedModel, fam: _Family) -> dict[int, list[Site]]:
    n_heads = model.sites.stack(model.main_stack).n_heads
    return {L: [model.site(model.main_stack, L, "attn.pattern", head=h) for h in range(n_heads)] for L in fam.layers}


def _qk_patterns(model: LoadedModel, fam: _Family, ids_x: torch.Tensor, mask: torch.Tensor, clean: dict,
                 pattern_sites: dict[int, list[Site]], at: torch.Tensor) -> dict:
    """Each head's pattern with its layer's queries (or keys) from the clean run, at the cells' positions."""
    out: dict = {}
    on = Positions.of_mask(at.bool())
    for L in fam.layers:
        (whole,) = fam.taps(L)
        plan: dict[Site, Any] = {whole: Patch(clean[whole], on)}
        plan.update({s: Record() for s in pattern_sites[L]})
        with torch.no_grad(), intervene(model, plan, masks={model.main_stack: mask}) as rec:
            last_logits(model, ids_x, mask)
        out.update({s: rec.recorded[s] for s in pattern_sites[L]})
    return out


def _qk_estimate(model: LoadedModel, fam: _Family, corrupt: dict, patched: dict, grads: dict,
                 pattern_sites: dict[int, list[Site]]) -> torch.Tensor:
    shape = model.sites.stack(model.main_stack)
    group = shape.n_heads // shape.kv_heads
    out = []
    for L in fam.layers:
        per_head = torch.stack([((patched[s].float() - corrupt[s].float()) * grads[s].float()).sum((1, 2))
                                for s in pattern_sites[L]], 1)               # [rows, n_heads]
        if fam.qk == "k":
            per_head = per_head.reshape(per_head.shape[0], shape.kv_heads, group).sum(-1)
        out.append(per_head)
    return torch.stack(out, 1)


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
