"""Activation patching for decoder-only models: clean -> corrupt, one cell at a time, fast.

    patch_resid_map(model, clean, corrupt, metric)   resid_pre of every block x every position
                                                     (TransformerLens ``get_act_patch_resid_pre``)
    patch_head_map(model, clean, corrupt, metric)    every head's output at all positions
                                                     (``get_act_patch_attn_head_out_all_pos``)
    PatchMap                                         per-pair values ``[n, layers, cols]`` with the
                                                     clean and corrupt baselines
    answer_logit_diff, answer_logprob                ready-made metrics

A *cell* is one patch: the corrupt run of a pair with one activation replaced by the clean
run's value (``blocks.L.resid_pre`` at one position; or ``blocks.L.attn.head{h}`` at every
position). The metric is evaluated on the patched logits at the last token of the pair.

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
output head at the last token) for the corrupt input; cells go in the batch dimension (rows =
pairs x cells, in chunks of ``batch_size``); and a resid cell whose clean value is bit-for-bit
the corrupt value (a position before the first token where the pair differs: the model is
causal) is exactly the corrupt run, so its value is the corrupt metric without any forward.
Values equal a per-cell loop of full forwards within 1e-4 under every attention implementation
the model can run here (``eager``, ``sdpa``; pinned by tests/test_replay_implementations.py).
Every hook is removed when a call returns or raises.

The replayed blocks get the attention mask in the format of the implementation the model runs
with (``eager`` adds it to the scores, ``sdpa`` takes a boolean one): the suffix replay's mask
is built by transformers' own ``create_causal_mask`` for the model's config and cut to the
replayed query positions, and a full replay reuses the masks the model built itself
(`harness.interventions.prefix`). Implementations whose masks are not plain tensors (e.g. flash attention)
replay all positions (no suffix path); ``flex_attention`` cannot replay rows and raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from harness.errors import DataError, InterventionError, ShapeError
from harness.interventions import Patch, Positions, intervene
from harness.models.load import LoadedModel, pad_rows, unembed
from harness.interventions.prefix import StackPrefix, attention_implementation, capture

__all__ = ["PatchMap", "Metric", "patch_resid_map", "patch_head_map", "answer_logit_diff", "answer_logprob"]

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


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class PatchMap:
    """Per-pair patching results.

    ``values[i, j, c]`` is the metric of pair i with cell (block ``j + 1``, column c) patched
    from clean into corrupt; columns are positions (`patch_resid_map`, NaN past a pair's
    length) or heads (`patch_head_map`). ``clean[i]`` / ``corrupt[i]`` are the metric on the
    unpatched runs.
    """

    values: torch.Tensor     # [n, layers, cols] float32
    clean: torch.Tensor      # [n]
    corrupt: torch.Tensor    # [n]
    lengths: torch.Tensor    # [n] tokens per pair
    kind: str                # "resid_pre" or "head"
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


# --------------------------------------------------------------------------- inputs and runs


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


def _pairs(model: LoadedModel, clean: Sequence[Any], corrupt: Sequence[Any]) -> tuple[list, list]:
    if model.is_encoder_decoder:
        raise InterventionError(
            f"patching maps need a decoder-only model; {model.name} is an encoder-decoder")
    a, b = _token_rows(model, clean, "clean"), _token_rows(model, corrupt, "corrupt")
    if not a or not b:
        raise DataError("`clean` and `corrupt` are empty; give at least one pair of prompts")
    if len(a) != len(b):
        raise DataError(f"`clean` has {len(a)} prompts but `corrupt` has {len(b)}; give one corrupt "
                        "prompt per clean prompt")
    for i, (x, y) in enumerate(zip(a, b)):
        if len(x) != len(y):
            raise ShapeError(
                f"pair {i}: the clean prompt is {len(x)} tokens but the corrupt prompt is {len(y)}; "
                "activation patching swaps activations position by position, so choose clean/corrupt "
                "pairs of the same token length")
        if not x:
            raise DataError(f"pair {i} has no tokens; each prompt needs at least one token")
    return a, b


def _score(model: LoadedModel, metric: Metric, normed_last: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    values = metric(unembed(model, normed_last), pairs)
    if not isinstance(values, torch.Tensor) or values.shape != (pairs.shape[0],):
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ShapeError(f"`metric` must return one value per row, shape [{pairs.shape[0]}], got {shape}; "
                         "see the metric protocol in harness.measures.patching")
    return values.detach().float().cpu()


@dataclass
class _Run:
    """One plain forward: the input of every block, the captured block calls, the last-token metric."""

    prefix: StackPrefix         # start=0: calls of every block
    inputs: list[torch.Tensor]  # [n_layers] of [n, pos, d]
    heads: list[torch.Tensor]   # [n_layers] of [n, pos, n_heads * d_head] (empty unless asked)
    metric: torch.Tensor        # [n]
    kv: dict[int, tuple[torch.Tensor, torch.Tensor]]  # block -> its attention's keys, values (suffix path)
    attend: torch.Tensor | None = None  # [n, 1, pos, pos]: the blocks' attention mask (suffix path)


class _KeyValues:
    """A stand-in for a transformers ``Cache``: records each attention's keys and values in a
    plain forward, or prepends the recorded ones of positions ``< start`` in a suffix replay."""

    def __init__(self, store: dict, rows: torch.Tensor | None = None, start: int = 0) -> None:
        self.store, self.rows, self.start = store, rows, start

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any):
        if self.rows is None:
            self.store[layer_idx] = (keys, values)
            return keys, values
        k, v = self.store[layer_idx]
        k = k.index_select(0, self.rows)[:, :, : self.start]
        v = v.index_select(0, self.rows)[:, :, : self.start]
        return torch.cat([k, keys], 2), torch.cat([v, values], 2)

    def get_seq_length(self, *args: Any) -> int:  # pragma: no cover - not called by the blocks used
        return self.start


# Attention implementations whose mask is a plain [rows, 1, query, key] tensor that the suffix
# replay can cut to the replayed queries (eager: additive float; sdpa: boolean).
_SUFFIX_IMPLEMENTATIONS = ("eager", "sdpa")


def _suffix_ok(model: LoadedModel) -> bool:
    """Whether replays may skip the positions before the first changed one (a causal model whose
    blocks take their keys/values from a cache argument and no position arguments we must shift,
    running an attention implementation whose mask we can cut to the replayed queries)."""
    return (model.layout.architecture == "gpt2" and not getattr(model.module.config, "add_cross_attention", False)
            and attention_implementation(model, model.main_stack) in _SUFFIX_IMPLEMENTATIONS)


def _stack_config(model: LoadedModel, stack: str) -> Any:
    """The config the attention modules of `stack` read their implementation from."""
    blocks = model.module.get_submodule(model.layout.stack(stack).blocks)
    for module in blocks.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            return config
    return model.module.config


def _block_mask_arg(call: tuple[tuple, dict]) -> Any:
    """The attention mask a GPT-2 block was called with (third positional argument or keyword)."""
    args, kwargs = call
    return args[2] if len(args) >= 3 else kwargs.get("attention_mask")


def _causal_mask(model: LoadedModel, prefix: StackPrefix, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The causal attention mask ``[n, 1, pos, pos]`` of a full forward over ``mask`` (``[n, pos]``,
    1 = real token), built as transformers builds it for the implementation the stack runs with
    (``eager``: float, 0 or the dtype's minimum, added to the scores; ``sdpa``: bool, True =
    attend), but always materialized (sdpa's "no mask, use is_causal" shortcut is wrong for a
    replay whose queries start after position 0). `hidden` (``[n, pos, d]``) gives dtype and
    device. Where the model passed its blocks a mask tensor in the captured forward, the two
    must be identical.

    Raises `InterventionError` if transformers cannot build it or builds something else.
    """
    from transformers.masking_utils import create_causal_mask

    config = _stack_config(model, prefix.stack)
    n, width = mask.shape
    _, kwargs = prefix.calls[0]
    try:
        built = create_causal_mask(config=config, inputs_embeds=hidden, attention_mask=mask, cache=None,
                                   position_ids=kwargs.get("position_ids"), allow_is_causal_skip=False)
    except TypeError as err:
        raise InterventionError(f"transformers' create_causal_mask does not take the arguments the suffix "
                                f"replay passes ({err}); this transformers version is not supported by "
                                "harness.measures.patching") from None
    if not (isinstance(built, torch.Tensor) and built.shape == (n, 1, width, width)):
        shape = tuple(built.shape) if isinstance(built, torch.Tensor) else type(built).__name__
        raise InterventionError(f"transformers built a causal mask of shape {shape} for attention implementation "
                                f"{config._attn_implementation!r}; the suffix replay needs [{n}, 1, {width}, {width}]")
    seen = _block_mask_arg(prefix.calls[0])
    if isinstance(seen, torch.Tensor) and seen.dim() == 4:
        if not (seen.shape == built.shape and seen.dtype == built.dtype and torch.equal(seen, built)):
            raise InterventionError("the causal mask rebuilt for the suffix replay differs from the one the model "
                                    f"passed its blocks (implementation {config._attn_implementation!r}); refusing "
                                    "to replay")
        return seen  # the captured calls hold it already: keep one copy
    return built


