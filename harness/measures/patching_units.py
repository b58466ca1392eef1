"""Activation patching of single MLP neurons and of each head's queries, keys or values.

    patch_neuron_map(model, clean, corrupt, metric)   layer x neuron: one neuron (column) of
                                                      ``blocks.L.mlp_post`` (or ``mlp_pre``,
                                                      ``mlp_pre_linear``) at a time, at the last
                                                      token (or all positions)
    patch_qkv_map(model, clean, corrupt, metric, which="q")
                                                      layer x head: head h's queries (``attn.q.head{h}``),
                                                      or key/value head g's keys or values
                                                      (``attn.k.head{g}``, ``attn.v.head{g}``)
    SitePatchMap                                      the `PatchMap` both return, which names its
                                                      rows (layers) and columns (neurons or heads)
    NEURON_POINTS                                     the points a neuron map may patch

A cell replaces, in the corrupt run of a pair, one site of the family by the clean run's value
at the pair's last real token (``at="last"``) or at every position (``at="all"``) and reads the
metric at the last token (the metric protocol and layer numbering are
`harness.measures.patching`'s). A neuron cell is the site ``blocks.L.mlp_post.neuron{u}``
(TransformerLens ``blocks.{L-1}.mlp.hook_post[:, :, u]``); a query cell ``blocks.L.attn.q.head{h}``
(``hook_q[:, :, h]``, before rotary); under grouped-query attention a key or value cell is a
key/value head g, which every query head of group g reads (`harness.models.sites`), so the
columns of a k or v map are the ``n_kv_heads`` key/value heads.

How it runs (`harness.measures.patching_engine`): one plain forward per run records every map
block's whole ``mlp_post`` (or ``attn.q`` ...); each column cuts its neuron or head from it; a
cell at block L replays only blocks L.. of the corrupt run, cells of all pairs and columns in
the batch dimension, the cells of a chunk patched by one edit of the whole activation (each row
at its own neuron or head: no hook per neuron), and a cell whose clean value equals the corrupt one bit for bit is the
corrupt run, with no forward. Values equal a per-cell loop of full forwards with raw hooks on
the Hugging Face modules within 1e-5 in float32 (tests/harness/measures/test_patching_units.py). Every hook
is removed when a call returns or raises.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from harness.errors import DataError
from harness.models.loaded import LoadedModel
from harness.models.sites import UNIT_POINTS, Site
from harness.measures.patching import Metric, PatchMap
from harness.measures.patching_engine import Block, Column, check_at, every_column, pair_runs, patch_cells, where_at

__all__ = ["patch_neuron_map", "patch_qkv_map", "SitePatchMap", "NEURON_POINTS"]

NEURON_POINTS = UNIT_POINTS   # mlp_pre, mlp_pre_linear, mlp_post


@dataclass(frozen=True)
class SitePatchMap(PatchMap):
    """A `PatchMap` whose cells are named sites: ``values[i, r, c]`` is pair i with the site
    ``site(r, c)`` patched, row r being block ``layers[r]`` and column c the neuron or head
    ``columns[c]``.

    ``point``: the point patched (``"mlp_post"``, ``"attn.k"``, ...). ``block_layers``: the
    harness layer of each row (1-based). ``columns``: the neuron indices, or the head indices.
    ``column_kind``: what a column is, ``"neuron"``, ``"query head"`` or ``"key/value head"``
    (keys and values under grouped-query attention belong to key/value heads). ``at``:
    ``"last"`` or ``"all"``, the positions each cell patched.
    """

    point: str
    block_layers: tuple[int, ...]
    columns: tuple[int, ...]
    column_kind: str
    at: str
    stack: str

    @property
    def layers(self) -> list[int]:
        """The harness layer of each row of the map (``blocks.{L}.…``)."""
        return list(self.block_layers)

    def site(self, row: int, column: int) -> Site:
        """The site cell (`row`, `column`) patched, e.g. ``blocks.3.mlp_post.neuron45``."""
        layer, index = self.block_layers[row], self.columns[column]
        if self.column_kind == "neuron":
            return Site(self.stack, layer, self.point, units=(index,))
        return Site(self.stack, layer, self.point, head=index)


# --------------------------------------------------------------------------- checks


def _layers(model: LoadedModel, layers: Any) -> tuple[int, ...]:
    n = model.sites.stack(model.main_stack).n_layers
    if layers is None:
        return tuple(range(1, n + 1))
    if isinstance(layers, numbers.Integral) and not isinstance(layers, bool):
        raise DataError(f"`layers` must be a list of block numbers, got the single block {layers!r}; "
                        f"write layers=[{layers}]")
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise DataError(f"`layers` must be a list of block numbers in 1..{n}, got {layers!r}")
    out = list(layers)
    bad = [L for L in out if isinstance(L, bool) or not isinstance(L, numbers.Integral) or not 1 <= L <= n]
    if not out or bad or len(set(out)) != len(out):
        what = f"{bad[0]!r} is not one" if bad else ("it is empty" if not out else "it repeats a block")
        raise DataError(f"`layers` must be distinct block numbers in 1..{n} of {model.name} (blocks are counted "
                        f"from 1), got {out}: {what}; leave layers=None for every block")
    return tuple(int(L) for L in out)


def _units(model: LoadedModel, units: Any, point: str, layers: tuple[int, ...]) -> tuple[int, ...]:
    if units is None:
        d_mlp = model.width(model.site(model.main_stack, layers[0], point))
        return tuple(range(d_mlp))
    if isinstance(units, numbers.Integral) and not isinstance(units, bool):
        raise DataError(f"`units` must be a list of neuron indices, got the single index {units!r}; "
                        f"write units=[{units}]")
    for L in layers:  # the site table checks types and ranges and names `units` and d_mlp
        site = model.site(model.main_stack, L, point, units=units)
    return site.units  # type: ignore[return-value]


def _point(point: Any) -> str:
    if point not in NEURON_POINTS:
        raise DataError(f"`point` must be one of {list(NEURON_POINTS)} (the MLP points that have neurons), got "
                        f"{point!r}; patch what the MLP adds to the residual with patch_layer_map")
    return point


def _which(which: Any) -> str:
    if which not in ("q", "k", "v"):
        raise DataError(f"`which` must be 'q' (queries), 'k' (keys) or 'v' (values), got {which!r}; "
                        "patch a head's output with patch_head_map")
    return which


# --------------------------------------------------------------------------- the maps


def _run_map(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], metric: Metric, *, point: str,
             layers: tuple[int, ...], columns: Sequence[tuple[Site, slice]], at: str,
             batch_size: int) -> tuple[torch.Tensor, Any]:
    """Values ``[n, len(layers), len(columns)]`` and the runs; ``columns``: per column, a site
    at layer 1 (its point and index) and its slice of the whole point's activation."""
    stack = model.main_stack
    whole = {L: model.site(stack, L, point) for L in layers}
    runs = pair_runs(model, clean, corrupt, metric, batch_size=batch_size, record=list(whole.values()))
    where = every_column(where_at(at, runs.mask), len(columns))

    def block(j: int) -> Block:
        site = whole[j + 1]
        return Block([Column(Site(stack, j + 1, point, s.head, s.units), runs.clean_at[site], runs.corrupt_at[site],
                             select=cut, within=site) for s, cut in columns], where)

    values = patch_cells(model, runs.corrupt, runs.mask, metric, blocks=block, n_blocks=[L - 1 for L in layers],
                         batch_size=batch_size)
    return values, runs


