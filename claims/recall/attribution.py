"""The recall study's patching maps (another subject's prompt patched from the clean prompt) and
their attribution-patching estimates, over the same pairs with the same metric
(`harness.measures.attribution`).

    FAMILIES                                the site families: ``resid`` (``resid_pre`` of every block
                                            at every position, the map of the patching claim) and
                                            ``outputs`` (each block's ``attn_out`` and ``mlp_out``
                                            patched at every position at once)
    pair_args(prompts, pairs)               the clean prompts (i), the corrupt prompts (j, another
                                            subject) and the metric P(the clean prompt's answer)
    patch(model, prompts, pairs, family)    the activation-patching map (`PatchMap`)
    attribute(model, prompts, pairs, family)  its attribution-patching estimate: the same shape,
                                            ``values`` = corrupt metric + the first-order estimate

Both maps of a family take their prompts and metric from `pair_args`, so their ``clean`` and
``corrupt`` metrics are the same runs' (checked in ``tests/studies/recall``).
"""

from __future__ import annotations

from typing import Sequence

from harness import (DataError, LoadedModel, Metric, PatchMap, answer_prob, attribute_layer_map, attribute_resid_map, patch_layer_map,
                     patch_resid_map)

from claims.recall.prompts import Prompt

FAMILIES = {
    "resid": "resid_pre of every block at every position",
    "outputs": "each block's attn_out and mlp_out at every position",
}
OUTPUT_POINTS = ("attn_out", "mlp_out")
BATCH = 128   # pairs per forward (and backward)


def pair_args(prompts: Sequence[Prompt], pairs: Sequence[tuple[int, int]]) -> tuple[list, list, Metric]:
    """``(clean, corrupt, metric)`` of the study's maps: for each ``(i, j)`` of `pairs`
    (`claims.recall.prompts.other_subject_pairs`), prompt i's token ids (clean), prompt j's
    (corrupt, another subject), and P(prompt i's answer token) at the last token."""
    return ([list(prompts[i].ids) for i, _ in pairs], [list(prompts[j].ids) for _, j in pairs],
            answer_prob([prompts[i].target for i, _ in pairs]))


def _check(family: str) -> None:
    if family not in FAMILIES:
        raise DataError(f"`family` must be one of {list(FAMILIES)}, got {family!r}")


def patch(model: LoadedModel, prompts: Sequence[Prompt], pairs: Sequence[tuple[int, int]], family: str) -> PatchMap:
    """Activation patching i -> j of `family`'s sites: ``resid`` ``[n_pairs, layers, max_len]``,
    ``outputs`` ``[n_pairs, layers, 2]`` (attn_out, mlp_out); values are P(answer). Raises
    `DataError` for an unknown `family` (naming the choices)."""
    _check(family)
    if family == "resid":
        return patch_resid_map(model, *pair_args(prompts, pairs), batch_size=BATCH)
    return patch_layer_map(model, *pair_args(prompts, pairs), points=OUTPUT_POINTS, at="all", batch_size=BATCH)


def attribute(model: LoadedModel, prompts: Sequence[Prompt], pairs: Sequence[tuple[int, int]],
              family: str) -> PatchMap:
    """The attribution-patching estimate of `patch` (one backward pass per batch of pairs): the
    same shape, pairs, metric and ``clean`` / ``corrupt`` runs. Raises as `patch`."""
    _check(family)
    if family == "resid":
        return attribute_resid_map(model, *pair_args(prompts, pairs), batch_size=BATCH)
    return attribute_layer_map(model, *pair_args(prompts, pairs), points=OUTPUT_POINTS, at="all", batch_size=BATCH)
