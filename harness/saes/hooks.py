"""An SAE's hook name <-> the harness's `Site`, and the check that an SAE fits its site.

    site_for_hook   "blocks.12.hook_resid_post" -> Site("blocks", 13, "resid_post") on this model
    hook_for_site   the inverse: the hook name an SAE trained at a site carries
    sae_site        the site an SAE reads (from ``sae.cfg.metadata.hook_name``), its ``d_in`` checked

sae-lens, Gemma Scope and TransformerLens count blocks from 0; the harness counts them from 1
and numbers ``resid_post`` as Hugging Face ``output_hidden_states`` (README, *Sites, and how
layers are numbered*). With S the stack (``blocks`` for decoder-only models, ``encoder`` /
``decoder`` for T5, the names of TransformerLens' HookedEncoderDecoder), n its block count and
k a 0-based block index:

    hook name (TransformerLens / sae-lens)   harness site                 HF output_hidden_states
    S.k.hook_resid_pre                       S.{k+1}.resid_pre            hidden_states[k]
    S.k.hook_resid_post, k + 1 < n           S.{k+1}.resid_post           hidden_states[k+1]
    S.{n-1}.hook_resid_post                  S.n.block_out                the final norm's input
    S.k.hook_attn_out, S.k.hook_mlp_out      S.{k+1}.attn_out, mlp_out    (after Gemma-2's post-norms)
    decoder.k.hook_cross_attn_out            decoder.{k+1}.cross_attn_out
    hook_embed (Llama, Qwen2, Gemma-2 only)  blocks.0.resid_post          hidden_states[0]
    a module path of the HF model            the site hooked at that module's output
      (``model.layers.12``, ``model.norm``,  (``.input``: its input), e.g. ``model.layers.12`` =
      optionally ``.output`` / ``.input``)   ``blocks.13.resid_post``, ``model.norm`` = ``blocks.n.resid_post``

So Gemma Scope's ``layer_12`` residual SAE (``blocks.12.hook_resid_post``) reads
``blocks.13.resid_post``. The last block's ``hook_resid_post`` is *before* the final norm, so it
is ``S.n.block_out``, never the normalised ``S.n.resid_post``; `hook_for_site` names the latter
by the final norm's module path (no TransformerLens hook holds it: ``ln_final.hook_normalized``
is taken before the norm's weight). Module paths are those sae-lens hooks on a Hugging Face
model (``hook_name="model.layers.12"``; Gemma Scope 2's ``hf_hook_name``). tests/harness/saes/test_saes.py
pins the table against each model's ``output_hidden_states`` and against TransformerLens itself
(a HookedTransformer with the same weights, GPT-2 and Gemma-2, every block).
"""

from __future__ import annotations

import re
from typing import Any

from harness.errors import ShapeError, SiteError
from harness.models.load import LoadedModel
from harness.models.sites import Site

__all__ = ["site_for_hook", "hook_for_site", "sae_site"]

_TL = re.compile(r"^(?P<stack>[A-Za-z_]\w*)\.(?P<k>-?\d+)\.hook_(?P<point>\w+)$")
_TL_POINTS = ("resid_pre", "resid_post", "attn_out", "mlp_out", "cross_attn_out")
_NO_POSITIONS = ("llama", "gemma2")  # architectures whose hidden_states[0] is the token embedding alone
# when several sites share one hook, the first of this order names it
_CANONICAL = ("resid_pre", "resid_post", "block_out", "attn_out", "mlp_out", "cross_attn_out")


def site_for_hook(model: LoadedModel, hook_name: str) -> Site:
    """The harness site an SAE with this ``hook_name`` reads on `model` (the rule in the module docstring).

    Example::

        site_for_hook(gemma, "blocks.12.hook_resid_post")   # Site('blocks', 13, 'resid_post')
        site_for_hook(gemma, "blocks.25.hook_resid_post")   # Site('blocks', 26, 'block_out')

    Raises `SiteError` for a name that is no site of this model (``hook_resid_mid``,
    ``attn.hook_z``, a block index out of range, another model's module path), naming the
    valid forms.
    """
    if not isinstance(hook_name, str) or not hook_name.strip():
        raise SiteError("`hook_name` must be a non-empty string such as 'blocks.12.hook_resid_post', "
                        f"got {hook_name!r}")
    name = hook_name.strip()
    match = _TL.match(name)
    if match is not None and match["point"] in _TL_POINTS:
        return _from_transformer_lens(model, name, match["stack"], int(match["k"]), match["point"])
    if name == "hook_embed":
        if model.layout.architecture in _NO_POSITIONS:
            return model.site(model.main_stack, 0, "resid_post")
        raise SiteError(
            f"'hook_embed' of {model.name} ({model.layout.architecture}) is no harness site: "
            + ("GPT-2's hidden_states[0] adds the position embedding to it; "
               if model.layout.architecture == "gpt2" else
               "TransformerLens' T5 runs one hook_embed for both stacks; ")
            + f"use '{model.main_stack}.0.hook_resid_pre' ({model.main_stack}.0.resid_post) instead"
        )
    path, kind = _split_module_hook(name)
    site = _module_sites(model).get((path, kind))
    if site is not None:
        return site
    raise SiteError(f"hook name {hook_name!r} is no site of {model.name}{_hint(name)}; {_valid_forms(model)}")