@torch.no_grad()
def patch_neuron_map(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], metric: Metric, *,
                     point: str = "mlp_post", layers: Sequence[int] | None = None,
                     units: Sequence[int] | None = None, at: str = "last", batch_size: int = 256) -> SitePatchMap:
    """Patch each MLP neuron, one at a time, from clean into corrupt.

    Example::

        pm = patch_neuron_map(m, clean_prompts, corrupt_prompts, answer_logit_diff(io, s),
                              layers=[9, 10], units=range(0, 3072, 64))
        pm.values           # [n_pairs, 2, 48]: block 9 and 10 x the 48 neurons
        pm.mean()           # [2, 48]
        pm.site(1, 0)       # Site 'blocks.10.mlp_post.neuron0'

    `clean`, `corrupt`, `metric`, `batch_size`: as `harness.measures.patching.patch_resid_map`
    (pair i of equal token length in both, pairs right padded). `point`: ``"mlp_post"`` (the
    input of the down projection, TransformerLens ``hook_post``), ``"mlp_pre"`` (what the
    activation function reads; a gated MLP's gate projection) or ``"mlp_pre_linear"`` (a gated
    MLP's up projection). `layers`: the blocks (1-based) of the map's rows, every block by
    default. `units`: the neurons of its columns, in that order, all ``d_mlp`` by default.
    `at`: ``"last"`` (each pair's last real token) or ``"all"`` (every position). The map's
    ``kind`` is ``"neuron"`` (``"neuron_all"`` with ``at="all"``); its values are
    ``[n_pairs, len(layers), len(units)]`` float32.

    Raises `DataError` for a `point` other than the neuron points, a bad `layers`, `units` given
    as one int, or a bad `at`; `SiteError` for a neuron index outside ``0..d_mlp - 1`` (naming
    ``d_mlp``) or a model whose blocks lack the point (a mixture-of-experts MLP: the site
    table says why); and the errors of `patch_resid_map` for bad pairs or metrics.
    """
    point = _point(point)
    check_at(at)
    chosen = _layers(model, layers)
    model.site(model.main_stack, chosen[0], point)   # the point exists (the site table's error if not)
    picked = _units(model, units, point, chosen)
    columns = [(Site(model.main_stack, 1, point, units=(u,)), slice(u, u + 1)) for u in picked]
    values, runs = _run_map(model, clean, corrupt, metric, point=point, layers=chosen, columns=columns, at=at,
                            batch_size=batch_size)
    return SitePatchMap(values=values, clean=runs.clean.metric, corrupt=runs.corrupt.metric,
                        lengths=runs.mask.sum(1).cpu(), kind="neuron" if at == "last" else "neuron_all",
                        fingerprint=model.fingerprint, point=point, block_layers=chosen, columns=picked,
                        column_kind="neuron", at=at, stack=model.main_stack)


