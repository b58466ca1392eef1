"""The recall study's measurements that the harness's maps do not make, and its statistics.

    noised_runs(model, prompts, spans, ...)   P(answer) with noise on a span of each prompt and, if
                                              asked, clean attention or MLP outputs restored at one
                                              position over a band of layers: ``[n]``, the mean
                                              over noise samples
    by_category(values, prompts)              ``[n, layers, pos]`` -> ``[n, layers, categories]``

`harness.measures.tracing.trace_resid_map` restores the residual stream only; ROME's comparison
of MLP and attention outputs (Meng et al. 2022, Fig. 1 and Sec. 2.2: a window of layers restored
at one token) is made here from the public interventions: one full forward per noise sample with
the same `Noise` (same seeds, `harness.measures.tracing.noise_seed`, so the same draws as the
trace) and a `Patch` of the clean ``blocks.L.mlp_out`` / ``attn_out`` at every layer of the band.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from harness import (DataError, Noise, Patch, Positions, Record, intervene, last_logits, noise_seed, pad_rows,
                     stop_at_final_norm)

from claims.recall.prompts import CATEGORIES, Prompt


def _mask_of(spans: Sequence[tuple[int, int] | int], width: int) -> torch.Tensor:
    out = torch.zeros(len(spans), width, dtype=torch.bool)
    for i, s in enumerate(spans):
        a, b = (s, s + 1) if isinstance(s, int) else s
        out[i, a:b] = True
    return out


@torch.no_grad()
def noised_runs(model, prompts: Sequence[Prompt], spans: Sequence[tuple[int, int]], *, std: float, samples: int,
                seed: int, point: str | None = None, layers: Sequence[int] = (), at: Sequence[int] = (),
                batch_size: int = 64) -> np.ndarray:
    """P(answer) ``[n]`` (mean over `samples` noise draws) with Gaussian noise of `std` on the
    embeddings (``blocks.1.resid_pre``) at ``spans[i]`` of prompt i, and, with `point`
    (``"mlp_out"`` or ``"attn_out"``), the clean run's ``blocks.L.{point}`` restored at position
    ``at[i]`` for every L in `layers`. The noise of sample s is `Noise` with seed
    ``noise_seed(seed, s)``: the draws `trace_resid_map` makes with the same seed."""
    if point not in (None, "mlp_out", "attn_out"):
        raise DataError(f"`point` must be None, 'mlp_out' or 'attn_out', got {point!r}")
    if len(spans) != len(prompts) or (point is not None and len(at) != len(prompts)):
        raise DataError("give one span (and one restored position) per prompt")
    stack = model.main_stack
    out = np.zeros(len(prompts))
    for lo in range(0, len(prompts), batch_size):
        chunk = list(range(lo, min(len(prompts), lo + batch_size)))
        ids, mask = pad_rows([list(prompts[i].ids) for i in chunk], pad_id=model.pad_id, device=model.device)
        width = ids.shape[1]
        target = torch.tensor([prompts[i].target for i in chunk], device=ids.device)
        sites = [model.site(stack, L, point) for L in layers] if point else []
        clean = {}
        if sites:
            with intervene(model, {s: Record() for s in sites}, masks={stack: mask}) as run, stop_at_final_norm(model):
                model.module(input_ids=ids, attention_mask=mask)
            clean = dict(run.recorded)
            where = Positions.of_mask(_mask_of([at[i] for i in chunk], width).to(ids.device))
        noise_at = Positions.of_mask(_mask_of([spans[i] for i in chunk], width).to(ids.device))
        total = torch.zeros(len(chunk))
        for s in range(samples):
            plan = {model.site(stack, 1, "resid_pre"): Noise(std, noise_seed(seed, s), noise_at)}
            plan.update({site: Patch(clean[site], where) for site in sites})
            with intervene(model, plan, masks={stack: mask}):
                logits = last_logits(model, ids, mask)
            rows = torch.arange(len(chunk), device=ids.device)
            total += torch.softmax(logits, -1)[rows, target].cpu()
        out[chunk] = (total / samples).numpy()
    return out


def by_category(values: np.ndarray, prompts: Sequence[Prompt]) -> np.ndarray:
    """Mean of ``values[i, :, p]`` over the positions p of each of ROME's `CATEGORIES`,
    ``[n, layers, categories]`` (NaN where a prompt has no position of a category)."""
    from claims.recall.prompts import categories

    n, layers, _ = values.shape
    out = np.full((n, layers, len(CATEGORIES)), np.nan)
    for i, p in enumerate(prompts):
        cat = categories(p)
        for c in range(len(CATEGORIES)):
            cols = np.flatnonzero(cat == c)
            if cols.size:
                out[i, :, c] = values[i, :, cols].mean(0) if values[i, :, cols].ndim == 2 else values[i, :, cols]
    return out
