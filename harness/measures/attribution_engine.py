"""The engine of the attribution maps (`harness.measures.attribution`): taps, gates and gradients.

    _Family          what one map estimates: its layers, the sites it taps per layer, how the
                     per-site products become the map's columns, the positions its cells patch
    _estimate        per batch of pairs: the clean run (recorded), the corrupt run through
                     ``a + delta`` taps, ``torch.autograd.grad`` with respect to the deltas, and the
                     estimates ``(a_clean - a_corrupt) . dM/da`` summed into cells; with the
                     options of the maps (integrated gradients, GradDrop, the qk fix)
    _Tap, _Gate      the interventions: a zero leaf added to a site (and an interpolated value
                     set there), a gate that drops the gradient through a block's output
    _pairs, _scored, _graded, _check_slope, _checked
                     the checks shared with `harness.measures.attribution_edges`

What the estimates and options mean is told in `harness.measures.attribution`.
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
from harness.models.loaded import LoadedModel, pad_rows
from harness.models.logits import last_logits
from harness.models.sites import Site
from harness.measures.patching import Metric
from harness.measures.patching_engine import check_map_args, token_pairs


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