@torch.no_grad()
def patch_qkv_map(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], metric: Metric, *,
                  which: str = "q", layers: Sequence[int] | None = None, at: str = "all",
                  batch_size: int = 256) -> SitePatchMap:
    """Patch each head's queries, keys or values, one head at a time, from clean into corrupt.

    Example::

        pm = patch_qkv_map(m, clean_prompts, corrupt_prompts, answer_logit_diff(io, s), which="k")
        pm.values           # [n_pairs, n_layers, n_kv_heads]: the key/value heads
        pm.column_kind      # 'key/value head'
        pm.site(0, 1)       # Site 'blocks.1.attn.k.head1'

    `which`: ``"q"`` (the queries of query head h, ``attn.q.head{h}``), ``"k"`` or ``"v"`` (the
    keys or values of key/value head g, ``attn.k.head{g}`` / ``attn.v.head{g}``: under
    grouped-query attention the map's columns are the ``n_kv_heads`` key/value heads, query head
    h reading key/value head ``h // (n_heads // n_kv_heads)``). Queries and keys are the
    projections' outputs, before rotary. `at`: ``"all"`` (every position, TransformerLens
    ``get_act_patch_attn_head_{q,k,v}_all_pos``) or ``"last"`` (each pair's last real token).
    `layers`, `clean`, `corrupt`, `metric`, `batch_size`: as `patch_neuron_map`. The map's
    ``kind`` is ``"q"``, ``"k"`` or ``"v"`` (with ``"_last"`` for ``at="last"``); its values
    are ``[n_pairs, len(layers), heads]`` float32.

    Raises `DataError` for a `which` other than "q", "k", "v", a bad `layers` or `at`;
    `SiteError` for a model whose attention has no such site; and the errors of
    `patch_resid_map` for bad pairs or metrics.
    """
    which = _which(which)
    check_at(at)
    chosen = _layers(model, layers)
    point = f"attn.{which}"
    model.site(model.main_stack, chosen[0], point)   # the point exists (the site table's error if not)
    shape = model.sites.stack(model.main_stack)
    n_heads, d_head = shape.heads_of(point), shape.d_head
    columns = [(Site(model.main_stack, 1, point, head=h), slice(h * d_head, (h + 1) * d_head))
               for h in range(n_heads)]
    values, runs = _run_map(model, clean, corrupt, metric, point=point, layers=chosen, columns=columns, at=at,
                            batch_size=batch_size)
    return SitePatchMap(values=values, clean=runs.clean.metric, corrupt=runs.corrupt.metric,
                        lengths=runs.mask.sum(1).cpu(), kind=which if at == "all" else f"{which}_last",
                        fingerprint=model.fingerprint, point=point, block_layers=chosen, columns=tuple(range(n_heads)),
                        column_kind="query head" if which == "q" else "key/value head", at=at,
                        stack=model.main_stack)
