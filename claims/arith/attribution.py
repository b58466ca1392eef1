"""Attribution patching in the arithmetic study: how far its one-backward estimates agree with
activation patching, the MLP neurons it ranks first, and the head circuit it keeps.

    FAMILIES, AttributionMaps       per site family, the estimated and the measured effect maps
                                    over the same pairs (`harness.measures.attribution`)
    top_units, site_means           the neurons attribution ranks first; a site's mean activation
    logprob_drops                   drop of log P(first answer token) per row under mean ablation
    circuit_heads, ablated_logit_diffs
                                    the heads attribution keeps at a threshold; each pair's clean
                                    logit difference with every other head mean-ablated
    random_draws                    seeded random sets of the same size (the controls)

Every number is per pair or per row, so the claims bootstrap over pairs or rows. The metric of
every map is the study's: the first answer token's logit difference, clean answer - corrupt
answer, read at the last prompt token (`harness.answer_logit_diff`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from harness import (Ablate, pair_mean, answer_logit_diff, attribute_head_map, attribute_layer_map, attribute_neuron_map,
                     attribute_resid_map, DataError, intervene, LoadedModel, patch_effects, patch_layer_map,
                     patch_neuron_map, patch_resid_map, Record)

from claims.arith import measure

# the site families compared: each head's output at every position; resid_pre at each layer and
# position; each block's attention output and MLP output at the last token (a family each); the
# neurons (mlp_post) of one MLP layer at the last token
FAMILIES = ("heads", "resid", "attn_out", "mlp_out", "neurons")
SUBSET_FAMILIES = ("resid", "neurons")   # measured on the first `n_subset` pairs: patching them costs most


def metric_of(model: LoadedModel, pairs: measure.Pairs):
    """The study's patching metric over `pairs`: first answer token minus first contrast token."""
    return answer_logit_diff(measure.first_tokens(model, pairs.answers), measure.first_tokens(model, pairs.contrasts))


def first_pairs(pairs: measure.Pairs, n: int) -> measure.Pairs:
    """The first `n` pairs (all when fewer): the pairs are in seeded random order
    (`measure.rebracketed_pairs`), so these are a seeded random subset."""
    if n < 1:
        raise DataError(f"`n` must be a positive number of pairs, got {n}")
    return measure.Pairs(*(getattr(pairs, f)[:n] for f in ("clean", "corrupt", "answers", "contrasts")))


@dataclass(frozen=True)
class Maps:
    """One family's effect maps over the same pairs, ``[n_pairs, rows, cols]`` float64 (NaN
    where a cell is undefined for a pair): `estimate` (attribution patching) and `measured`
    (activation patching), both ``patched - corrupt`` in nats of logit difference; `what`
    says which sites and pairs."""

    estimate: np.ndarray
    measured: np.ndarray
    what: str

    @property
    def n_pairs(self) -> int:
        return int(self.estimate.shape[0])


