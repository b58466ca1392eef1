"""The residual stream at one position after every layer, and the logit lens on it.

    layer_sites(model)                   the site read as "after layer L", L = 0..n
    residuals_at(model, rows, ...)       ``[n, layers + 1, d_model]`` at one position per row
    logit_lens(model, rows, targets)     each layer's residual decoded through the final norm and
                                         the unembedding: top-1 token and P(target) per layer

Layer 0 is the embeddings (the input of block 1, ``blocks.1.resid_pre``); layer L >= 1 is the
raw output of block L (``blocks.L.block_out``), so for the last block it is the residual
*before* the final norm and the lens at that layer reproduces the model's own logits.

Rows are token ids (already tokenized), run right-padded in chunks of similar length
(`harness.models.loaded.length_order`); padding never changes a row's numbers (within 1e-4), so the
result does not depend on `batch_size`. Only decoder-only models (one stack) are supported.

Example::

    rows = model.tokenize(["3+4*(2-1)="])
    lens = logit_lens(model, rows, targets=[model.tokenize(["7"], add_special_tokens=False)[0][0]])
    lens.hits()[:, -1]      # whether the model's own top-1 is the target
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from harness.errors import DataError
from harness.interventions import Record, intervene
from harness.models.loaded import LoadedModel, length_order, pad_rows
from harness.models.logits import unembed
from harness.models.sites import Site

__all__ = ["Lens", "layer_sites", "residuals_at", "logit_lens"]


@dataclass(frozen=True)
class Lens:
    """The logit lens on ``n`` rows at ``layers + 1`` layers (0 = embeddings).

    `top1` ``[n, layers + 1]`` is the lens's most likely token, `prob` ``[n, layers + 1]`` the
    probability it gives the row's target, `logits` ``[n, layers + 1, vocab]`` the decoded
    logits (only with ``keep_logits=True``).
    """

    sites: tuple[Site, ...]
    targets: torch.Tensor
    top1: torch.Tensor
    prob: torch.Tensor
    logits: torch.Tensor | None = None

    def hits(self) -> np.ndarray:
        """``[n, layers + 1]`` bool: whether the target is the lens's top-1 token at each layer."""
        return (self.top1 == self.targets[:, None]).numpy()


def layer_sites(model: LoadedModel) -> tuple[Site, ...]:
    """The site read as the residual stream after layer L, for L = 0..n (see the module doc)."""
    _check_decoder_only(model)
    n = model.sites.stack(model.main_stack).n_layers
    return (model.site(model.main_stack, 1, "resid_pre"),) + tuple(
        model.site(model.main_stack, layer, "block_out") for layer in range(1, n + 1))


@torch.no_grad()
def residuals_at(model: LoadedModel, rows: Sequence[Sequence[int]], *, position: int = -1,
                 batch_size: int = 64) -> torch.Tensor:
    """The residual stream after each layer at one position of each row: ``[n, layers + 1, d]``.

    `position` indexes each row's real tokens as Python does (-1: the last real token).
    """
    positions = _positions(rows, position)
    if batch_size < 1:
        raise DataError(f"`batch_size` must be a positive int, got {batch_size!r}; e.g. batch_size=64")
    sites = layer_sites(model)
    d = model.width(sites[0])
    out = torch.empty(len(rows), len(sites), d, dtype=torch.float32)
    order = length_order(rows)
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size]
        ids, mask = pad_rows([rows[i] for i in idx], pad_id=model.pad_id, device=model.device)
        with intervene(model, {site: Record() for site in sites}, masks={model.main_stack: mask}) as run:
            model.module(input_ids=ids, attention_mask=mask)
        at = torch.as_tensor([positions[i] for i in idx])
        for j, site in enumerate(sites):
            out[idx, j] = run.recorded[site][torch.arange(len(idx)), at].float().cpu()
    return out


@torch.no_grad()
def logit_lens(model: LoadedModel, rows: Sequence[Sequence[int]], targets: Sequence[int], *,
               position: int = -1, batch_size: int = 64, keep_logits: bool = False) -> Lens:
    """Decode the residual stream after each layer (at `position`) through the model's final norm
    and unembedding; per layer, the top-1 token and the probability of ``targets[i]``."""
    targets = torch.as_tensor(list(targets), dtype=torch.long)
    if targets.ndim != 1 or len(targets) != len(rows):
        raise DataError(f"`targets` must hold one token id per row ({len(rows)} rows), got shape "
                        f"{tuple(targets.shape)}; pass e.g. the first answer token of each row")
    vocab = model.module.get_output_embeddings().weight.shape[0]
    if len(targets) and not (0 <= int(targets.min()) and int(targets.max()) < vocab):
        bad = int(targets[(targets < 0) | (targets >= vocab)][0])
        raise DataError(f"`targets` holds token id {bad}, outside the vocabulary 0..{vocab - 1}; "
                        "tokenize the target with the model's tokenizer")
    residuals = residuals_at(model, rows, position=position, batch_size=batch_size)
    norm = model.module.get_submodule(model.layout.stack(model.main_stack).final_norm)
    top1, prob, kept = [], [], []
    for start in range(0, len(rows), batch_size):  # decoded in chunks: [rows, layers, vocab] stays small
        logits = unembed(model, norm(residuals[start: start + batch_size].to(model.device, model.dtype))).cpu()
        chunk = targets[start: start + batch_size, None, None].expand(-1, logits.shape[1], 1)
        prob.append(torch.softmax(logits, -1).gather(-1, chunk)[..., 0])
        top1.append(logits.argmax(-1))
        if keep_logits:
            kept.append(logits)
    return Lens(sites=layer_sites(model), targets=targets, top1=torch.cat(top1), prob=torch.cat(prob),
                logits=torch.cat(kept) if keep_logits else None)


def _positions(rows: Sequence[Sequence[int]], position: int) -> list[int]:
    """Each row's index of `position` among its real tokens, with an error naming a bad row."""
    if isinstance(position, bool) or not isinstance(position, (int, np.integer)):
        raise DataError(f"`position` must be an int (-1: the last real token), got {position!r}")
    if len(rows) == 0:
        raise DataError("`rows` is empty; pass at least one tokenized example")
    out = []
    for i, row in enumerate(rows):
        if not -len(row) <= position < len(row):
            raise DataError(f"`position` {position} is outside row {i}, which has {len(row)} tokens; "
                            "pass a position every row has (-1: the last real token)")
        out.append(position % len(row))
    return out


def _check_decoder_only(model: LoadedModel) -> None:
    if model.is_encoder_decoder or len(model.sites.stacks) != 1:
        raise DataError(f"the logit lens reads a decoder-only model (one stack); {model.name} has stacks "
                        f"{[s.name for s in model.sites.stacks]}; use a decoder-only model (gpt2, llama, ...)")
