"""Attention weights of a loaded model, per layer and head, and how far they are from uniform.

    attention_weights(model, rows)             one ``[layers, heads, n, n]`` array per token row
                                               (n: the row's length): the self-attention of the
                                               stack the input tokens index (``blocks`` of a
                                               decoder-only model, ``encoder`` of T5/ByT5)
    eager_attention(model)                     context: attention computed explicitly, so the
                                               model can return its weights; the model's own
                                               implementation is put back on exit
    ratio_to_uniform(weights, query, keys)     ``[layers, heads]``: attention mass from one query
                                               position on a set of key positions, divided by
                                               the mass a uniform pattern puts there

Layer index 0 is block 1 (site ``blocks.1.attn.head{h}``), as everywhere in the harness.
Fused attention kernels (``sdpa``, flash) never form the weights, and transformers then returns
none; `attention_weights` switches to the ``eager`` implementation, which computes the same
function (the logits agree to float rounding, pinned by tests/harness/measures/test_attention.py).
Rows are right-padded in batches of similar length; padded keys are masked, so a row's weights
equal its unbatched weights and each query's weights sum to 1 over its row's real tokens.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import torch

from harness.errors import DataError
from harness.models.loaded import LoadedModel, length_order, pad_rows

__all__ = ["attention_weights", "eager_attention", "ratio_to_uniform"]


@contextmanager
def eager_attention(model: LoadedModel) -> Iterator[LoadedModel]:
    """Run `model` with the ``eager`` attention implementation inside the block; the model's
    own implementation (e.g. ``sdpa``) is restored on exit, also on error."""
    config = model.module.config
    original = config._attn_implementation
    if original == "eager":
        yield model
        return
    try:
        model.module.set_attn_implementation("eager")
    except (ValueError, ImportError) as err:
        raise DataError(f"model {model.spec!r} cannot switch its attention from {original!r} to 'eager' ({err}); "
                        "attention weights need an implementation that forms them") from None
    try:
        yield model
    finally:
        model.module.set_attn_implementation(original)


def _check_rows(rows: Sequence[Sequence[int]]) -> list[list[int]]:
    if isinstance(rows, (str, torch.Tensor, np.ndarray)) or not isinstance(rows, Sequence):
        raise DataError(f"`rows` must be a list of token-id lists, got {type(rows).__name__}; "
                        "tokenize first: attention_weights(model, model.tokenize(texts))")
    if not rows:
        raise DataError("`rows` is empty; pass at least one tokenized example")
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, str) or not all(isinstance(t, (int, np.integer)) for t in row):
            raise DataError(f"rows[{i}] must be a list of token ids (ints), got {row!r:.60}; "
                            "tokenize first: model.tokenize(texts)")
        if len(row) == 0:
            raise DataError(f"rows[{i}] is empty; each example needs at least one token")
        out.append([int(t) for t in row])
    return out


def _stack_attentions(model: LoadedModel, ids: torch.Tensor, mask: torch.Tensor) -> tuple:
    """The per-block self-attention weights of the stack the input tokens index."""
    if model.is_encoder_decoder:
        out = model.module.get_encoder()(input_ids=ids, attention_mask=mask, output_attentions=True)
    else:
        out = model.module(input_ids=ids, attention_mask=mask, output_attentions=True)
    if not out.attentions or any(a is None for a in out.attentions):
        raise DataError(f"model {model.spec!r} returned no attention weights with output_attentions=True under "
                        f"implementation {model.module.config._attn_implementation!r}; it needs one that forms "
                        "the weights ('eager')")
    return out.attentions


@torch.no_grad()
def attention_weights(model: LoadedModel, rows: Sequence[Sequence[int]], *,
                      batch_size: int = 64) -> list[np.ndarray]:
    """Self-attention weights of each token row: ``[layers, heads, n, n]`` float32 (query x key,
    n the row's length), in the order of `rows`.

    Example::

        weights = attention_weights(model, model.tokenize(["(1+2)*3="]))
        weights[0][1, 2, -1]   # block 2, head 2: how the last token attends to each position
    """
    rows = _check_rows(rows)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"`batch_size` must be a positive int, got {batch_size!r}; e.g. batch_size=64")
    out: list[np.ndarray] = [np.empty(0)] * len(rows)
    order = length_order(rows)
    with eager_attention(model):
        for start in range(0, len(order), batch_size):
            chunk = order[start: start + batch_size]
            ids, mask = pad_rows([rows[i] for i in chunk], pad_id=model.pad_id, device=model.device)
            stacked = torch.stack(_stack_attentions(model, ids, mask), 1).float().cpu().numpy()
            for j, i in enumerate(chunk):
                n = len(rows[i])
                out[i] = stacked[j, :, :, :n, :n]
    return out


def ratio_to_uniform(weights: np.ndarray, query: int, keys: Sequence[int], *, causal: bool = True) -> np.ndarray:
    """``[layers, heads]``: the attention mass from position `query` on the positions `keys`,
    divided by ``len(keys) / attended``, the mass a uniform pattern puts there (`attended`:
    ``query + 1`` positions for causal attention, all ``n`` otherwise). 1 is uniform; 3 is three
    times the uniform share.

    Example::

        ratio_to_uniform(weights[0], query=7, keys=[3])   # the `)` at 7 to its `(` at 3
    """
    weights = np.asarray(weights)
    if weights.ndim != 4 or weights.shape[-1] != weights.shape[-2]:
        raise DataError(f"`weights` must be [layers, heads, n, n] (one row of attention_weights), got shape "
                        f"{weights.shape}")
    n = weights.shape[-1]
    if isinstance(query, bool) or not isinstance(query, (int, np.integer)) or not 0 <= query < n:
        raise DataError(f"`query` must be a position in [0, {n}), got {query!r}")
    attended = int(query) + 1 if causal else n
    keys = [int(k) for k in keys]
    if not keys:
        raise DataError("`keys` is empty; give the positions whose attention mass to measure")
    if len(set(keys)) != len(keys):
        raise DataError(f"`keys` has repeated positions {sorted(keys)}; give each position once")
    bad = [k for k in keys if not 0 <= k < attended]
    if bad:
        where = f"at or before the query ({query}): causal attention sees no later position" if causal else f"in [0, {n})"
        raise DataError(f"`keys` {bad} are outside the attended positions; give keys {where}")
    mass = weights[:, :, query, keys].sum(-1)
    return mass / (len(keys) / attended)
