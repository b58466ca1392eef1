"""Prefix caching: run a stack up to a site once, then re-run only the blocks after it.

    replay_start(model, site)   the first block that must run again for an edit at `site`
    capture(model, ...)         one forward of the stack that keeps the input of that block and
                                the arguments every later block was called with
    StackPrefix.replay(rows)    re-runs those blocks (and the final norm) for a selection of
                                rows, with whatever interventions are installed at the time
    attention_implementation(model, stack)
                                the attention implementation (``config._attn_implementation``)
                                the stack's blocks run with now: ``"eager"``, ``"sdpa"``, ...

What a block receives besides the hidden states (attention masks, T5's relative position bias,
rotary position embeddings) does not depend on the hidden states, so replaying a block with
the arguments captured in the plain run and new hidden states is exactly the suffix of the
forward: results equal a full forward within float tolerance (pinned by tests for every
architecture and attention implementation). Tensor arguments whose first dimension is the
captured batch are indexed by the replayed rows; those with a first dimension of 1 broadcast as
they did. The architecture table says which arguments differ from that rule (`Layout`'s
``batch_heads_args``: laid out ``[batch * n_heads, ...]``, as BLOOM's ``alibi``, whose rows are
selected head by head; ``unbatched_args``: no batch dimension at all, as MPT's
``position_bias`` ``[n_heads, 1, pos]``, passed on as captured).

The attention masks among those arguments are in the format of the attention implementation
the model ran with at capture (``eager``: an additive float mask; ``sdpa``: a boolean mask, or
none at all for a plain causal batch without padding), so a replay under another
implementation (e.g. captured under ``sdpa``, replayed inside
`harness.measures.attention.eager_attention`) would silently compute something else: it raises
`InterventionError` instead. ``flex_attention``'s block masks cannot be indexed by rows: a
replay under it must replay all captured rows in order, or it raises.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch

from harness.errors import InterventionError
from harness.models.loaded import LoadedModel
from harness.models.sites import Site

__all__ = ["StackPrefix", "attention_implementation", "capture", "replay_start"]


def attention_implementation(model: LoadedModel, stack: str) -> str:
    """The attention implementation the blocks of `stack` run with now, e.g. ``"eager"`` or
    ``"sdpa"`` (their attention modules' ``config._attn_implementation``; several, joined by
    ``"+"``, if the blocks disagree). Falls back to the model's config when no block module
    holds a config.
    """
    blocks, _ = _blocks(model, stack)
    seen: dict[int, str] = {}
    for module in blocks.modules():
        config = getattr(module, "config", None)
        if config is not None and id(config) not in seen and hasattr(config, "_attn_implementation"):
            seen[id(config)] = str(config._attn_implementation)
    if not seen:
        return str(getattr(model.module.config, "_attn_implementation", None))
    return "+".join(sorted(set(seen.values())))


def replay_start(model: LoadedModel, site: Site) -> int:
    """The 0-based index of the first block to re-run for an edit at `site`.

    Equal to the stack's block count when only the final norm follows (``S.n.resid_post``).
    """
    n = model.sites.stack(site.stack).n_layers
    if site.point == "resid_post" and site.layer == n:
        return n
    return max(0, site.layer - 1)


def _blocks(model: LoadedModel, stack: str) -> tuple[torch.nn.ModuleList, torch.nn.Module]:
    layout = model.layout.stack(stack)
    return model.module.get_submodule(layout.blocks), model.module.get_submodule(layout.final_norm)


@dataclass
class StackPrefix:
    """The cached part of one stack's forward over a batch of ``n`` examples."""

    model: LoadedModel
    stack: str
    start: int
    hidden: torch.Tensor                      # [n, pos, d]: input of block `start` (or of the final norm)
    calls: list[tuple[tuple, dict]]           # (args, kwargs) of blocks start..end, as captured
    mask: torch.Tensor                        # [n, pos]
    implementation: str | None = None         # attention_implementation() at capture; None: unchecked

    @property
    def n(self) -> int:
        return int(self.hidden.shape[0])

    @torch.no_grad()
    def replay(self, rows: torch.Tensor) -> torch.Tensor:
        """The stack's output (after its final norm) for ``rows`` (indices into the n examples).

        ``rows``: LongTensor ``[r]`` (repeats allowed). Returns ``[r, pos, d]``, equal to the
        rows of a full forward within float tolerance. Interventions installed with `intervene`
        on modules from block `start` on fire as in a full forward.

        Raises `InterventionError` if the model's attention implementation is not the one it
        was captured under (the captured masks would be misread), or if a captured argument
        cannot be indexed by rows (``flex_attention``'s block mask) and ``rows`` is not
        ``0..n-1`` in order.
        """
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.hidden.device)
        self.check_implementation()
        blocks, norm = _blocks(self.model, self.stack)
        h = self.hidden.index_select(0, rows)
        for offset, (args, kwargs) in enumerate(self.calls):
            block = blocks[self.start + offset]
            names = _positional_names(block, len(args))
            sel_args = tuple(self._select(a, rows, name) for a, name in zip(args, names))
            sel_kwargs = {k: self._select(v, rows, k) for k, v in kwargs.items()}
            if sel_args:
                out = block(h, *sel_args[1:], **sel_kwargs)
            else:
                out = block(**{**sel_kwargs, "hidden_states": h})
            h = out[0] if isinstance(out, tuple) else out
        return norm(h)

    def check_implementation(self) -> None:
        """Raise `InterventionError` unless the stack runs with the attention implementation it
        was captured under (a no-op for a prefix built without one, or one that replays only
        the final norm)."""
        if self.implementation is None or not self.calls:
            return
        now = attention_implementation(self.model, self.stack)
        if now != self.implementation:
            raise InterventionError(
                f"stack {self.stack!r} was captured with attention implementation {self.implementation!r} "
                f"but now runs with {now!r}; the captured attention masks are in the format of "
                f"{self.implementation!r} and would be misread. Capture again under the implementation you "
                "replay with (e.g. call capture inside `eager_attention(model)` too)")

    def _select(self, value: Any, rows: torch.Tensor, name: str | None = None) -> Any:
        """A captured block argument (named `name` where known) for the replayed `rows`."""
        if hasattr(value, "get_seq_length"):  # a key/value cache: a replay must not extend it
            return None
        layout = self.model.layout
        if name is not None and name in layout.unbatched_args:
            return value
        if name is not None and name in layout.batch_heads_args and isinstance(value, torch.Tensor):
            if value.shape[0] % self.n:
                raise InterventionError(
                    f"block argument {name!r} of stack {self.stack!r} has first dimension {value.shape[0]}, not a "
                    f"multiple of the batch {self.n}; the architecture table (batch_heads_args of "
                    f"{layout.architecture!r}) says it is laid out [batch * n_heads, ...]")
            per_row = value.reshape(self.n, value.shape[0] // self.n, *value.shape[1:])
            picked = per_row.index_select(0, rows.to(value.device))
            return picked.reshape(-1, *value.shape[1:])
        if _is_block_mask(value):
            if rows.numel() == self.n and torch.equal(rows.cpu(), torch.arange(self.n)):
                return value
            raise InterventionError(
                f"a block of stack {self.stack!r} was called with a flex_attention block mask, which cannot "
                "be indexed by rows; replay all captured rows in order, or run the model with 'eager' or "
                "'sdpa' attention (model.module.set_attn_implementation)")
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == self.n and self.n > 1:
            return value.index_select(0, rows.to(value.device))
        if isinstance(value, tuple):
            return tuple(self._select(v, rows) for v in value)
        return value


def _positional_names(block: torch.nn.Module, count: int) -> list[str | None]:
    """The parameter names of the first `count` positional arguments of `block`'s forward
    (None for those beyond its named parameters)."""
    params = _positional_parameters(type(block).forward)
    return [params[i] if i < len(params) else None for i in range(count)]


@functools.lru_cache(maxsize=None)
def _positional_parameters(forward: Callable) -> tuple[str, ...]:
    """The positional parameter names of an unbound ``forward`` after ``self``."""
    params = [p.name for p in inspect.signature(forward).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return tuple(params[1:])


def _is_block_mask(value: Any) -> bool:
    return type(value).__name__ == "BlockMask"


@torch.no_grad()
def capture(model: LoadedModel, stack: str, *, start: int, ids: torch.Tensor, mask: torch.Tensor,
            run: Callable[[], Any]) -> StackPrefix:
    """Run `run` (a plain forward of `stack` over ``ids``/``mask``) and keep what a replay needs.

    ``ids``, ``mask``: ``[n, pos]``. The prefix records the attention implementation in use
    (`attention_implementation`); `StackPrefix.replay` refuses to run under another. Raises
    `InterventionError` if `run` does not call blocks ``start..`` of the stack once each.
    """
    blocks, norm = _blocks(model, stack)
    implementation = attention_implementation(model, stack)
    calls: list[tuple[tuple, dict]] = []
    seen: dict[str, torch.Tensor] = {}

    def keep_block(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        calls.append((tuple(args), dict(kwargs)))

    def keep_input(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        seen.setdefault("hidden", args[0] if args else kwargs["hidden_states"])

    handles = []
    try:
        for block in list(blocks)[start:]:
            handles.append(block.register_forward_pre_hook(keep_block, with_kwargs=True))
        entry = blocks[start] if start < len(blocks) else norm
        handles.append(entry.register_forward_pre_hook(keep_input, with_kwargs=True))
        run()
    finally:
        for handle in reversed(handles):
            handle.remove()
    if "hidden" not in seen or len(calls) != len(blocks) - start:
        raise InterventionError(
            f"the forward of stack {stack!r} did not run blocks {start}..{len(blocks) - 1} once each "
            f"(saw {len(calls)} calls); prefix caching needs one plain forward of that stack"
        )
    return StackPrefix(model=model, stack=stack, start=start, hidden=seen["hidden"].detach(),
                       calls=calls, mask=mask, implementation=implementation)
