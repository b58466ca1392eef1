"""Installing interventions: the one context manager that adds hooks and always removes them.

    Run             what one `intervene` block observed: recordings, hook call counts
    intervene       ``with intervene(model, {site: Add(...)}, masks=...) as run:``

Every site is validated before any hook is registered, and every hook registered here is
removed in ``finally``. Every kind is an `Intervention` (`harness.interventions.intervention`,
the protocol) and is installed alike: its ``positions`` resolved against the stack's mask, its
``apply`` called with a `Context`. The library's kinds live in `harness.interventions.edits`
and `harness.interventions.noise`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import torch

from harness.errors import InterventionError, ShapeError
from harness.interventions.intervention import Context, Intervention, known_kinds
from harness.models.loaded import LoadedModel
from harness.models.sites import Site

__all__ = ["Run", "intervene"]


@dataclass
class Run:
    """What one `intervene` block observed: recordings, and how often each site's hook fired."""

    recorded: dict[Site, torch.Tensor] = field(default_factory=dict)
    calls: dict[Site, int] = field(default_factory=dict)


def _normalise(model: LoadedModel, interventions: Mapping[Site | str, Any]
               ) -> list[tuple[Site, tuple[Intervention, ...]]]:
    out = []
    for key, value in interventions.items():
        site = model.site(key)
        chain = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        for item in chain:
            if not isinstance(item, Intervention):
                raise InterventionError(
                    f"intervention at {site} must be an Intervention, one of {known_kinds()} or a "
                    f"subclass of harness.interventions.Intervention, got {type(item).__name__}"
                )
        out.append((site, chain))
    return out


def _make_transform(model: LoadedModel, site: Site, chain: tuple[Intervention, ...],
                    masks: Mapping[str, torch.Tensor], run: Run,
                    ids_seen: Mapping[str, torch.Tensor | None]) -> Callable[[torch.Tensor], torch.Tensor]:
    hook = model.hook_for(site)
    width = model.width(site, varying=True)   # None: the key count of each forward (attention pattern)

    def transform(full: torch.Tensor) -> torch.Tensor:
        run.calls[site] = run.calls.get(site, 0) + 1
        if site.stack not in masks:
            raise InterventionError(
                f"no attention mask for stack {site.stack!r} (site {site}); pass "
                f"masks={{'{site.stack}': attention_mask}} to intervene()"
            )
        mask = masks[site.stack]
        act = hook.view(full, tuple(mask.shape))  # the site's columns; [batch * pos, d] rows unflattened
        if tuple(act.shape[:2]) != tuple(mask.shape):
            raise ShapeError(
                f"activation at {site} is {tuple(full.shape)} but the {site.stack} attention "
                f"mask is {tuple(mask.shape)} [batch, pos]; pass the mask of this forward's batch"
            )
        if width is not None and act.shape[-1] != width:
            raise ShapeError(f"activation at {site} has width {act.shape[-1]}, expected {width}")
        context = Context(real=mask.bool(), input_ids=ids_seen.get(site.stack))
        for item in chain:
            where = item.positions.resolve(mask).to(act.device)
            act = item.apply(act, where, site, run, context)
        return hook.put(full, act)

    return transform


def _output_hook(transform: Callable[[torch.Tensor], torch.Tensor]):
    def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return (transform(output[0]),) + tuple(output[1:])
        return transform(output)

    return hook


def _input_hook(transform: Callable[[torch.Tensor], torch.Tensor]):
    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
        if args:
            return (transform(args[0]),) + tuple(args[1:]), kwargs
        if "hidden_states" in kwargs:
            return args, {**kwargs, "hidden_states": transform(kwargs["hidden_states"])}
        raise InterventionError(
            f"{type(module).__name__} was called without a positional input or `hidden_states`; "
            "this site cannot be hooked on this architecture"
        )

    return hook