class AttributionMaps:
    """Each family's estimated and measured maps over the study's test pairs, computed on first
    use and kept. `head_map` is the study's `patch_head_map` over all of `pairs` (every head,
    all positions); the ``resid`` and ``neurons`` families use the first `n_subset` pairs
    (`first_pairs`); ``neurons`` are the ``mlp_post`` units of block `neuron_layer`."""

    def __init__(self, model: LoadedModel, pairs: measure.Pairs, head_map, *, neuron_layer: int, n_subset: int,
                 batch_size: int = 64):
        n_layers = model.module.config.n_layer
        if not 1 <= neuron_layer <= n_layers:
            raise DataError(f"`neuron_layer` must be a block in 1..{n_layers}, got {neuron_layer}")
        self.model, self.pairs, self.head_map = model, pairs, head_map
        self.neuron_layer, self.n_subset, self.batch_size = neuron_layer, n_subset, batch_size
        self._maps: dict[str, Maps] = {}
        self._layer: tuple | None = None

    def __call__(self, family: str) -> Maps:
        if family not in FAMILIES:
            raise DataError(f"unknown attribution family {family!r}; use one of {FAMILIES}")
        if family not in self._maps:
            self._maps[family] = self._compute(family)
        return self._maps[family]

    @property
    def computed(self) -> dict[str, Maps]:
        return dict(self._maps)

    def _compute(self, family: str) -> Maps:
        m, bs = self.model, self.batch_size
        pairs = first_pairs(self.pairs, self.n_subset) if family in SUBSET_FAMILIES else self.pairs
        args = (m, pairs.clean, pairs.corrupt, metric_of(m, pairs))
        n = f"{len(pairs)} test pairs"
        if family == "heads":
            est = attribute_head_map(*args, batch_size=bs)
            return Maps(patch_effects(est), patch_effects(self.head_map), f"each head's output, all positions; {n}")
        if family == "resid":
            return Maps(patch_effects(attribute_resid_map(*args, batch_size=bs)),
                        patch_effects(patch_resid_map(*args, batch_size=bs)),
                        f"resid_pre of each block at each position; {n}")
        if family == "neurons":
            layers = [self.neuron_layer]
            return Maps(patch_effects(attribute_neuron_map(*args, layers=layers, batch_size=bs)),
                        patch_effects(patch_neuron_map(*args, layers=layers, batch_size=bs)),
                        f"each mlp_post neuron of block {self.neuron_layer}, last token; {n}")
        if self._layer is None:
            self._layer = (patch_effects(attribute_layer_map(*args, batch_size=bs)),
                           patch_effects(patch_layer_map(*args, batch_size=bs)))
        col = 0 if family == "attn_out" else 1
        est, meas = self._layer
        return Maps(est[:, :, col:col + 1], meas[:, :, col:col + 1], f"{family} of each block, last token; {n}")

    def summary(self) -> dict:
        """Per computed family: the pair-mean maps and the point values of the two correlations
        and of the measured top cell's rank in the estimate (no CIs: the claims report those)."""
        from scipy.stats import pearsonr, spearmanr

        out = {}
        for family, maps in sorted(self._maps.items()):
            est, meas = pair_mean(maps.estimate), pair_mean(maps.measured)
            ok = np.isfinite(est) & np.isfinite(meas)
            x, y = est[ok], meas[ok]
            top = int(np.argmax(y))
            out[family] = {"what": maps.what, "n_pairs": maps.n_pairs, "cells": int(ok.sum()),
                           "spearman": round(float(spearmanr(x, y).statistic), 4),
                           "pearson": round(float(pearsonr(x, y).statistic), 4),
                           "top_cell_rank": int(1 + np.sum(x > x[top])),
                           "mean_estimate": np.where(np.isfinite(est), est, np.nan).round(4).tolist(),
                           "mean_measured": np.where(np.isfinite(meas), meas, np.nan).round(4).tolist()}
        return out


# --------------------------------------------------------------------------- neurons


def top_units(effects: np.ndarray, n: int) -> list[int]:
    """The `n` columns of a one-row effect map ``[n_pairs, 1, units]`` with the largest pair-mean
    effect (signed: the units whose clean value most supports the clean answer), largest first."""
    if effects.ndim != 3 or effects.shape[1] != 1:
        raise DataError(f"`effects` must be one layer's map [n_pairs, 1, units], got shape {effects.shape}")
    if not 1 <= n <= effects.shape[2]:
        raise DataError(f"`n` must be in 1..{effects.shape[2]} (the layer's units), got {n}")
    mean = pair_mean(effects)[0]
    return [int(u) for u in np.argsort(-mean, kind="stable")[:n]]


def neuron_site(layer: int, units: Sequence[int]) -> str:
    """``blocks.L.mlp_post.neurons[u1,u2,...]`` (units in the order given)."""
    return f"blocks.{layer}.mlp_post.neurons[{','.join(str(int(u)) for u in units)}]"


