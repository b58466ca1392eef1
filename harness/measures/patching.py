"""Activation patching for decoder-only models: clean -> corrupt, one cell at a time, fast.

    patch_resid_map(model, clean, corrupt, metric)   resid_pre of every block x every position
                                                     (TransformerLens ``get_act_patch_resid_pre``)
    patch_head_map(model, clean, corrupt, metric)    every head's output at all positions
                                                     (``get_act_patch_attn_head_out_all_pos``), or
                                                     with ``at="last"`` at the last token only
    (`harness.measures.patching_outputs.patch_layer_map`: what each block's attention and MLP add
    to the residual, at the last token or all positions, on the same `PatchMap`)
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

What a patch cannot change is not recomputed: one plain forward per run (clean and corrupt)
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

from harness.errors import DataError, InterventionError, ShapeError
from harness.interventions import Patch, Positions
from harness.models.load import LoadedModel, pad_rows
from harness.measures.replay import _plain, _replay_cells, _suffix_ok

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


# --------------------------------------------------------------------------- inputs


def _token_rows(model: LoadedModel, items: Sequence[Any], name: str) -> list[list[int]]:
    if isinstance(items, (str, torch.Tensor)):
        if isinstance(items, torch.Tensor) and items.dim() == 2:
            return [list(map(int, row)) for row in items.tolist()]
        raise DataError(f"`{name}` must be a list of strings (or of token-id lists), got a single "
                        f"{type(items).__name__}; wrap it in a list")
    items = list(items)
    if all(isinstance(x, str) for x in items):
        return model.tokenize(items)
    if any(isinstance(x, str) for x in items):
        raise DataError(f"`{name}` mixes strings and token-id lists; give one kind")
    return [list(map(int, x)) for x in items]


def _pairs(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], *,
           names: tuple[str, str] = ("clean", "corrupt"), what: str = "patching maps",
           swap: str = "activation patching swaps") -> tuple[list, list]:
    """Token rows of equally long lists of prompts, pair i of equal length in both (`names` name
    the two arguments in the errors, `what` the caller, `swap` what needs equal lengths)."""
    first, second = names
    if model.is_encoder_decoder:
        raise InterventionError(
            f"{what} need a decoder-only model; {model.name} is an encoder-decoder")
    a, b = _token_rows(model, clean, first), _token_rows(model, corrupt, second)
    if not a or not b:
        raise DataError(f"`{first}` and `{second}` are empty; give at least one pair of prompts")
    if len(a) != len(b):
        raise DataError(f"`{first}` has {len(a)} prompts but `{second}` has {len(b)}; give one {second} "
                        f"prompt per {first} prompt")
    for i, (x, y) in enumerate(zip(a, b)):
        if len(x) != len(y):
            raise ShapeError(
                f"pair {i}: the {first} prompt is {len(x)} tokens but the {second} prompt is {len(y)}; "
                f"{swap} activations position by position, so choose {first}/{second} "
                "pairs of the same token length")
        if not x:
            raise DataError(f"pair {i} has no tokens; each prompt needs at least one token")
    return a, b


def _where_at(at: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """``mask [n, pos] -> bool [n, pos]``: the positions a patch ``at`` "all" or "last" touches."""
    if at == "all":
        return lambda mask: mask.bool()
    if at == "last":
        return lambda mask: Positions.last().resolve(mask)
    raise DataError(f"`at` must be 'all' (every position) or 'last' (the last real token of each pair), got {at!r}")


def _setup(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any], metric: Metric,
           batch_size: int, heads: bool):
    if batch_size < 1:
        raise DataError(f"`batch_size` must be a positive integer, got {batch_size}")
    if not callable(metric):
        raise DataError(f"`metric` must be a callable metric(logits, pairs) -> [rows], got {metric!r}")
    a, b = _pairs(model, clean, corrupt)
    ids_c, mask = pad_rows(a, pad_id=model.pad_id, device=model.device)
    ids_x, _ = pad_rows(b, pad_id=model.pad_id, device=model.device)
    clean_run = _plain(model, ids_c, mask, metric, heads=heads, kv=False)
    corrupt_run = _plain(model, ids_x, mask, metric, heads=heads, kv=_suffix_ok(model))
    return mask, clean_run, corrupt_run


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
    mask, clean_run, corrupt_run = _setup(model, clean, corrupt, metric, batch_size, heads=False)
    n, width = mask.shape
    stack = corrupt_run.prefix.stack
    n_layers = len(corrupt_run.inputs)
    lengths = mask.sum(1).cpu()
    real = mask.bool()
    values = torch.full((n, n_layers, width), float("nan"))
    for j in range(n_layers):
        same = (clean_run.inputs[j] == corrupt_run.inputs[j]).all(-1)  # [n, pos]: a no-op patch
        todo = (real & ~same).nonzero()  # (pair, pos) cells that need a forward
        for i in range(n):
            values[i, j, : int(lengths[i])] = corrupt_run.metric[i]
        if todo.numel() == 0:
            continue
        pairs, pos = todo[:, 0], todo[:, 1]
        site = model.site(stack, j + 1, "resid_pre")
        source = clean_run.inputs[j]

        def plan(rows: torch.Tensor, cells: torch.Tensor, start: int, site=site, source=source,
                 pos=pos) -> dict:
            where = torch.zeros(rows.shape[0], width - start, dtype=torch.bool, device=rows.device)
            where[torch.arange(rows.shape[0], device=rows.device), pos[cells] - start] = True
            return {site: Patch(source.index_select(0, rows)[:, start:], Positions.of_mask(where))}

        got = _replay_cells(model, corrupt_run, mask, block=j, pairs=pairs, firsts=pos, plan=plan,
                            metric=metric, batch_size=batch_size)
        values[pairs.cpu(), j, pos.cpu()] = got
    return PatchMap(values=values, clean=clean_run.metric, corrupt=corrupt_run.metric, lengths=lengths,
                    kind="resid_pre", fingerprint=model.fingerprint)


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
    real_at = _where_at(at)
    mask, clean_run, corrupt_run = _setup(model, clean, corrupt, metric, batch_size, heads=True)
    n = mask.shape[0]
    stack = corrupt_run.prefix.stack
    shape = model.sites.stack(stack)
    n_layers, n_heads, d_head = len(corrupt_run.inputs), shape.n_heads, shape.d_head
    values = torch.empty(n, n_layers, n_heads)
    real = real_at(mask)
    width = mask.shape[1]
    for j in range(n_layers):
        source = clean_run.heads[j]
        sites = [model.site(stack, j + 1, "head", head=h) for h in range(n_heads)]
        # [n, pos, heads]: where the clean head output differs from the corrupt one
        differs = (source != corrupt_run.heads[j]).view(n, width, n_heads, d_head).any(-1) & real[..., None]
        any_diff = differs.any(1)                                   # [n, heads]
        first = torch.where(differs, torch.arange(width, device=mask.device)[None, :, None], width).amin(1)
        values[:, j, :] = corrupt_run.metric[:, None]               # an unchanged head: the corrupt run
        todo = any_diff.nonzero()                                   # (pair, head) cells
        if todo.numel() == 0:
            continue
        pairs, head_of = todo[:, 0], todo[:, 1]

        def plan(rows: torch.Tensor, cells: torch.Tensor, start: int, sites=sites, source=source,
                 head_of=head_of) -> dict:
            heads = head_of[cells]
            on_real = real.index_select(0, rows)[:, start:]
            src = source.index_select(0, rows)[:, start:]
            out = {}
            for h, site in enumerate(sites):
                on = heads == h
                if bool(on.any()):
                    out[site] = Patch(src[..., h * d_head:(h + 1) * d_head], Positions.of_mask(on_real & on[:, None]))
            return out

        got = _replay_cells(model, corrupt_run, mask, block=j, pairs=pairs, firsts=first[pairs, head_of],
                            plan=plan, metric=metric, batch_size=batch_size)
        values[pairs.cpu(), j, head_of.cpu()] = got
    return PatchMap(values=values, clean=clean_run.metric, corrupt=corrupt_run.metric,
                    lengths=mask.sum(1).cpu(), kind="head" if at == "all" else "head_last",
                    fingerprint=model.fingerprint)