def _stack_module(model: LoadedModel, stack: str) -> torch.nn.Module:
    """The module that runs one stack (the parent of its blocks: ``transformer``, ``encoder``)."""
    parent = model.layout.stack(stack).blocks.rpartition(".")[0]
    return model.module.get_submodule(parent) if parent else model.module


def _watch_input_ids(model: LoadedModel, stack: str, seen: dict[str, torch.Tensor | None]) -> list[Any]:
    """Hooks that hold the ``input_ids`` of `stack` while that stack runs (None otherwise), for
    the `Context` of interventions with ``needs_input_ids``; returns their handles."""
    module = _stack_module(model, stack)

    def enter(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        ids = args[0] if args and isinstance(args[0], torch.Tensor) else kwargs.get("input_ids")
        seen[stack] = ids if isinstance(ids, torch.Tensor) and ids.dim() == 2 else None

    def leave(module: torch.nn.Module, args: tuple, output: Any) -> None:
        seen[stack] = None  # a later replay of cached blocks must not see these ids

    return [module.register_forward_pre_hook(enter, with_kwargs=True),
            module.register_forward_hook(leave, always_call=True)]


@contextlib.contextmanager
def intervene(model: LoadedModel, interventions: Mapping[Site | str, Any], *,
              masks: Mapping[str, torch.Tensor], require_fired: bool = True) -> Iterator[Run]:
    """Install interventions for the duration of a ``with`` block.

    Example::

        with intervene(m, {"encoder.12.resid_post": Add(d, alpha=alphas)},
                       masks={"encoder": attention_mask}) as run:
            m.module(input_ids=ids, attention_mask=attention_mask, ...)

    Every site is validated before any hook is registered; every hook registered here is
    removed in ``finally`` (in reverse order), whatever is raised, KeyboardInterrupt included.
    Hooks registered by anyone else are left as they were. A value may be a list of
    interventions, applied in order (e.g. ``[Add(...), Record()]`` records the edited value).

    Each value is an `Intervention` (any subclass: the library's kinds or one's own); anything
    else is an `InterventionError` listing the library's kinds. Every kind gets the same call,
    ``apply(act, where, site, run, context)``: ``where`` its ``positions`` resolved against the
    stack's mask, ``context`` a `Context` with that mask as bool. With an intervention whose
    class sets ``needs_input_ids`` (`Noise`: keyed by each row's real tokens) in the plan, two
    more hooks on the module that runs its stack (the parent of the blocks: ``transformer``,
    ``encoder``, ``model``) hold that stack's ``input_ids`` while it runs and put them in the
    context; they are removed likewise.

    With ``require_fired`` (the default), a block that ends normally while some site's hook
    never ran raises `InterventionError`: an intervention on a module the forward never reached
    (a decoder site while only the encoder ran, say) would otherwise change nothing, silently.
    """
    plan = _normalise(model, interventions)  # raises before anything is installed
    run = Run()
    handles: list[Any] = []
    ids_seen: dict[str, torch.Tensor | None] = {}
    try:
        for stack in sorted({site.stack for site, chain in plan if any(i.needs_input_ids for i in chain)}):
            handles.extend(_watch_input_ids(model, stack, ids_seen))
        for site, chain in plan:
            hook = model.hook_for(site)
            transform = _make_transform(model, site, chain, masks, run, ids_seen)
            if hook.kind == "output":
                handles.append(hook.module.register_forward_hook(_output_hook(transform)))
            else:
                handles.append(hook.module.register_forward_pre_hook(_input_hook(transform), with_kwargs=True))
        yield run
        silent = [str(site) for site, _ in plan if run.calls.get(site, 0) == 0]
        if require_fired and silent:
            raise InterventionError(
                f"the hooks at {silent} never ran: the forward inside the `with` block did not "
                "reach those sites, so they changed nothing; run the stack that holds them, or pass "
                "require_fired=False to allow this"
            )
    finally:
        for handle in reversed(handles):
            handle.remove()
