"""Activation patching for decoder-only models: clean -> corrupt, one cell at a time, fast.

    patch_resid_map(model, clean, corrupt, metric)   resid_pre of every block x every position
                                                     (TransformerLens ``get_act_patch_resid_pre``)
    patch_head_map(model, clean, corrupt, metric)    every head's output at all positions
                                                     (``get_act_patch_attn_head_out_all_pos``), or
                                                     with ``at="last"`` at the last token only
    (`harness.measures.patching_outputs.patch_layer_map`: what each block's attention and MLP add
    to the residual, at the last token or all positions; `harness.measures.patching_units`:
    `patch_neuron_map` and `patch_qkv_map`, layer x neuron and layer x query or key/value head;
    all on the same `PatchMap`)
    PatchMap                                         per-pair values ``[n, layers, cols]`` with the
                                                     clean and corrupt baselines
    answer_logit_diff, answer_logprob, answer_prob   ready-made metrics (answer_prob: ROME's
                                                     probability of the correct answer)

A *cell* is one patch: the corrupt run of a pair with one activation replaced by the clean
run's value (``blocks.L.resid_pre`` at one position; or ``blocks.L.attn.head{h}`` at every
position, or at the last token with ``at="last"``; or ``blocks.L.attn_out`` / ``blocks.L.mlp_out``).
The metric is evaluated on the patched logits at the last token of the pair.

Metric protocol::

    metric(logits: Tensor[rows, vocab], pairs: LongTensor[rows]) -> Tensor[rows]

``logits`` are the (float32) next-token logits at the last real token of each row, ``pairs``
the index of the pair each row belongs to (so per-pair targets are ``targets[pairs]``). The
metric must act row-wise: row r's value may depend only on ``logits[r]`` and ``pairs[r]``
(rows of many cells and pairs share one batch).

Layers are the harness's: column ``j`` of a map is block ``j + 1`` (``blocks.{j+1}.resid_pre``,
the input of 0-based block ``j``, is TransformerLens' ``blocks.{j}.hook_resid_pre``). The head
site ``blocks.L.attn.head{h}`` is head h's slice of the input of the attention output
projection, i.e. TransformerLens' ``hook_z[:, :, h]``; patching it "at all positions" is
``get_act_patch_attn_head_out_all_pos``.

Every map here, `patch_layer_map` and causal tracing (`harness.measures.tracing`) are thin
entry points over one engine, `harness.measures.patching_engine`: a map is a set of cells
(site, positions, columns) patched from the clean run into the corrupt run. What a patch cannot
change is not recomputed: one plain forward per run (clean and corrupt)
supplies every block's input and the arguments every block was called with
(`harness.interventions.prefix`); a cell at block L replays only blocks L.. (and the final norm and the
output head at the last token) for the corrupt input, on the suffix path (GPT-2 and Llama/Qwen2
layouts without sliding windows, ``eager`` or ``sdpa``) only from the first position a cell of
its chunk changes (`harness.measures.replay`); cells go in the batch dimension (rows =
pairs x cells, in chunks of ``batch_size``); and a resid cell whose clean value is bit-for-bit
the corrupt value (a position before the first token where the pair differs: the model is
causal) is exactly the corrupt run, so its value is the corrupt metric without any forward.
Values equal a per-cell loop of full forwards within 1e-4 under every attention implementation
the model can run here (``eager``, ``sdpa``; pinned by tests/harness/measures/test_replay_implementations.py).
Every hook is removed when a call returns or raises. How the replayed blocks get their
attention mask is told in `harness.measures.replay`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from harness.errors import DataError, ShapeError
from harness.models.loaded import LoadedModel
from harness.measures.patching_engine import (Block, Column, check_at, each_position, every_column, pair_runs,
                                              patch_cells, where_at)

__all__ = ["PatchMap", "Metric", "patch_resid_map", "patch_head_map", "answer_logit_diff",
           "answer_logprob", "answer_prob"]

Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- metrics


def _ids(model: LoadedModel | None, tokens: Any, name: str) -> torch.Tensor:
    from harness.measures.scores import _token_id

    if isinstance(tokens, (str, int)):
        tokens = [tokens]
    out = []
    for t in tokens:
        if isinstance(t, str):
            if model is None:
                raise DataError(f"`{name}` holds the string {t!r}; pass `model=` to tokenize it, or token ids")
            out.append(_token_id(model, t))
        else:
            out.append(int(t))
    return torch.as_tensor(out, dtype=torch.long)


def _per_pair(ids: torch.Tensor, pairs: torch.Tensor, name: str) -> torch.Tensor:
    ids = ids.to(pairs.device)
    if ids.numel() == 1:
        return ids.expand(pairs.shape[0])
    if int(pairs.max()) >= ids.numel():
        raise ShapeError(f"`{name}` has {ids.numel()} token ids but pair {int(pairs.max())} was scored; "
                         "give one id, or one per pair")
    return ids[pairs]


def answer_logit_diff(correct: Any, wrong: Any, *, model: LoadedModel | None = None) -> Metric:
    """``logit[correct] - logit[wrong]`` at the last token; each a token id (or single-token
    string, with `model`) or one per pair.

    Example::

        metric = answer_logit_diff([io_ids...], [s_ids...])   # one pair each
    """
    a, b = _ids(model, correct, "correct"), _ids(model, wrong, "wrong")

    def metric(logits: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        r = torch.arange(logits.shape[0], device=logits.device)
        return logits[r, _per_pair(a, pairs, "correct")] - logits[r, _per_pair(b, pairs, "wrong")]

    return metric


def answer_logprob(target: Any, *, model: LoadedModel | None = None) -> Metric:
    """``log softmax(logits)[target]`` at the last token; one token id or one per pair."""
    t = _ids(model, target, "target")

    def metric(logits: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        r = torch.arange(logits.shape[0], device=logits.device)
        return torch.log_softmax(logits.float(), -1)[r, _per_pair(t, pairs, "target")]

    return metric


def answer_prob(target: Any, *, model: LoadedModel | None = None) -> Metric:
    """``softmax(logits)[target]`` at the last token, the metric of ROME's causal tracing (Meng et
    al. 2022: the probability of the correct answer); one token id or one per pair."""
    t = _ids(model, target, "target")

    def metric(logits: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        r = torch.arange(logits.shape[0], device=logits.device)
        return torch.softmax(logits.float(), -1)[r, _per_pair(t, pairs, "target")]

    return metric


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class PatchMap:
    """Per-pair patching results.

    ``values[i, j, c]`` is the metric of pair i with cell (block ``j + 1``, column c) patched
    from clean into corrupt; columns are positions (`patch_resid_map`, NaN past a pair's
    length), heads (`patch_head_map`) or points (`patch_layer_map`: ``attn_out``, ``mlp_out``).
    ``clean[i]`` / ``corrupt[i]`` are the metric on the unpatched runs.
    """

    values: torch.Tensor     # [n, layers, cols] float32
    clean: torch.Tensor      # [n]
    corrupt: torch.Tensor    # [n]
    lengths: torch.Tensor    # [n] tokens per pair
    kind: str                # "resid_pre", "head" (all positions), "head_last" or "layer"
    fingerprint: str

    @property
    def n(self) -> int:
        return int(self.values.shape[0])

    @property
    def layers(self) -> list[int]:
        """The harness layer of each row of the map (``blocks.{L}.…``), 1..n_layers."""
        return list(range(1, self.values.shape[1] + 1))

    def mean(self) -> torch.Tensor:
        """Mean over pairs, ``[layers, cols]`` (positions past a pair's length are skipped)."""
        return self.values.nanmean(0)

    def normalized(self) -> torch.Tensor:
        """``(patched - corrupt) / (clean - corrupt)`` per pair, ``[n, layers, cols]``: 0 is no
        effect, 1 full recovery of the clean metric."""
        gap = (self.clean - self.corrupt)[:, None, None]
        return (self.values - self.corrupt[:, None, None]) / gap


# --------------------------------------------------------------------------- the maps


@torch.no_grad()
def patch_resid_map(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], metric: Metric, *,
                    batch_size: int = 256) -> PatchMap:
    """Patch ``blocks.L.resid_pre`` at each position from clean into corrupt, for every L.

    Example::

        pm = patch_resid_map(m, clean_prompts, corrupt_prompts, answer_logit_diff(io, s))
        pm.values      # [n_pairs, n_layers, max_len]; NaN past a pair's length
        pm.mean()      # [n_layers, max_len], TransformerLens get_act_patch_resid_pre's layout

    `clean` and `corrupt` are equally long lists of strings (tokenized with ``model.tokenize``)
    or of token-id lists; pair i must have the same token length in both. Pairs may differ in
    length from each other (right padding; the metric is read at each pair's last token).
    """
    runs = pair_runs(model, clean, corrupt, metric, batch_size=batch_size)
    real = runs.mask.bool()
    where = each_position(real)                          # column p: position p alone
    stack = model.main_stack

    def block(j: int) -> Block:
        site = model.site(stack, j + 1, "resid_pre")
        column = Column(site, runs.clean.inputs[j], runs.corrupt.inputs[j])
        return Block([column] * real.shape[1], where)

    values = patch_cells(model, runs.corrupt, runs.mask, metric, blocks=block, n_blocks=len(runs.corrupt.inputs),
                         batch_size=batch_size, valid=real)
    return PatchMap(values=values, clean=runs.clean.metric, corrupt=runs.corrupt.metric,
                    lengths=runs.mask.sum(1).cpu(), kind="resid_pre", fingerprint=model.fingerprint)