@torch.no_grad()
def _plain(model: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, metric: Metric, *, heads: bool,
           kv: bool) -> _Run:
    stack = model.main_stack
    layout = model.layout.stack(stack)
    blocks = model.module.get_submodule(layout.blocks)
    seen: dict[int, torch.Tensor] = {}
    head_in: dict[int, torch.Tensor] = {}
    out: dict[str, torch.Tensor] = {}
    store: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []

    def keep_input(j: int, into: dict):
        def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
            into[j] = (args[0] if args else kwargs["hidden_states"]).detach()
            if kv and into is seen:  # hand the block a recorder as its cache
                if len(args) >= 2:
                    return (args[0], _KeyValues(store)) + tuple(args[2:]), kwargs
                return args, {**kwargs, "past_key_values": _KeyValues(store)}
            return None
        return hook

    def keep_final(module: torch.nn.Module, args: tuple, output: Any) -> None:
        out["normed"] = output[0] if isinstance(output, tuple) else output

    def run() -> None:
        model.module(input_ids=ids, attention_mask=mask, use_cache=False)

    try:
        prefix = None
        # capture's hooks go first, so they keep the arguments as the model passed them
        def run_all() -> None:
            for j, block in enumerate(blocks):
                handles.append(block.register_forward_pre_hook(keep_input(j, seen), with_kwargs=True))
                if heads:
                    proj = block.get_submodule(layout.head_in)
                    handles.append(proj.register_forward_pre_hook(keep_input(j, head_in), with_kwargs=True))
            handles.append(model.module.get_submodule(layout.final_norm).register_forward_hook(keep_final))
            run()
        prefix = capture(model, stack, start=0, ids=ids, mask=mask, run=run_all)
    finally:
        for h in reversed(handles):
            h.remove()
    n = ids.shape[0]
    last = mask.sum(1) - 1
    rows = torch.arange(n, device=ids.device)
    value = _score(model, metric, out["normed"][rows, last], rows)
    if kv and len(store) != len(blocks):
        raise InterventionError(f"recorded keys/values of {len(store)} of {len(blocks)} blocks; "
                                "this architecture does not take its cache as expected")
    attend = _causal_mask(model, prefix, seen[0], mask) if kv else None
    return _Run(prefix=prefix, inputs=[seen[j] for j in range(len(blocks))],
                heads=[head_in[j] for j in range(len(blocks))] if heads else [], metric=value, kv=store,
                attend=attend)


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


