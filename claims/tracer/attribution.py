"""The tracer study's patching maps and their attribution-patching estimates, over the same pairs
with the same metric (`harness.measures.attribution`).

    FAMILIES                        the site families the study patches: ``resid`` (``resid_pre`` of
                                    every block at every position), ``heads`` (each head's output at
                                    the final position), ``outputs`` (each block's ``attn_out`` and
                                    ``mlp_out`` at the final position)
    pair_args(model, pairs)         the maps' clean programs (a), corrupt programs (b) and metric
                                    logit(a's answer) - logit(b's answer), first answer tokens
    patch(model, pairs, family)     the activation-patching map of a family (`PatchMap`)
    attribute(model, pairs, family) its attribution-patching estimate: a `PatchMap` of the same
                                    shape, ``values`` = corrupt metric + the first-order estimate
    effects_on(estimate, measured, rows)  both maps' effects (`harness.patch_effects`) over the
                                    estimate's pairs, rows `rows` of the measured map, one width

Both maps of a family take their programs and metric from `pair_args`, so their ``clean`` and
``corrupt`` metrics are the same runs' (checked in ``tests/studies/tracer``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from harness import (DataError, LoadedModel, Metric, PatchMap, patch_effects, answer_logit_diff, attribute_head_map, attribute_layer_map,
                     attribute_resid_map, patch_head_map, patch_layer_map, patch_resid_map)

from claims.tracer.programs import answer_ids

FAMILIES = {
    "resid": "resid_pre of every block at every position",
    "heads": "each head's output at the final position",
    "outputs": "each block's attn_out and mlp_out at the final position",
}
OUTPUT_POINTS = ("attn_out", "mlp_out")


def pair_args(model: LoadedModel, pairs: Sequence[dict]) -> tuple[list[str], list[str], Metric]:
    """``(clean, corrupt, metric)`` of the study's maps: program a of each pair (clean), program b
    (corrupt), and logit(a's answer) - logit(b's answer) at the last token (first answer tokens)."""
    first = [answer_ids(model, p["ground_truth_a"])[0] for p in pairs]
    other = [answer_ids(model, p["ground_truth_b"])[0] for p in pairs]
    return ([p["program_a"] for p in pairs], [p["program_b"] for p in pairs], answer_logit_diff(first, other))


def _check(family: str) -> None:
    if family not in FAMILIES:
        raise DataError(f"`family` must be one of {list(FAMILIES)}, got {family!r}")


def _maps(family: str, patching: bool) -> Callable[..., PatchMap]:
    if family == "resid":
        return patch_resid_map if patching else attribute_resid_map
    fn = (patch_head_map if patching else attribute_head_map) if family == "heads" else (
        patch_layer_map if patching else attribute_layer_map)
    kwargs = {"at": "last"} if family == "heads" else {"points": OUTPUT_POINTS, "at": "last"}
    return lambda *args: fn(*args, **kwargs)


def patch(model: LoadedModel, pairs: Sequence[dict], family: str) -> PatchMap:
    """Activation patching a -> b of `family`'s sites: ``resid`` ``[n, layers, max_len]``,
    ``heads`` ``[n, layers, heads]``, ``outputs`` ``[n, layers, 2]`` (attn_out, mlp_out); values in
    the metric's units (logits). Raises `DataError` for an unknown `family` (naming the choices)."""
    _check(family)
    return _maps(family, True)(model, *pair_args(model, pairs))


def attribute(model: LoadedModel, pairs: Sequence[dict], family: str) -> PatchMap:
    """The attribution-patching estimate of `patch` (one backward pass per batch of pairs): the
    same shape, pairs, metric and ``clean`` / ``corrupt`` runs. Raises as `patch`."""
    _check(family)
    return _maps(family, False)(model, *pair_args(model, pairs))


def effects_on(estimate: PatchMap, measured: PatchMap, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(estimate effects, measured effects)``, each ``[len(rows), layers, cols]`` float64: the
    estimate's `harness.patch_effects` and those of `measured`'s rows `rows` (the estimate's pairs,
    in its order), padded with NaN to one width (a map over fewer pairs can be narrower: its cells
    past every pair's length are undefined in both). Raises `DataError` when the counts of pairs or
    the layers differ."""
    est, meas = patch_effects(estimate), patch_effects(measured)[np.asarray(rows)]
    if est.shape[:2] != meas.shape[:2]:
        raise DataError(f"the estimate is {est.shape} and the measured map's rows are {meas.shape}; give `rows` "
                        "as the estimate's pairs in the measured map")
    width = max(est.shape[2], meas.shape[2])

    def pad(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x, np.full((*x.shape[:2], width - x.shape[2]), np.nan)], 2)

    return pad(est), pad(meas)