@torch.no_grad()
def patch_head_map(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], metric: Metric, *,
                   at: str = "all", batch_size: int = 256) -> PatchMap:
    """Patch each head's output (``blocks.L.attn.head{h}``) from clean into corrupt, at every
    position (``at="all"``) or only at each pair's last real token (``at="last"``: which heads'
    output at the final position recovers most).

    Example::

        pm = patch_head_map(m, clean_prompts, corrupt_prompts, answer_logit_diff(io, s))
        pm.values      # [n_pairs, n_layers, n_heads]
        pm.mean()      # TransformerLens get_act_patch_attn_head_out_all_pos's [n_layers, n_heads]

    Raises `DataError` for an `at` other than "all" or "last".
    """
    check_at(at)
    runs = pair_runs(model, clean, corrupt, metric, batch_size=batch_size, heads=True)
    stack = model.main_stack
    shape = model.sites.stack(stack)
    n_heads, d_head = shape.n_heads, shape.d_head
    where = every_column(where_at(at, runs.mask), n_heads)

    def block(j: int) -> Block:
        return Block([Column(model.site(stack, j + 1, "head", head=h), runs.clean.heads[j], runs.corrupt.heads[j],
                             select=slice(h * d_head, (h + 1) * d_head)) for h in range(n_heads)], where)

    values = patch_cells(model, runs.corrupt, runs.mask, metric, blocks=block, n_blocks=len(runs.corrupt.inputs),
                         batch_size=batch_size)
    return PatchMap(values=values, clean=runs.clean.metric, corrupt=runs.corrupt.metric,
                    lengths=runs.mask.sum(1).cpu(), kind="head" if at == "all" else "head_last",
                    fingerprint=model.fingerprint)