def _suffix_replay(model: LoadedModel, run: _Run, block: int, rows: torch.Tensor, start: int) -> torch.Tensor:
    """Blocks ``block``.. and the final norm for positions ``start``.. of the corrupt rows, the
    keys and values of earlier positions taken from the corrupt run (GPT-2 layout).

    ``rows``: ``[r]`` pair indices. Returns ``[r, pos - start, d]``.
    Each block gets the rows' attention mask of the full forward (``run.attend``, in the
    format of the model's attention implementation), cut to query positions ``start..``: every
    key column stays, the keys before `start` coming from the cache. Raises
    `InterventionError` if the implementation changed since `run` was captured.
    """
    run.prefix.check_implementation()
    layout = model.layout.stack(run.prefix.stack)
    blocks = model.module.get_submodule(layout.blocks)
    h = run.inputs[block].index_select(0, rows)[:, start:]
    if run.attend is None:
        raise InterventionError("the suffix replay needs the attention mask of the captured run "
                                "(_plain(..., kv=True))")
    attend = run.attend.index_select(0, rows)[:, :, start:]                       # [rows, 1, q, k]
    for j in range(block, len(blocks)):
        args, kwargs = run.prefix.calls[j]
        kwargs = dict(kwargs)
        if isinstance(kwargs.get("position_ids"), torch.Tensor):
            kwargs["position_ids"] = kwargs["position_ids"][..., start:]
        cache = _KeyValues(run.kv, rows, start)
        if len(args) >= 3:
            rest = tuple(None if isinstance(a, torch.Tensor) else a for a in args[3:])
            out = blocks[j](h, cache, attend, *rest, **kwargs)
        else:
            out = blocks[j](h, past_key_values=cache, attention_mask=attend, **kwargs)
        h = out[0] if isinstance(out, tuple) else out
    return model.module.get_submodule(layout.final_norm)(h)