def hook_for_site(model: LoadedModel, site: Site | str) -> str:
    """The hook name of `site` (validated on `model`): the inverse of `site_for_hook`.

    Example::

        hook_for_site(gemma, "blocks.13.resid_post")   # 'blocks.12.hook_resid_post'
        hook_for_site(gemma, "blocks.26.resid_post")   # 'model.norm' (after the final norm)

    Sites that share an activation share a name (``S.0.resid_post`` and ``S.1.resid_pre`` give
    ``S.0.hook_resid_pre``; ``S.L.block_out`` and ``S.L.resid_post`` for L < n give
    ``S.{L-1}.hook_resid_post``). Raises `SiteError` for a per-head site: TransformerLens'
    ``attn.hook_z`` holds every head of a block, and one head has no hook name of its own.
    """
    site = model.site(site)
    stack, k = site.stack, site.layer - 1
    n = model.sites.stack(stack).n_layers
    if site.point == "head":
        raise SiteError(
            f"per-head site {site} has no SAE hook name: '{stack}.{k}.attn.hook_z' holds every head "
            "of the block, concatenated; SAEs here read a residual, attention-out or MLP-out site"
        )
    if site.point == "resid_post":
        if site.layer == 0:
            return f"{stack}.0.hook_resid_pre"
        if site.layer == n:
            return model.layout.stack(stack).final_norm
        return f"{stack}.{k}.hook_resid_post"
    if site.point == "block_out":
        return f"{stack}.{k}.hook_resid_post"
    return f"{stack}.{k}.hook_{site.point}"


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


def _from_transformer_lens(model: LoadedModel, name: str, stack: str, k: int, point: str) -> Site:
    stacks = [s.name for s in model.sites.stacks]
    if stack not in stacks:
        raise SiteError(f"hook name {name!r} names stack {stack!r}, which {model.name} does not have "
                        f"(stacks: {stacks}); {_valid_forms(model)}")
    shape = model.sites.stack(stack)
    n = shape.n_layers
    if not 0 <= k < n:
        raise SiteError(f"hook name {name!r} names block {k}, but {stack} of {model.name} has blocks "
                        f"0..{n - 1} (0-based, as TransformerLens counts them)")
    if point not in shape.points:
        raise SiteError(f"hook name {name!r}: {stack} of {model.name} has no {point} "
                        f"(points: {[p for p in shape.points if p != 'head']})")
    if point == "resid_post" and k == n - 1:  # TransformerLens' last resid_post is before the final norm
        return model.site(stack, n, "block_out")
    return model.site(stack, k + 1, point)


def _split_module_hook(name: str) -> tuple[str, str]:
    for suffix, kind in ((".output", "output"), (".input", "input")):
        if name.endswith(suffix):
            return name[: -len(suffix)], kind
    return name, "output"


def _module_sites(model: LoadedModel) -> dict[tuple[str, str], Site]:
    """(module path, "output"|"input") -> the site hooked there; the `_CANONICAL` order breaks ties."""
    names = {id(module): path for path, module in model.module.named_modules()}
    out: dict[tuple[str, str], Site] = {}
    for shape in model.sites.stacks:
        for point in _CANONICAL:
            if point not in shape.points:
                continue
            for site in model.sites.all_sites(point, shape.name):
                hook = model.hook_for(site)
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
    if name.endswith("hook_resid_mid") or name.endswith("hook_resid_mid_cross"):
        return " (the residual between attention and MLP is not a harness site)"
    if name.endswith("hook_z"):
        return " (attn.hook_z holds every head of a block; the harness has one head per site, attn.head{h})"
    if name.endswith(("hook_normalized", "hook_scale")):
        return " (TransformerLens' norm hooks are taken before the norm's weight)"
    return ""


def _valid_forms(model: LoadedModel) -> str:
    forms = []
    for shape in model.sites.stacks:
        points = "|".join(p for p in _TL_POINTS if p in shape.points)
        forms.append(f"'{shape.name}.K.hook_{{{points}}}' with K in 0..{shape.n_layers - 1}")
    blocks = model.layout.stacks[0].blocks
    final = model.layout.stacks[0].final_norm
    extra = " or 'hook_embed'" if model.layout.architecture in _NO_POSITIONS else ""
    return (f"valid forms are {', '.join(forms)} (TransformerLens names, blocks counted from 0){extra}, "
            f"or a module path of the model such as '{blocks}.K' or '{final}' "
            "(its output; append '.input' for its input)")
