"""Activation patching of what each block's attention and MLP add to the residual stream.

    patch_layer_map(model, clean, corrupt, metric)   ``blocks.L.attn_out`` / ``blocks.L.mlp_out`` of
                                                     every block, at the last token (or all
                                                     positions), clean -> corrupt

A cell replaces, in the corrupt run of a pair, the output of block L's attention (``attn_out``,
TransformerLens' ``blocks.{L-1}.hook_attn_out``) or of its MLP (``mlp_out``, ``hook_mlp_out``)
with the clean run's, at the pair's last real token (``at="last"``, the default: which layer's
attention or MLP output at the final position recovers most) or at every position
(``at="all"``), and reads the metric at the last token (the metric protocol and layer
numbering are `harness.measures.patching`'s). On Gemma-2 the sites are after the block's
post-attention / post-feed-forward norms, i.e. exactly what is added to the residual.

How it runs: one plain forward per run (clean and corrupt) records every block's ``attn_out``
and ``mlp_out`` (`harness.interventions.Record`) and captures every block's input and call
arguments (`harness.measures.replay`); a cell at block L replays only blocks L.. of the corrupt
run (on the suffix path only from its patched position), cells of all pairs in the batch
dimension; a cell whose clean value equals the corrupt value bit for bit at every patched
position is the corrupt run, with no forward. Values equal a per-cell loop of full forwards
within 1e-4 (tests/harness/measures/test_patching.py). Every hook is removed when a call returns or raises.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from harness.errors import DataError
from harness.interventions import Patch, Positions, Record, intervene
from harness.models.load import LoadedModel, pad_rows
from harness.measures.patching import Metric, PatchMap, _pairs, _where_at
from harness.measures.replay import _plain, _replay_cells, _suffix_ok

__all__ = ["patch_layer_map", "LAYER_POINTS"]

LAYER_POINTS = ("attn_out", "mlp_out")


def _points(points: Any) -> tuple[str, ...]:
    if isinstance(points, str):
        raise DataError(f"`points` must be a tuple of point names, got the single string {points!r}; "
                        f"write points=({points!r},)")
    out = tuple(points)
    bad = [p for p in out if p not in LAYER_POINTS]
    if not out or bad or len(set(out)) != len(out):
        raise DataError(f"`points` must be distinct names among {list(LAYER_POINTS)} (what block L's attention "
                        f"or MLP adds to the residual), got {list(out)}")
    return out


def _recorded_run(model: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, metric: Metric,
                  sites: list, kv: bool):
    """`_plain` of one run, with every site in `sites` recorded in the same forward."""
    with intervene(model, {site: Record() for site in sites}, masks={model.main_stack: mask}) as rec:
        run = _plain(model, ids, mask, metric, heads=False, kv=kv)
    return run, rec.recorded


@torch.no_grad()
def patch_layer_map(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], metric: Metric, *,
                    points: Sequence[str] = LAYER_POINTS, at: str = "last", batch_size: int = 256) -> PatchMap:
    """Patch ``blocks.L.{point}`` from clean into corrupt for every block L and point.

    Example::

        pm = patch_layer_map(m, clean_prompts, corrupt_prompts, answer_logit_diff(io, s))
        pm.values      # [n_pairs, n_layers, 2]: column 0 attn_out, column 1 mlp_out
        pm.mean()      # [n_layers, 2]

    `clean`, `corrupt`, `metric`, `batch_size`: as `patch_resid_map`. `points`: which of
    ``attn_out`` and ``mlp_out``, in the order of the map's columns. `at`: "last" (each pair's
    last real token) or "all" (every position). The map's ``kind`` is ``"layer"``.

    Raises `DataError` for a bad `points` or `at` (and the errors of `patch_resid_map` for bad
    pairs or metrics).
    """
    cols = _points(points)
    real_at = _where_at(at)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"`batch_size` must be a positive integer, got {batch_size}")
    if not callable(metric):
        raise DataError(f"`metric` must be a callable metric(logits, pairs) -> [rows], got {metric!r}")
    a, b = _pairs(model, clean, corrupt)
    ids_c, mask = pad_rows(a, pad_id=model.pad_id, device=model.device)
    ids_x, _ = pad_rows(b, pad_id=model.pad_id, device=model.device)
    stack = model.main_stack
    n_layers = model.sites.stack(stack).n_layers
    sites = [[model.site(stack, L, p) for p in cols] for L in range(1, n_layers + 1)]
    flat = [s for row in sites for s in row]
    clean_run, clean_at = _recorded_run(model, ids_c, mask, metric, flat, kv=False)
    corrupt_run, corrupt_at = _recorded_run(model, ids_x, mask, metric, flat, kv=_suffix_ok(model))
    n, width = mask.shape
    on = real_at(mask)                                                       # [n, pos] patched positions
    position = torch.arange(width, device=mask.device)
    values = torch.empty(n, n_layers, len(cols))
    for j in range(n_layers):
        values[:, j, :] = corrupt_run.metric[:, None]                        # an unchanged output: the corrupt run
        # [n, pos, points]: where the clean output differs from the corrupt one at a patched position
        differs = torch.stack([(clean_at[s] != corrupt_at[s]).any(-1) for s in sites[j]], -1) & on[..., None]
        first = torch.where(differs, position[None, :, None], width).amin(1)  # [n, points]
        todo = differs.any(1).nonzero()                                      # (pair, point) cells
        if todo.numel() == 0:
            continue
        pairs, col_of = todo[:, 0], todo[:, 1]

        def plan(rows: torch.Tensor, cells: torch.Tensor, start: int, j=j, col_of=col_of) -> dict:
            which = col_of[cells]
            where = on.index_select(0, rows)[:, start:]
            out = {}
            for c, site in enumerate(sites[j]):
                here = which == c
                if bool(here.any()):
                    src = clean_at[site].index_select(0, rows)[:, start:]
                    out[site] = Patch(src, Positions.of_mask(where & here[:, None]))
            return out

        got = _replay_cells(model, corrupt_run, mask, block=j, pairs=pairs, firsts=first[pairs, col_of],
                            plan=plan, metric=metric, batch_size=batch_size)
        values[pairs.cpu(), j, col_of.cpu()] = got
    return PatchMap(values=values, clean=clean_run.metric, corrupt=corrupt_run.metric,
                    lengths=mask.sum(1).cpu(), kind="layer", fingerprint=model.fingerprint)
