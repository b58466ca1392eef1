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

How it runs (`harness.measures.patching_engine`): one plain forward per run (clean and corrupt)
records every block's ``attn_out`` and ``mlp_out`` and captures every block's input and call
arguments; a cell at block L replays only blocks L.. of the corrupt run (on the suffix path only
from its patched position), cells of all pairs in the batch dimension; a cell whose clean value
equals the corrupt value bit for bit at every patched position is the corrupt run, with no
forward. Values equal a per-cell loop of full forwards
within 1e-4 (tests/harness/measures/test_patching.py). Every hook is removed when a call returns or raises.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from harness.errors import DataError
from harness.models.loaded import LoadedModel
from harness.measures.patching import Metric, PatchMap
from harness.measures.patching_engine import Block, Column, check_at, every_column, pair_runs, patch_cells, where_at

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
    check_at(at)
    stack = model.main_stack
    n_layers = model.sites.stack(stack).n_layers
    sites = [[model.site(stack, L, p) for p in cols] for L in range(1, n_layers + 1)]
    runs = pair_runs(model, clean, corrupt, metric, batch_size=batch_size, record=[s for row in sites for s in row])
    where = every_column(where_at(at, runs.mask), len(cols))

    def block(j: int) -> Block:
        return Block([Column(site, runs.clean_at[site], runs.corrupt_at[site]) for site in sites[j]], where)

    values = patch_cells(model, runs.corrupt, runs.mask, metric, blocks=block, n_blocks=n_layers,
                         batch_size=batch_size)
    return PatchMap(values=values, clean=runs.clean.metric, corrupt=runs.corrupt.metric,
                    lengths=runs.mask.sum(1).cpu(), kind="layer", fingerprint=model.fingerprint)