def _replay_cells(model: LoadedModel, corrupt: _Run, mask: torch.Tensor, *, block: int,
                  pairs: torch.Tensor, firsts: torch.Tensor,
                  plan: Callable[[torch.Tensor, torch.Tensor, int], dict], metric: Metric,
                  batch_size: int) -> torch.Tensor:
    """Metric of each row (a cell of pair ``pairs[r]`` whose patch changes nothing before
    position ``firsts[r]``), replaying blocks ``block``.. of the corrupt run with the
    interventions ``plan(rows, cells, start)`` returns for a chunk of cells; the interventions
    see positions ``start``.. only."""
    full = corrupt.prefix
    suffix = bool(corrupt.kv)
    prefix = StackPrefix(model=model, stack=full.stack, start=block, hidden=corrupt.inputs[block],
                         calls=full.calls[block:], mask=mask, implementation=full.implementation)
    last = mask.sum(1) - 1
    out = torch.empty(pairs.shape[0])
    order = torch.argsort(firsts.cpu(), stable=True) if suffix else torch.arange(pairs.shape[0])
    # cells with the same first changed position run together; a chunk starts at its smallest
    for begin, chunk in _chunks(firsts.cpu()[order], batch_size, suffix):
        cells = order[begin:begin + chunk].to(pairs.device)
        rows = pairs.index_select(0, cells)
        start = int(firsts[cells].min()) if suffix else 0
        with intervene(model, plan(rows, cells, start),
                       masks={full.stack: mask.index_select(0, rows)[:, start:]}):
            if suffix and start > 0:
                normed = _suffix_replay(model, corrupt, block, rows, start)
            else:
                normed = prefix.replay(rows)
        picked = normed[torch.arange(rows.shape[0], device=normed.device), last.index_select(0, rows) - start]
        out[cells.cpu()] = _score(model, metric, picked, rows)
    return out


def _chunks(firsts: torch.Tensor, batch_size: int, suffix: bool) -> list[tuple[int, int]]:
    """(begin, size) of each chunk of the sorted cells: at most `batch_size` cells, and with the
    suffix path a new chunk wherever the first changed position changes, unless the chunk so far
    is small (one forward of a few rows costs more than the positions it would skip)."""
    n = int(firsts.shape[0])
    out: list[tuple[int, int]] = []
    begin = 0
    for i in range(1, n + 1):
        size = i - begin
        if i == n or size == batch_size or (suffix and firsts[i] != firsts[begin] and size >= _MIN_GROUP):
            out.append((begin, size))
            begin = i
    return out


_MIN_GROUP = 16


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
                   batch_size: int = 256) -> PatchMap:
    """Patch each head's output (``blocks.L.attn.head{h}``) at all positions from clean into corrupt.

    Example::

        pm = patch_head_map(m, clean_prompts, corrupt_prompts, answer_logit_diff(io, s))
        pm.values      # [n_pairs, n_layers, n_heads]
        pm.mean()      # TransformerLens get_act_patch_attn_head_out_all_pos's [n_layers, n_heads]
    """
    mask, clean_run, corrupt_run = _setup(model, clean, corrupt, metric, batch_size, heads=True)
    n = mask.shape[0]
    stack = corrupt_run.prefix.stack
    shape = model.sites.stack(stack)
    n_layers, n_heads, d_head = len(corrupt_run.inputs), shape.n_heads, shape.d_head
    values = torch.empty(n, n_layers, n_heads)
    real = mask.bool()
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
                    lengths=mask.sum(1).cpu(), kind="head", fingerprint=model.fingerprint)
