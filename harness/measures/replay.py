"""Suffix replay for activation patching: run each pair once, then replay only what a patched cell changes.

    _plain(model, ids, mask, metric, heads=, kv=)   one plain forward: every block's input (and,
                                                     with `heads`, every attention output
                                                     projection's input), the arguments every block
                                                     was called with, the last-token metric, and
                                                     with `kv` each attention's keys and values and
                                                     the blocks' causal mask
    _suffix_ok(model)                                whether replays may skip the positions before
                                                     the first changed one
    _replay_cells(model, corrupt, mask, block=, ...) the metric of each cell: blocks ``block``.. of
                                                     the corrupt run replayed under the cell's
                                                     patches, cells in the batch dimension

This is how the patching engine (`harness.measures.patching_engine`) replays a map's blocks
(`harness.measures.patching`'s module docstring states the metric protocol and what the maps
compute). A cell at block L replays only blocks L.. (and the
final norm) of the corrupt run, taking the captured block calls from the plain forward
(`harness.interventions.prefix`); on the suffix path (architectures whose table entry sets
`Layout.suffix_replay`, ``eager`` or ``sdpa``) a chunk of cells replays only the positions from
the first one a cell of the chunk changes, the keys and values of earlier positions coming from
the corrupt run (as its cache stores them: a rotary model's keys already rotated). A rotary
block gets its position arguments cut to the replayed positions (``position_ids``,
``cache_position``, the rotary ``(cos, sin)`` rows). Where the suffix replay cannot apply, the
maps replay all positions, with the same numbers: an entry without ``suffix_replay`` (ALiBi,
encoder-decoder, Gemma-2's soft-capped attention), a sliding window shorter than the prompt
(`Layout.window`), layer kinds other than full and sliding attention, a block called with an
argument the replay does not know how to cut, or a captured mask that differs from the rebuilt one.

The replayed blocks get the attention mask in the format of the implementation the model runs
with (``eager`` adds it to the scores, ``sdpa`` takes a boolean one): the suffix replay's mask
is built by transformers' own ``create_causal_mask`` for the model's config and cut to the
replayed query positions, and a full replay reuses the masks the model built itself
(`harness.interventions.prefix`). Implementations whose masks are not plain tensors (e.g. flash attention)
replay all positions (no suffix path); ``flex_attention`` cannot replay rows and raises.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch

from harness.errors import InterventionError, ShapeError
from harness.interventions import intervene
from harness.models.loaded import LoadedModel
from harness.models.logits import stop_at_final_norm, unembed
from harness.interventions.prefix import StackPrefix, attention_implementation, capture

if TYPE_CHECKING:
    from harness.measures.patching import Metric


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
        k, v = self.store[layer_idx]       # on the layer's device (a model split by a device map)
        k = k.index_select(0, self.rows.to(k.device))[:, :, : self.start]
        v = v.index_select(0, self.rows.to(v.device))[:, :, : self.start]
        return torch.cat([k, keys], 2), torch.cat([v, values], 2)

    def get_seq_length(self, *args: Any) -> int:  # pragma: no cover - not called by the blocks used
        return self.start


# Attention implementations whose mask is a plain [rows, 1, query, key] tensor that the suffix
# replay can cut to the replayed queries (eager: additive float; sdpa: boolean).
_SUFFIX_IMPLEMENTATIONS = ("eager", "sdpa")


def _suffix_ok(model: LoadedModel, width: int | None = None) -> bool:
    """Whether replays may skip the positions before the first changed one, by the architecture
    table (`Layout.suffix_replay`, `Layout.window`): a causal model whose blocks take their
    keys/values from a cache argument (no cross-attention), running an attention implementation
    whose mask we can cut to the replayed queries, with no sliding window shorter than the
    prompt (`width` tokens; None: unknown, decided again by `_plain`), and no layer kinds but
    full and sliding attention. Otherwise the maps replay all positions: right, and slower."""
    layout, config = model.layout, model.module.config
    if layout.suffix_replay is None or getattr(config, "add_cross_attention", False):
        return False
    if attention_implementation(model, model.main_stack) not in _SUFFIX_IMPLEMENTATIONS:
        return False
    for c in (config, _stack_config(model, model.main_stack)):
        if any(t not in ("full_attention", "sliding_attention") for t in (getattr(c, "layer_types", None) or ())):
            return False
        window = layout.window(c)
        if window is not None and width is not None and window < width:
            return False
    return True


def _stack_config(model: LoadedModel, stack: str) -> Any:
    """The config the attention modules of `stack` read their implementation from."""
    blocks = model.module.get_submodule(model.layout.stack(stack).blocks)
    for module in blocks.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            return config
    return model.module.config


def _block_mask_arg(call: tuple[tuple, dict]) -> Any:
    """The attention mask a block was called with (the third positional argument of a
    ``positional`` call, as GPT-2's ``block(hidden, cache, attention_mask, ...)``, or the keyword)."""
    args, kwargs = call
    return args[2] if len(args) >= 3 else kwargs.get("attention_mask")


def _causal_mask(model: LoadedModel, prefix: StackPrefix, hidden: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor | None:
    """The causal attention mask ``[n, 1, pos, pos]`` of a full forward over ``mask`` (``[n, pos]``,
    1 = real token), built as transformers builds it for the implementation the stack runs with
    (``eager``: float, 0 or the dtype's minimum, added to the scores; ``sdpa``: bool, True =
    attend), but always materialized (sdpa's "no mask, use is_causal" shortcut is wrong for a
    replay whose queries start after position 0). `hidden` (``[n, pos, d]``) gives dtype and
    device. Where the model passed its blocks mask tensors in the captured forward, each must be
    identical to it; where one is not (a window or mask kind the rebuild does not know), None:
    the caller replays all positions.

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
    passed = {id(m): m for m in map(_block_mask_arg, prefix.calls) if isinstance(m, torch.Tensor) and m.dim() == 4}
    for seen in passed.values():
        if not (seen.shape == built.shape and seen.dtype == built.dtype and torch.equal(seen, built)):
            return None
    return next(iter(passed.values()), built)  # the captured calls hold it already: keep one copy


@torch.no_grad()
def _plain(model: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, metric: Metric, *, heads: bool,
           kv: bool) -> _Run:
    stack = model.main_stack
    layout = model.layout.stack(stack)
    blocks = model.module.get_submodule(layout.blocks)
    kv = kv and _suffix_ok(model, width=int(ids.shape[1]))  # a window shorter than the prompt: replay all
    seen: dict[int, torch.Tensor] = {}
    head_in: dict[int, torch.Tensor] = {}
    out: dict[str, torch.Tensor] = {}
    store: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []

    def keep_input(j: int, into: dict):
        def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
            into[j] = (args[0] if args else kwargs["hidden_states"]).detach()
            if kv and into is seen:  # hand the block a recorder as its cache
                if positional and len(args) >= 2:
                    return (args[0], _KeyValues(store)) + tuple(args[2:]), kwargs
                return args, {**kwargs, _cache_key(module, kwargs): _KeyValues(store)}
            return None
        return hook

    positional = model.layout.suffix_replay == "positional"

    def run() -> None:
        with stop_at_final_norm(model) as final:   # the output head runs at the last tokens only
            model.module(input_ids=ids, attention_mask=mask, use_cache=False)
        out["normed"] = final["normed"]

    try:
        prefix = None
        # capture's hooks go first, so they keep the arguments as the model passed them
        def run_all() -> None:
            for j, block in enumerate(blocks):
                handles.append(block.register_forward_pre_hook(keep_input(j, seen), with_kwargs=True))
                if heads:
                    proj = block.get_submodule(layout.head_in)
                    handles.append(proj.register_forward_pre_hook(keep_input(j, head_in), with_kwargs=True))
            run()
        prefix = capture(model, stack, start=0, ids=ids, mask=mask, run=run_all)
    finally:
        for h in reversed(handles):
            h.remove()
    n = ids.shape[0]
    last = mask.sum(1) - 1
    rows = torch.arange(n, device=ids.device)
    normed = out["normed"]                 # on the final norm's device
    value = _score(model, metric, normed[rows.to(normed.device), last.to(normed.device)], rows)
    if kv and not all(_cuttable(call, positional) for call in prefix.calls):  # an argument we cannot cut: replay all
        store, kv = {}, False
    if kv and len(store) != len(blocks):  # the blocks did not use the cache they were handed: replay all
        store, kv = {}, False
    attend = _causal_mask(model, prefix, seen[0], mask) if kv else None
    if attend is None:  # no suffix path: the replays run every position
        store = {}
    return _Run(prefix=prefix, inputs=[seen[j] for j in range(len(blocks))],
                heads=[head_in[j] for j in range(len(blocks))] if heads else [], metric=value, kv=store,
                attend=attend)


def _suffix_replay(model: LoadedModel, run: _Run, block: int, rows: torch.Tensor, start: int) -> torch.Tensor:
    """Blocks ``block``.. and the final norm for positions ``start``.. of the corrupt rows, the
    keys and values of earlier positions taken from the corrupt run (the block call of the
    table's `Layout.suffix_replay`: ``positional`` or ``keywords``).

    ``rows``: ``[r]`` pair indices. Returns ``[r, pos - start, d]``.
    Each block gets the rows' attention mask of the full forward (``run.attend``, in the
    format of the model's attention implementation), cut to query positions ``start..``: every
    key column stays, the keys before `start` coming from the cache. Raises
    `InterventionError` if the implementation changed since `run` was captured.
    """
    run.prefix.check_implementation()
    layout = model.layout.stack(run.prefix.stack)
    blocks = model.module.get_submodule(layout.blocks)
    h = run.inputs[block].index_select(0, rows.to(run.inputs[block].device))[:, start:]
    if run.attend is None:
        raise InterventionError("the suffix replay needs the attention mask of the captured run "
                                "(_plain(..., kv=True))")
    attend = run.attend.index_select(0, rows.to(run.attend.device))[:, :, start:]  # [rows, 1, q, k]
    n = run.inputs[block].shape[0]
    positional = model.layout.suffix_replay == "positional"
    for j in range(block, len(blocks)):
        args, kwargs = run.prefix.calls[j]
        cache = _KeyValues(run.kv, rows, start)
        if positional:  # block(hidden, cache, attention_mask, encoder states, ...), as GPT-2's
            kwargs = dict(kwargs)
            if isinstance(kwargs.get("position_ids"), torch.Tensor):
                kwargs["position_ids"] = kwargs["position_ids"][..., start:]
            rest = tuple(None if isinstance(a, torch.Tensor) else a for a in args[3:])
            out = blocks[j](h, cache, attend, *rest, **kwargs)
        else:  # keyword arguments (the Llama layout): positions cut, mask and cache replaced
            kwargs = {k: _cut(k, v, rows, start, n) for k, v in kwargs.items() if k != "hidden_states"}
            kwargs.update({"attention_mask": attend, _cache_key(blocks[j], kwargs): cache})
            out = blocks[j](h, **kwargs)
        h = out[0] if isinstance(out, tuple) else out
    return model.module.get_submodule(layout.final_norm)(h)


# The keywords blocks take their key/value cache by, and the keyword arguments of a block call
# that a suffix replay replaces (`_cut` cuts position_ids, cache_position and
# position_embeddings); a tensor under any other name makes `_plain` take the full replay.
_CACHE_KEYS = ("cache", "past_key_values", "layer_past", "past_key_value")
_REPLACED = ("attention_mask", "hidden_states") + _CACHE_KEYS


def _cache_key(block: torch.nn.Module, kwargs: dict) -> str:
    """The keyword a block takes its key/value cache by: the one the model passed (transformers
    passes ``cache`` or, by model, ``past_key_values`` or ``layer_past``), else the first of
    those the block's forward has, else ``past_key_values``."""
    for key in _CACHE_KEYS:
        if key in kwargs:
            return key
    params = inspect.signature(block.forward).parameters
    return next((key for key in _CACHE_KEYS if key in params), "past_key_values")


def _cuttable(call: tuple[tuple, dict], positional: bool) -> bool:
    """Whether a suffix replay can cut a captured block call to the replayed rows and positions:
    a ``positional`` call (hidden, cache, attention mask, ...) with those three, or a keyword call
    (hidden states first or by name) whose tensors are all `_REPLACED`, or positions of the
    shapes `_cut` expects."""
    args, kwargs = call
    if positional:
        return len(args) >= 3
    if len(args) > 1:
        return False
    dims = {"position_ids": 2, "cache_position": 1, "position_embeddings": 3}
    for key, value in kwargs.items():
        tensors = [value] if isinstance(value, torch.Tensor) else \
            [v for v in value if isinstance(v, torch.Tensor)] if isinstance(value, (tuple, list)) else []
        if not tensors or key in _REPLACED:
            continue
        if key not in dims or any(t.dim() != dims[key] for t in tensors) or \
                (key == "position_embeddings" and not (isinstance(value, tuple) and len(tensors) == len(value))):
            return False
    return True


def _cut(key: str, value: Any, rows: torch.Tensor, start: int, n: int) -> Any:
    """A keyword argument of a block call for the replayed ``rows`` and positions ``start..``:
    ``position_ids`` ``[1 or n, pos]`` and rotary ``(cos, sin)`` ``[1 or n, pos, d]`` lose
    positions ``< start`` (rows selected where they have one per row), ``cache_position``
    ``[pos]`` too; anything else is passed on as captured."""
    def rows_of(t: torch.Tensor) -> torch.Tensor:
        return t.index_select(0, rows.to(t.device)) if n > 1 and t.dim() > 1 and t.shape[0] == n else t

    if key == "position_ids" and isinstance(value, torch.Tensor):
        return rows_of(value)[..., start:]
    if key == "cache_position" and isinstance(value, torch.Tensor):
        return value[start:]
    if key == "position_embeddings" and isinstance(value, tuple):
        return tuple(rows_of(t)[:, start:] for t in value)
    return value


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
        picked = normed[torch.arange(rows.shape[0], device=normed.device),
                        (last.index_select(0, rows) - start).to(normed.device)]
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