@torch.no_grad()
def site_means(model: LoadedModel, rows: Sequence[measure.Row], sites: Sequence[str]) -> dict[str, torch.Tensor]:
    """Each site's mean activation ``[d]`` over the real tokens of `rows` (the mean ablation's
    reference), keyed by the site as given; one pass, rows grouped by length."""
    resolved = {s: model.site(s) for s in sites}
    total: dict[str, torch.Tensor] = {}
    count = 0
    for idx in measure._same_length(rows):
        ids = torch.as_tensor(model.tokenize([rows[i].expression for i in idx]))
        mask = torch.ones_like(ids)
        with intervene(model, {site: Record() for site in resolved.values()}, masks={model.main_stack: mask}) as run:
            model.module(input_ids=ids, attention_mask=mask)
        for name, site in resolved.items():
            part = run.recorded[site].double().sum((0, 1))
            total[name] = part if name not in total else total[name] + part
        count += ids.numel()
    return {name: (v / count).float() for name, v in total.items()}


def logprob_drops(model: LoadedModel, rows: Sequence[measure.Row], site: str, mean: torch.Tensor,
                  *, plain: np.ndarray | None = None) -> np.ndarray:
    """``[n_rows]``: log P(first answer token) of the plain model minus with `site` mean-ablated
    (set to `mean`, ``[d]``, at every position), in nats. `plain` reuses the plain run's values."""
    base = measure.answer_logprobs(model, rows) if plain is None else plain
    return base - measure.answer_logprobs(model, rows, {model.site(site): Ablate.mean(mean[None, None, :])})


def random_draws(pool: Sequence, k: int, *, seed: int, n: int) -> list[list]:
    """`n` seeded random sets of `k` from `pool`: draw i is ``random.Random(seed + i).sample(pool, k)``."""
    if not 1 <= k <= len(pool):
        raise DataError(f"cannot draw {k} of a pool of {len(pool)}; `k` must be in 1..{len(pool)}")
    return [random.Random(seed + i).sample(list(pool), k) for i in range(n)]


# --------------------------------------------------------------------------- circuits


def circuit_heads(effects: np.ndarray, threshold: float) -> list[str]:
    """The heads whose pair-mean estimated effect (``[n_pairs, layers, heads]``, nats) is at least
    `threshold` in magnitude, the largest magnitude first ("layerL-headH", layers from 1). An
    attribution circuit keeps a head by the size of its effect, either sign (AtP, Syed et al. 2023)."""
    if not threshold > 0:
        raise DataError(f"`threshold` must be a positive effect size in nats, got {threshold}")
    size = np.abs(pair_mean(effects))
    order = np.argsort(-size, axis=None, kind="stable")
    heads = size.shape[1]
    return [measure.head_name(int(i) // heads + 1, int(i) % heads) for i in order if size.flat[i] >= threshold]


def all_heads(model: LoadedModel) -> list[str]:
    cfg = model.module.config
    return [measure.head_name(layer, h) for layer in range(1, cfg.n_layer + 1) for h in range(cfg.n_head)]


@torch.no_grad()
def ablated_logit_diffs(model: LoadedModel, pairs: measure.Pairs, ablated: Sequence[str],
                        means: dict) -> np.ndarray:
    """``[n_pairs]``: the first answer token's logit difference (clean answer - corrupt answer)
    on each clean prompt, with every head in `ablated` ("layerL-headH") set to its mean output
    (`means`: site -> ``[d_head]``, from `measure.head_means`) at every position. No head
    ablated is the full model. Prompts are grouped by token length (nothing padded)."""
    edits = {}
    for name in ablated:
        site = model.site(measure.head_site(name))
        if site not in means:
            raise DataError(f"no mean output for {name}; compute `means` with measure.head_means over every head")
        edits[site] = Ablate.mean(means[site][None, None, :])
    prompts = model.tokenize(list(pairs.clean))
    answers, contrasts = measure.first_tokens(model, pairs.answers), measure.first_tokens(model, pairs.contrasts)
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(len(p), []).append(i)
    out = np.empty(len(prompts))
    for _, idx in sorted(groups.items()):
        ids = torch.as_tensor([prompts[i] for i in idx])
        mask = torch.ones_like(ids)
        with intervene(model, edits, masks={model.main_stack: mask}):
            logits = model.module(input_ids=ids, attention_mask=mask).logits[:, -1].float()
        rows = torch.arange(len(idx))
        out[idx] = (logits[rows, answers[idx]] - logits[rows, contrasts[idx]]).numpy()
    return out
