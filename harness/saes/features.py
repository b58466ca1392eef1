"""SAE features at a site: their directions (to steer with) and their activations (to read).

    FeatureDirection      a `Direction` that is one feature's decoder row, with its index and SAE
    feature_direction     ``W_dec[feature]`` (``W_dec`` is ``[d_sae, d_in]``) at the SAE's site
    FeatureActivations    ``acts [n, pos, k]`` (zero at padding), ``mask [n, pos]``, the site
    encode_at             record a site over texts (padding-masked batches), then ``sae.encode``
    site_activations      a site's activations at every real token of some texts, ``[tokens, d]``

An SAE (Bricken et al. 2023, *Towards Monosemanticity*) writes an activation as
``x ~ b_dec + sum_i f_i(x) W_dec[i]``; adding ``alpha * W_dec[i]`` at the site is steering with
feature i (a JumpReLU SAE, Gemma Scope, Lieberum et al. 2024, has the same decoder). A
`FeatureDirection` is a `Direction`: `sweep` takes it as it is, `Add` / `RmsAdd` its ``vector``
(``[d_in]``, in the site's activation units).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from harness.errors import DataError
from harness.interventions import Record, intervene
from harness.measures.directions import Direction
from harness.models.loaded import LoadedModel, length_order, pad_rows
from harness.models.sites import Site
from harness.saes.hooks import sae_site

__all__ = ["FeatureDirection", "feature_direction", "FeatureActivations", "encode_at", "site_activations"]


@dataclass(frozen=True)
class FeatureDirection(Direction):
    """Feature `feature`'s decoder row of the SAE `sae` (a label) as a direction at `site`.

    ``vector`` is ``W_dec[feature]``, ``[d_in]`` float32 on the CPU, unscaled: ``norm`` is the
    decoder row's norm (1 for SAEs trained with unit-norm decoder rows), and ``kind`` says the
    feature, the SAE and the norm (what `save_directions` keeps).
    """

    feature: int = -1
    sae: str = ""


@dataclass(frozen=True)
class FeatureActivations:
    """Feature activations of n texts at one site.

    ``acts`` is ``[n, pos, k]`` float32 on the CPU (k = d_sae, or the chosen features in their
    order), zero at padding; ``mask`` is ``[n, pos]`` (1 at real tokens), pos the longest text's
    token count; rows are in the input order, tokens at their positions in the one-text run.
    """

    acts: torch.Tensor
    mask: torch.Tensor
    site: str
    features: tuple[int, ...] | None = None

    def tokens(self) -> torch.Tensor:
        """The activations at real tokens only, ``[tokens, k]`` (texts in order, then positions)."""
        return self.acts[self.mask.bool()]


def feature_direction(model: LoadedModel, sae: Any, feature: int, *, site: Site | str | None = None,
                      label: str | None = None) -> FeatureDirection:
    """The decoder row ``sae.W_dec[feature]`` as a direction at the SAE's site on `model`.

    Example::

        d = feature_direction(gemma, sae, 1234)    # at blocks.13.resid_post for blocks.12.hook_resid_post
        curve = sweep(gemma, prompts, at=d.site, direction=d, alphas=symmetric(8.0, steps=9), score=...)

    The site comes from the SAE's hook name (`sae_site`; pass `site` for an SAE without one).
    `label` names the SAE in ``kind`` (default: its Neuronpedia id, else ``sae.get_name()``).
    Raises `DataError` for a feature index that is not an int in ``0..d_sae-1`` (negative
    indices are refused, not wrapped), `SiteError` / `ShapeError` as `sae_site` does.
    """
    where = sae_site(model, sae, site)
    d_sae = int(sae.cfg.d_sae)
    index = _feature_index(feature, d_sae)
    vector = sae.W_dec[index].detach().to("cpu", torch.float32).clone()
    name = label or _sae_label(sae)
    kind = f"SAE feature {index} of {name} (decoder row W_dec[{index}], norm {float(vector.norm()):.4g})"
    return FeatureDirection(vector, str(where), kind, None, index, name)


@torch.no_grad()
def encode_at(model: LoadedModel, sae: Any, inputs: Sequence[str], *, site: Site | str | None = None,
              features: Sequence[int] | None = None, batch_size: int = 32,
              max_length: int | None = None) -> FeatureActivations:
    """Feature activations ``sae.encode(act)`` of each text at the SAE's site, ``[n, pos, k]``.

    Example::

        fa = encode_at(gemma, sae, texts, features=[1234, 77])   # fa.acts: [n, pos, 2]
        fa.tokens().gt(0).float().mean(0)                          # firing rate per feature

    The site is recorded with `Record` over batches right-padded with their attention mask
    (longest first; only the stack that holds the site runs), each batch is encoded, and the
    features at padding are set to 0. With `features`, only those columns are kept (the memory
    of ``[n, pos, d_sae]`` grows with a 16k-feature SAE). Raises `DataError` (empty or
    non-list `inputs`, a feature out of range, a decoder site of an encoder-decoder),
    `SiteError` / `ShapeError` as `sae_site` does.
    """
    where = sae_site(model, sae, site)
    d_sae = int(sae.cfg.d_sae)
    chosen = None if features is None else tuple(_feature_index(f, d_sae) for f in features)
    if chosen is not None and not chosen:
        raise DataError("`features` is empty; pass None for every feature or at least one index")
    rows, tokens = _tokens(model, inputs, where, max_length)
    width = max(len(t) for t in tokens)
    k = d_sae if chosen is None else len(chosen)
    acts = torch.zeros(len(rows), width, k, dtype=torch.float32)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for index, act, m in _recorded(model, tokens, where, batch_size):
        f = sae.encode(act.to(sae.W_dec.device, sae.W_dec.dtype))
        if chosen is not None:
            f = f[..., list(chosen)]
        f = f.float().cpu() * m[..., None].to(torch.float32)
        acts[index, : f.shape[1]] = f
        mask[index, : m.shape[1]] = m
    return FeatureActivations(acts, mask, str(where), chosen)


@torch.no_grad()
def site_activations(model: LoadedModel, inputs: Sequence[str], site: Site | str, *, batch_size: int = 32,
                     max_length: int | None = None) -> torch.Tensor:
    """The activation at `site` at every real token of the inputs, ``[tokens, d]`` float32 on the CPU.

    Texts in input order, each text's tokens in position order; padding is never included.
    What an SAE at `site` is trained and measured on (`train_sae`, `measure_sae`).
    """
    where = model.site(site)
    rows, tokens = _tokens(model, inputs, where, max_length)
    per_row: list[torch.Tensor | None] = [None] * len(rows)
    for index, act, m in _recorded(model, tokens, where, batch_size):
        for j, i in enumerate(index.tolist()):
            per_row[i] = act[j, : int(m[j].sum())].float().cpu()
    return torch.cat(per_row)  # type: ignore[arg-type]


def _tokens(model: LoadedModel, inputs: Sequence[str], site: Site,
            max_length: int | None) -> tuple[list[str], list[list[int]]]:
    if isinstance(inputs, str):
        raise DataError("`inputs` must be a list of strings, got a single str; wrap it in a list")
    rows = list(inputs)
    if not rows:
        raise DataError("`inputs` is empty; give at least one text")
    if model.is_encoder_decoder and site.stack != model.main_stack:
        raise DataError(f"SAE activations are read from the {model.main_stack} of an encoder-decoder; "
                        f"got {site} (its inputs would need decoder tokens)")
    tokens = model.tokenize(rows, max_length=max_length)
    empty = [i for i, t in enumerate(tokens) if not t]
    if empty:
        raise DataError(f"inputs {empty[:5]} tokenize to nothing; every text needs at least one token")
    return rows, tokens


def _recorded(model: LoadedModel, tokens: list[list[int]], site: Site,
              batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(row indices ``[b]``, activation ``[b, pos, d]``, attention mask ``[b, pos]`` on the CPU) per batch."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"`batch_size` must be a positive int, got {batch_size!r}")
    order = length_order(tokens)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, mask = pad_rows([tokens[i] for i in chunk], pad_id=model.pad_id, device=model.device)
        with intervene(model, {site: Record()}, masks={site.stack: mask}) as run:
            if model.is_encoder_decoder:
                model.module.get_encoder()(input_ids=ids, attention_mask=mask)
            else:
                model.module(input_ids=ids, attention_mask=mask)
        yield torch.as_tensor(chunk), run.recorded[site], mask.cpu()


def _feature_index(feature: Any, d_sae: int) -> int:
    try:
        if isinstance(feature, bool):
            raise TypeError
        index = operator.index(feature)
    except TypeError:
        raise DataError(f"a feature index must be an int in 0..{d_sae - 1}, got {feature!r}") from None
    if not 0 <= index < d_sae:
        raise DataError(f"feature {index} is out of range: the SAE has d_sae={d_sae} features, "
                        f"indices 0..{d_sae - 1} (negative indices are not wrapped)")
    return index


def _sae_label(sae: Any) -> str:
    metadata = getattr(sae.cfg, "metadata", None)
    neuronpedia = metadata.get("neuronpedia_id") if metadata is not None else None
    return str(neuronpedia) if neuronpedia else str(sae.get_name())
