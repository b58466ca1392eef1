"""Hook names <-> the harness's `Site`, and the check that an SAE fits its site.

    site_for_hook   "blocks.12.hook_resid_post" -> Site("blocks", 13, "resid_post") on this model
    hook_for_site   the inverse: the TransformerLens / sae-lens hook name of a site
    hook_ref_for_site   the same with the head or neurons a site takes of its hook (`HookRef`)
    sae_site        the site an SAE reads (from ``sae.cfg.metadata.hook_name``), its ``d_in`` checked

sae-lens, Gemma Scope and TransformerLens count blocks from 0; the harness counts them from 1
and numbers ``resid_post`` as Hugging Face ``output_hidden_states`` (README, *Sites, and how
layers are numbered*). With S the stack (``blocks`` for decoder-only models, ``encoder`` /
``decoder`` for T5, the names of TransformerLens' HookedEncoderDecoder), n its block count and
k a 0-based block index:

    hook name (TransformerLens / sae-lens)   harness site                 HF output_hidden_states
    S.k.hook_resid_pre                       S.{k+1}.resid_pre            hidden_states[k]
    S.k.hook_resid_mid                       S.{k+1}.resid_mid            (not in parallel blocks)
    decoder.k.hook_resid_mid_cross           decoder.{k+1}.resid_mid      (the MLP's input residual;
                                                                           T5's hook_resid_mid, between
                                                                           self- and cross-attention,
                                                                           is no site)
    S.k.hook_resid_post, k + 1 < n           S.{k+1}.resid_post           hidden_states[k+1]
    S.{n-1}.hook_resid_post                  S.n.block_out                the final norm's input
                                             (S.n.final_norm_in shares it)
    S.k.hook_attn_out, S.k.hook_mlp_out      S.{k+1}.attn_out, mlp_out    (after Gemma-2's post-norms)
    decoder.k.hook_cross_attn_out            decoder.{k+1}.cross_attn_out
    S.k.mlp.hook_pre                         S.{k+1}.mlp_pre              (a gated MLP's gate projection)
    S.k.mlp.hook_pre_linear                  S.{k+1}.mlp_pre_linear       (gated MLPs: the up projection)
    S.k.mlp.hook_post                        S.{k+1}.mlp_post             (the down projection's input)
    S.k.attn.hook_q, hook_k, hook_v          S.{k+1}.attn.q, attn.k, attn.v   (before rotary)
      with head=h                            S.{k+1}.attn.q.head{h}, ...
    S.k.attn.hook_z with head=h              S.{k+1}.attn.head{h}
    S.k.attn.hook_attn_scores, hook_pattern  S.{k+1}.attn.scores.head{h}, attn.pattern.head{h}
      with head=h                            (``[batch, query, key]``: TransformerLens' ``[:, h]``)
    ln_final.hook_scale                      blocks.n.final_scale         (encoder_final_ln.hook_scale,
                                                                           decoder_final_ln.hook_scale for T5)
    hook_embed (rotary positions)            S.0.resid_post               hidden_states[0]
    a module path of the HF model            the site hooked at that module's output
      (``model.layers.12``, ``model.norm``,  (``.input``: its input), e.g. ``model.layers.12`` =
      optionally ``.output`` / ``.input``)   ``blocks.13.resid_post``, ``model.norm`` = ``blocks.n.resid_post``

Per-head and per-neuron sites share their block's hook: TransformerLens' ``attn.hook_q`` is
``[batch, pos, head, d_head]`` (``hook_k`` / ``hook_v``: ``[batch, pos, kv_head, d_head]``, one
entry per key/value head under grouped-query attention; ``hook_z`` likewise per query head),
and the harness site ``S.{k+1}.attn.q.head{h}`` is its slice ``[:, :, h]``; the all-heads site
``S.{k+1}.attn.q`` is the same tensor flattened to ``[batch, pos, head * d_head]``, heads side by
side. `site_for_hook` takes the head as ``head=h`` (sae-lens' ``hook_head_index``) and the
neurons of ``mlp.hook_pre`` / ``hook_pre_linear`` / ``hook_post`` as ``units=`` (the slice
``[..., units]``); `hook_ref_for_site` gives the shared name with that index (`hook_for_site`,
a name alone, refuses such a site rather than name every head of the block).

So Gemma Scope's ``layer_12`` residual SAE (``blocks.12.hook_resid_post``) reads
``blocks.13.resid_post``. The last block's ``hook_resid_post`` is *before* the final norm, so it
is ``S.n.block_out``, never the normalised ``S.n.resid_post``; `hook_for_site` names the latter
by the final norm's module path (no TransformerLens hook holds it: ``ln_final.hook_normalized``
is taken before the norm's weight). Module paths are those sae-lens hooks on a Hugging Face
model (``hook_name="model.layers.12"``; Gemma Scope 2's ``hf_hook_name``); a module whose
tensor is a site's only in part (a fused q/k/v projection) names no site. tests/harness/saes/
pins the table against each model's ``output_hidden_states`` and against TransformerLens itself
(a HookedTransformer with the same weights, GPT-2 and Gemma-2, every block and every hook here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from harness.errors import ShapeError, SiteError
from harness.models.loaded import LoadedModel
from harness.models.sites import HEAD_POINTS, PATTERN_POINTS, UNIT_POINTS, Site

__all__ = ["site_for_hook", "hook_for_site", "hook_ref_for_site", "HookRef", "sae_site"]

_TL = re.compile(r"^(?P<stack>[A-Za-z_]\w*)\.(?P<k>-?\d+)\.(?P<hook>(?:attn\.|mlp\.)?hook_\w+)$")
# TransformerLens' block-relative hook -> the harness point
_TL_HOOKS = {
    "hook_resid_pre": "resid_pre", "hook_resid_mid": "resid_mid", "hook_resid_post": "resid_post",
    "hook_attn_out": "attn_out", "hook_mlp_out": "mlp_out", "hook_cross_attn_out": "cross_attn_out",
    "mlp.hook_pre": "mlp_pre", "mlp.hook_pre_linear": "mlp_pre_linear", "mlp.hook_post": "mlp_post",
    "attn.hook_q": "attn.q", "attn.hook_k": "attn.k", "attn.hook_v": "attn.v", "attn.hook_z": "head",
    "attn.hook_attn_scores": "attn.scores", "attn.hook_pattern": "attn.pattern",
}
_POINT_HOOKS = {point: hook for hook, point in _TL_HOOKS.items()}
_FINAL_SCALE = {"blocks": "ln_final.hook_scale", "encoder": "encoder_final_ln.hook_scale",
                "decoder": "decoder_final_ln.hook_scale"}
# when several sites share one module tensor, the first of this order names it
_CANONICAL = ("resid_pre", "resid_post", "block_out", "attn_out", "mlp_out", "cross_attn_out", "resid_mid",
              "mlp_pre", "mlp_pre_linear", "mlp_post", "attn.q", "attn.k", "attn.v", "final_norm_in")


def _embed_is_resid_0(model: LoadedModel) -> bool:
    """TransformerLens' ``hook_embed`` is ``hidden_states[0]`` where positions enter only inside
    attention (rotary) and one stack runs (T5's encoder-decoder runs one hook_embed for two)."""
    return model.layout.positions == "rotary" and len(model.sites.stacks) == 1


def site_for_hook(model: LoadedModel, hook_name: str, *, head: int | None = None,
                  units: Sequence[int] | range | None = None) -> Site:
    """The harness site a hook name reads on `model` (the rule in the module docstring).

    Example::

        site_for_hook(gemma, "blocks.12.hook_resid_post")          # Site('blocks', 13, 'resid_post')
        site_for_hook(gemma, "blocks.25.hook_resid_post")          # Site('blocks', 26, 'block_out')
        site_for_hook(gemma, "blocks.2.attn.hook_k", head=1)       # blocks.3.attn.k.head1
        site_for_hook(gemma, "blocks.0.mlp.hook_post", units=[45]) # blocks.1.mlp_post.neuron45

    `head` goes with ``attn.hook_q/k/v`` (optional: without it, every head) and ``attn.hook_z``
    (required); `units` with the three MLP hooks. Raises `SiteError` for a name that is no site
    of this model (a point the architecture lacks, with the reason; a block index out of range;
    another model's module path), naming the valid forms, and for a head or units the name does
    not take.
    """
    if not isinstance(hook_name, str) or not hook_name.strip():
        raise SiteError("`hook_name` must be a non-empty string such as 'blocks.12.hook_resid_post', "
                        f"got {hook_name!r}")
    name = hook_name.strip()
    match = _TL.match(name)
    point = _TL_HOOKS.get(match["hook"]) if match is not None else None
    if match is not None and match["hook"] == "hook_resid_mid_cross" and match["stack"] in _stack_names(model) \
            and "cross_attn_out" in model.sites.stack(match["stack"]).points:
        point = "resid_mid"  # the decoder's residual between cross-attention and MLP
    elif point == "resid_mid" and match["stack"] in _stack_names(model) \
            and "cross_attn_out" in model.sites.stack(match["stack"]).points:
        point = None  # between self- and cross-attention: no harness site
    if point is not None:
        _check_extras(name, point, head, units)
        return _from_transformer_lens(model, name, match["stack"], int(match["k"]), point, head, units)
    _check_extras(name, None, head, units)
    scale = {v: k for k, v in _FINAL_SCALE.items()}.get(name)
    if scale is not None and scale in _stack_names(model):
        return _checked(model, name, Site(scale, model.sites.stack(scale).n_layers, "final_scale"))
    if name == "hook_embed":
        if _embed_is_resid_0(model):
            return model.site(model.main_stack, 0, "resid_post")
        raise SiteError(
            f"'hook_embed' of {model.name} ({model.layout.architecture}) is no harness site: "
            + ("TransformerLens' encoder-decoder runs one hook_embed for both stacks; "
               if len(model.sites.stacks) > 1 else
               f"its hidden_states[0] adds the {model.layout.positions} position embedding to it; ")
            + f"use '{model.main_stack}.0.hook_resid_pre' ({model.main_stack}.0.resid_post) instead"
        )
    path, kind = _split_module_hook(name)
    site = _module_sites(model).get((path, kind))
    if site is not None:
        return site
    raise SiteError(f"hook name {hook_name!r} is no site of {model.name}{_hint(name)}; {_valid_forms(model)}")


@dataclass(frozen=True)
class HookRef:
    """A hook name and, for a per-head or per-neuron site, the index into that hook's tensor:
    ``head`` (dimension 2 of ``[batch, pos, head, d_head]``) or ``units`` (the last dimension of
    an MLP hook's ``[batch, pos, d_mlp]``). ``site_for_hook(model, ref.name, head=ref.head,
    units=ref.units)`` gives the site back."""

    name: str
    head: int | None = None
    units: tuple[int, ...] | None = None


def hook_ref_for_site(model: LoadedModel, site: Site | str) -> HookRef:
    """The hook name of `site` (validated on `model`) with the head or neurons it takes there.

    Example::

        hook_ref_for_site(gemma, "blocks.3.attn.k.head1")        # HookRef('blocks.2.attn.hook_k', head=1)
        hook_ref_for_site(gemma, "blocks.1.mlp_post.neuron45")   # HookRef('blocks.0.mlp.hook_post', units=(45,))
        hook_ref_for_site(gemma, "blocks.13.resid_post")         # HookRef('blocks.12.hook_resid_post')

    Sites that share an activation share a name (``S.0.resid_post`` and ``S.1.resid_pre`` give
    ``S.0.hook_resid_pre``; ``S.L.block_out`` and ``S.L.resid_post`` for L < n give
    ``S.{L-1}.hook_resid_post``; ``S.n.final_norm_in`` and ``S.n.block_out`` give
    ``S.{n-1}.hook_resid_post``). Raises `SiteError` for a site the model lacks.
    """
    site = model.site(site)
    stack, k = site.stack, site.layer - 1
    shape = model.sites.stack(stack)
    n = shape.n_layers
    if site.point == "resid_post":
        if site.layer == 0:
            return HookRef(f"{stack}.0.hook_resid_pre")
        if site.layer == n:
            return HookRef(model.layout.stack(stack).final_norm)
        return HookRef(f"{stack}.{k}.hook_resid_post")
    if site.point in ("block_out", "final_norm_in"):
        return HookRef(f"{stack}.{k}.hook_resid_post")
    if site.point == "final_scale":
        return HookRef(_FINAL_SCALE.get(stack, f"{stack}_final_ln.hook_scale"))
    if site.point == "resid_mid" and "cross_attn_out" in shape.points:
        return HookRef(f"{stack}.{k}.hook_resid_mid_cross")
    return HookRef(f"{stack}.{k}.{_POINT_HOOKS[site.point]}", site.head, site.units)


def hook_for_site(model: LoadedModel, site: Site | str) -> str:
    """The hook name of `site` (validated on `model`): the inverse of `site_for_hook`, for a site
    that is its hook's whole tensor.

    Example::

        hook_for_site(gemma, "blocks.13.resid_post")      # 'blocks.12.hook_resid_post'
        hook_for_site(gemma, "blocks.26.resid_post")      # 'model.norm' (after the final norm)
        hook_for_site(gemma, "blocks.3.attn.q")           # 'blocks.2.attn.hook_q' (every head)

    Raises `SiteError` for a site the model lacks, and for one head or a set of neurons: the
    name alone would name every head or neuron of the block (an SAE saved with it would read
    another activation); `hook_ref_for_site` gives the name with the index.
    """
    ref = hook_ref_for_site(model, site)
    if ref.head is not None or ref.units is not None:
        part = f"head {ref.head}" if ref.head is not None else f"neurons {list(ref.units or ())}"
        raise SiteError(
            f"site {model.site(site)} is {part} of {ref.name!r}, which holds every "
            f"{'head' if ref.head is not None else 'neuron'} of the block; a name alone does not say which: "
            f"use hook_ref_for_site (name and index), or the whole-block site"
        )
    return ref.name


def sae_site(model: LoadedModel, sae: Any, site: Site | str | None = None) -> Site:
    """The site `sae` reads on `model`, after checking that its ``d_in`` is the site's width.

    Without `site`, the site comes from ``sae.cfg.metadata.hook_name`` (`site_for_hook`). With
    `site`, that site is used; if the SAE's hook name maps to a site of another activation, it
    is a `SiteError` naming both (a hook name that maps to no site is overridden by `site`).

    Raises `SiteError` (no hook name and no `site`; an SAE of one head, ``hook_head_index``
    set) and `ShapeError` (``d_in`` is not the site's width, both named).
    """
    cfg = getattr(sae, "cfg", None)
    if cfg is None or not hasattr(cfg, "d_in"):
        raise SiteError(f"`sae` must be a sae-lens SAE (with .cfg.d_in), got {type(sae).__name__}")
    metadata = getattr(cfg, "metadata", None)
    hook_name = metadata.get("hook_name") if metadata is not None else None
    head_index = metadata.get("hook_head_index") if metadata is not None else None
    if head_index is not None:
        raise SiteError(f"the SAE reads one head ({hook_name!r}, hook_head_index={head_index}); "
                        "per-head SAEs are not supported, only residual, attention-out and MLP-out sites")
    if site is None:
        if not hook_name:
            raise SiteError("the SAE has no `hook_name` in cfg.metadata; pass the site it reads, "
                            "e.g. site='blocks.13.resid_post'")
        chosen = site_for_hook(model, hook_name)
    else:
        chosen = model.site(site)
        declared = _maybe_site(model, hook_name)
        if declared is not None and model.hook_for(declared) != model.hook_for(chosen):
            raise SiteError(
                f"the SAE was trained at {hook_name!r}, which is {declared} on {model.name}, "
                f"not at {chosen}; pass site={str(declared)!r} or leave `site` out"
            )
    width = model.width(chosen)
    if int(cfg.d_in) != width:
        made_for = metadata.get("model_name") if metadata is not None else None
        raise ShapeError(
            f"the SAE's d_in is {int(cfg.d_in)} but site {chosen} of {model.name} has width {width}; "
            f"this SAE was made for another model (cfg.metadata.model_name={made_for!r}) or another site"
        )
    return chosen


def _stack_names(model: LoadedModel) -> list[str]:
    return [s.name for s in model.sites.stacks]


def _check_extras(name: str, point: str | None, head: Any, units: Any) -> None:
    if head is not None and point not in HEAD_POINTS + PATTERN_POINTS + ("head",):
        raise SiteError(f"`head` goes with the per-head hooks attn.hook_q/k/v/z/attn_scores/pattern, not with "
                        f"{name!r}; got head={head!r}")
    if units is not None and point not in UNIT_POINTS:
        raise SiteError(f"`units` go with the MLP hooks mlp.hook_pre/hook_pre_linear/hook_post, not with "
                        f"{name!r}; got units={units!r}")
    if point == "head" and head is None:
        raise SiteError(f"{name!r} holds every head of its block, [batch, pos, head, d_head]; the harness has "
                        "one site per head (attn.head{h}): pass head=h")
    if point in PATTERN_POINTS and head is None:
        raise SiteError(f"{name!r} holds every head of its block, [batch, head, query, key]; the harness has "
                        f"one site per head ({point}.head{{h}}): pass head=h")


def _checked(model: LoadedModel, name: str, site: Site) -> Site:
    try:
        return model.site(site)
    except SiteError as err:
        raise SiteError(f"hook name {name!r} is {site} on {model.name}, which is no site of it: {err}") from None


def _from_transformer_lens(model: LoadedModel, name: str, stack: str, k: int, point: str,
                           head: int | None, units: Sequence[int] | range | None) -> Site:
    stacks = _stack_names(model)
    if stack not in stacks:
        raise SiteError(f"hook name {name!r} names stack {stack!r}, which {model.name} does not have "
                        f"(stacks: {stacks}); {_valid_forms(model)}")
    shape = model.sites.stack(stack)
    n = shape.n_layers
    if not 0 <= k < n:
        raise SiteError(f"hook name {name!r} names block {k}, but {stack} of {model.name} has blocks "
                        f"0..{n - 1} (0-based, as TransformerLens counts them)")
    if point not in shape.points:
        why = dict(shape.lacks).get(point)
        raise SiteError(f"hook name {name!r}: {stack} of {model.name} has no {point}"
                        + (f" ({why})" if why else "")
                        + f" (points: {[p for p in shape.points if p != 'head']})")
    if point == "resid_post" and k == n - 1:  # TransformerLens' last resid_post is before the final norm
        return model.site(stack, n, "block_out")
    chosen = Site(stack, k + 1, point, head, None if units is None else tuple(units))
    return _checked(model, name, chosen)


def _split_module_hook(name: str) -> tuple[str, str]:
    for suffix, kind in ((".output", "output"), (".input", "input")):
        if name.endswith(suffix):
            return name[: -len(suffix)], kind
    return name, "output"


def _module_sites(model: LoadedModel) -> dict[tuple[str, str], Site]:
    """(module path, "output"|"input") -> the site hooked there, where the site is that module's
    whole tensor (no head's or neuron's columns of it); the `_CANONICAL` order breaks ties."""
    names = {id(module): path for path, module in model.module.named_modules()}
    out: dict[tuple[str, str], Site] = {}
    for shape in model.sites.stacks:
        for point in _CANONICAL:
            if point not in shape.points:
                continue
            if point in HEAD_POINTS:  # every head of the block: the projection's whole output, if separate
                sites = [Site(shape.name, layer, point) for layer in range(1, shape.n_layers + 1)]
            else:
                sites = model.sites.all_sites(point, shape.name)
            for site in sites:
                hook = model.hook_for(site)
                if hook.columns is None and hook.derive is None:
                    out.setdefault((names[id(hook.module)], hook.kind), site)
    return out


def _maybe_site(model: LoadedModel, hook_name: str | None) -> Site | None:
    if not hook_name:
        return None
    try:
        return site_for_hook(model, hook_name)
    except SiteError:
        return None


def _hint(name: str) -> str:
    if name.endswith("hook_resid_mid"):
        return " (T5's decoder hook_resid_mid lies between self- and cross-attention; the MLP's input is hook_resid_mid_cross)"
    if name.endswith(("hook_normalized", "hook_scale")):
        return (" (TransformerLens' norm hooks are taken before the norm's weight; of the norm scales only "
                "the final norm's, ln_final.hook_scale, is a site)")
    if name.endswith(("hook_rot_q", "hook_rot_k")):
        return " (queries and keys are sites before rotary, attn.hook_q / hook_k)"
    if name.endswith(("hook_attn_scores", "hook_pattern")):
        return (" (attention scores and patterns are sites only where the model's attention runs through "
                "transformers' attention interface; see the model's site table)")
    return ""


def _valid_forms(model: LoadedModel) -> str:
    forms = []
    for shape in model.sites.stacks:
        hooks = [h for h, p in _TL_HOOKS.items() if p in shape.points]
        if "resid_mid" in shape.points and "cross_attn_out" in shape.points:
            hooks = [h if h != "hook_resid_mid" else "hook_resid_mid_cross" for h in hooks]
        forms.append(f"'{shape.name}.K.{{{'|'.join(hooks)}}}' with K in 0..{shape.n_layers - 1}")
    blocks = model.layout.stacks[0].blocks
    final = model.layout.stacks[0].final_norm
    scales = [_FINAL_SCALE[s.name] for s in model.sites.stacks if "final_scale" in s.points and s.name in _FINAL_SCALE]
    extra = (f", {', '.join(repr(s) for s in scales)}" if scales else "") + (
        " or 'hook_embed'" if _embed_is_resid_0(model) else "")
    return (f"valid forms are {', '.join(forms)} (TransformerLens names, blocks counted from 0; attn.hook_q/k/v/z, "
            f"attn.hook_attn_scores and attn.hook_pattern take head=, the mlp hooks units=){extra}, "
            f"or a module path of the model such as '{blocks}.K' or '{final}' "
            "(its output; append '.input' for its input)")
