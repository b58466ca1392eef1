"""Interventions at sites, and the one context manager that installs and always removes them.

    Positions       which positions an intervention touches: all, token spans, last token, a mask
    Record          capture the activation (detached) into ``run.recorded[site]``
    Add             act + alpha * direction; alpha a float or a per-row vector ``[batch]``
    RmsAdd          act + alpha * rms(act) * direction, rms over d_model at each position
    Patch           replace with a recorded source activation ``[batch, pos, d]``
    Ablate          zero / mean over a reference set / resample from another example
    Noise           act + std * N(0, 1), seeded per row (causal tracing)
    intervene       ``with intervene(model, {site: Add(...)}, masks=...) as run:``
    check_acted     proves an intervention changed the site where intended and nowhere else

Shapes are checked, never broadcast: a direction must be ``[d]`` for the site (``d_head`` for
a head), an alpha vector ``[batch]``, a patch source exactly the activation's ``[batch, pos, d]``.
Positions are resolved against the attention mask of the site's stack, so padding is never
touched and "last token" means the last real token of each row.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

import torch

from harness.errors import InterventionError, ShapeError
from harness.models import LoadedModel
from harness.sites import Site

__all__ = [
    "Positions",
    "Record",
    "Add",
    "RmsAdd",
    "Patch",
    "Ablate",
    "Noise",
    "Intervention",
    "Run",
    "intervene",
    "check_acted",
    "ActedReport",
]


# --------------------------------------------------------------------------- positions


@dataclass(frozen=True)
class Positions:
    """Which positions of each row an intervention touches.

    Example::

        Positions.all()                          # every real (non-pad) token
        Positions.last()                         # the last real token of each row
        Positions.spans([[(3, 9)], [(0, 2), (5, 7)]])   # per-row [start, end) token spans
    """

    kind: str = "all"
    spans: tuple[tuple[tuple[int, int], ...], ...] = ()
    mask: torch.Tensor | None = field(default=None, compare=False)

    @classmethod
    def all(cls) -> "Positions":
        return cls("all")

    @classmethod
    def last(cls) -> "Positions":
        return cls("last")

    @classmethod
    def of_spans(cls, spans: Sequence[Sequence[tuple[int, int]]]) -> "Positions":
        rows = tuple(tuple((int(a), int(b)) for a, b in row) for row in spans)
        for i, row in enumerate(rows):
            for a, b in row:
                if not 0 <= a < b:
                    raise InterventionError(
                        f"`spans` row {i} has span ({a}, {b}); a span is [start, end) with "
                        "0 <= start < end"
                    )
        return cls("spans", spans=rows)

    @classmethod
    def of_mask(cls, mask: torch.Tensor) -> "Positions":
        if mask.dim() != 2:
            raise ShapeError(f"`mask` must be [batch, pos], got shape {tuple(mask.shape)}")
        return cls("mask", mask=mask.bool())

    def resolve(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """A bool tensor ``[batch, pos]``: True where the intervention acts."""
        real = attention_mask.bool()
        if self.kind == "all":
            return real
        if self.kind == "last":
            out = torch.zeros_like(real)
            last = real.long().cumsum(1).argmax(1)  # index of the last real token
            out[torch.arange(real.shape[0]), last] = True
            return out & real
        if self.kind == "spans":
            if len(self.spans) != real.shape[0]:
                raise ShapeError(
                    f"`spans` has {len(self.spans)} rows but the batch has {real.shape[0]}; "
                    "give one list of spans per row"
                )
            out = torch.zeros_like(real)
            lengths = real.sum(1).tolist()
            for i, row in enumerate(self.spans):
                for a, b in row:
                    if b > lengths[i]:
                        raise ShapeError(
                            f"span ({a}, {b}) of row {i} runs past its {lengths[i]} real tokens; "
                            "spans index tokens of the unpadded row"
                        )
                    out[i, a:b] = True
            return out
        assert self.mask is not None
        if tuple(self.mask.shape) != tuple(real.shape):
            raise ShapeError(
                f"position `mask` has shape {tuple(self.mask.shape)} but the batch is "
                f"{tuple(real.shape)} [batch, pos]"
            )
        return self.mask.to(real.device) & real


ALL = Positions.all()


# --------------------------------------------------------------------------- interventions


def _check_direction(direction: torch.Tensor, width: int, site: Site, name: str = "`direction`") -> None:
    if direction.dim() != 1 or direction.shape[0] != width:
        raise ShapeError(
            f"{name} must have shape [{width}] for site {site}, got {tuple(direction.shape)}"
            " (directions are not broadcast)"
        )


def _alpha_column(alpha: float | torch.Tensor, act: torch.Tensor, site: Site) -> torch.Tensor:
    if isinstance(alpha, torch.Tensor) and alpha.dim() > 0:
        if alpha.dim() != 1 or alpha.shape[0] != act.shape[0]:
            raise ShapeError(
                f"per-row `alpha` must have shape [{act.shape[0]}] (one per batch row) at site "
                f"{site}, got {tuple(alpha.shape)}"
            )
        return alpha.to(act.device, act.dtype)[:, None, None]
    return torch.as_tensor(float(alpha), device=act.device, dtype=act.dtype)


@dataclass(frozen=True)
class Record:
    """Capture the activation at the site into ``run.recorded[site]`` (``[batch, pos, d]``)."""

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: "Run") -> torch.Tensor:
        run.recorded[site] = act.detach().clone()
        return act


@dataclass(frozen=True)
class Add:
    """``act + alpha * direction`` at the chosen positions; ``alpha`` may be ``[batch]``."""

    direction: torch.Tensor
    alpha: float | torch.Tensor = 1.0
    positions: Positions = ALL

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: "Run") -> torch.Tensor:
        _check_direction(self.direction, act.shape[-1], site)
        delta = _alpha_column(self.alpha, act, site) * self.direction.to(act.device, act.dtype)
        return torch.where(where[..., None], act + delta, act)


@dataclass(frozen=True)
class RmsAdd:
    """``act + alpha * rms(act) * direction``: the edit scales with the residual's RMS at each
    position (pass an RMS-normalised direction so alpha is a fraction of the residual's size)."""

    direction: torch.Tensor
    alpha: float | torch.Tensor = 1.0
    positions: Positions = ALL

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: "Run") -> torch.Tensor:
        _check_direction(self.direction, act.shape[-1], site)
        rms = act.float().pow(2).mean(-1, keepdim=True).sqrt().to(act.dtype)
        delta = _alpha_column(self.alpha, act, site) * rms * self.direction.to(act.device, act.dtype)
        return torch.where(where[..., None], act + delta, act)


@dataclass(frozen=True)
class Patch:
    """Replace the activation with ``source`` (same ``[batch, pos, d]``) at the chosen positions."""

    source: torch.Tensor
    positions: Positions = ALL

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: "Run") -> torch.Tensor:
        if tuple(self.source.shape) != tuple(act.shape):
            raise ShapeError(
                f"patch `source` has shape {tuple(self.source.shape)} but the activation at "
                f"{site} is {tuple(act.shape)} [batch, pos, d]; record the source on inputs of "
                "the same batch size and padded length (patches are never broadcast or truncated)"
            )
        return torch.where(where[..., None], self.source.to(act.device, act.dtype), act)


@dataclass(frozen=True)
class Ablate:
    """Zero, mean or resample ablation.

    Example::

        Ablate.zero()
        Ablate.mean(reference_acts, reference_mask)   # mean over real tokens of a reference set
        Ablate.resample(donor_acts)                   # activations of other examples, same shape
    """

    kind: str
    value: torch.Tensor | None = None
    positions: Positions = ALL

    @classmethod
    def zero(cls, *, positions: Positions = ALL) -> "Ablate":
        return cls("zero", None, positions)

    @classmethod
    def mean(cls, reference: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
             positions: Positions = ALL) -> "Ablate":
        if reference.dim() != 3:
            raise ShapeError(f"`reference` must be [n, pos, d], got {tuple(reference.shape)}")
        if attention_mask is None:
            mean = reference.reshape(-1, reference.shape[-1]).mean(0)
        else:
            if tuple(attention_mask.shape) != tuple(reference.shape[:2]):
                raise ShapeError(
                    f"`attention_mask` has shape {tuple(attention_mask.shape)} but `reference` "
                    f"is {tuple(reference.shape)}; give the mask of the reference batch"
                )
            m = attention_mask.to(reference.dtype)[..., None]
            mean = (reference * m).sum((0, 1)) / m.sum()
        return cls("mean", mean, positions)

    @classmethod
    def resample(cls, donor: torch.Tensor, *, positions: Positions = ALL) -> "Ablate":
        if donor.dim() != 3:
            raise ShapeError(f"`donor` must be [batch, pos, d], got {tuple(donor.shape)}")
        return cls("resample", donor, positions)

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: "Run") -> torch.Tensor:
        if self.kind == "zero":
            value = torch.zeros_like(act)
        elif self.kind == "mean":
            assert self.value is not None
            _check_direction(self.value, act.shape[-1], site, "the mean of `Ablate.mean`'s reference")
            value = self.value.to(act.device, act.dtype).expand_as(act)
        elif self.kind == "resample":
            return Patch(self.value, self.positions).apply(act, where, site, run)  # type: ignore[arg-type]
        else:
            raise InterventionError(f"`kind` must be 'zero', 'mean' or 'resample', got {self.kind!r}")
        return torch.where(where[..., None], value, act)


@dataclass(frozen=True)
class Noise:
    """``act + std * N(0, 1)``, the noise of row i drawn from a generator seeded ``seed + i``."""

    std: float
    seed: int
    positions: Positions = ALL

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: "Run") -> torch.Tensor:
        rows = []
        for i in range(act.shape[0]):
            g = torch.Generator(device="cpu").manual_seed(int(self.seed) + i)
            rows.append(torch.randn(act.shape[1:], generator=g, dtype=torch.float32))
        noise = torch.stack(rows).to(act.device, act.dtype) * float(self.std)
        return torch.where(where[..., None], act + noise, act)


Intervention = Union[Record, Add, RmsAdd, Patch, Ablate, Noise]
_KINDS = (Record, Add, RmsAdd, Patch, Ablate, Noise)


# --------------------------------------------------------------------------- the context manager


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
            if not isinstance(item, _KINDS):
                raise InterventionError(
                    f"intervention at {site} must be one of "
                    f"{[k.__name__ for k in _KINDS]}, got {type(item).__name__}"
                )
        out.append((site, chain))
    return out


def _make_transform(model: LoadedModel, site: Site, chain: tuple[Intervention, ...],
                    masks: Mapping[str, torch.Tensor], run: Run) -> Callable[[torch.Tensor], torch.Tensor]:
    hook = model.hook_for(site)
    width = model.width(site)

    def transform(full: torch.Tensor) -> torch.Tensor:
        run.calls[site] = run.calls.get(site, 0) + 1
        if site.stack not in masks:
            raise InterventionError(
                f"no attention mask for stack {site.stack!r} (site {site}); pass "
                f"masks={{'{site.stack}': attention_mask}} to intervene()"
            )
        mask = masks[site.stack]
        if tuple(full.shape[:2]) != tuple(mask.shape):
            raise ShapeError(
                f"activation at {site} is {tuple(full.shape)} but the {site.stack} attention "
                f"mask is {tuple(mask.shape)} [batch, pos]; pass the mask of this forward's batch"
            )
        if hook.head is not None:
            cols = slice(hook.head * width, (hook.head + 1) * width)
            act = full[..., cols]
        else:
            act = full
        if act.shape[-1] != width:
            raise ShapeError(f"activation at {site} has width {act.shape[-1]}, expected {width}")
        for item in chain:
            where = getattr(item, "positions", ALL).resolve(mask).to(act.device)
            act = item.apply(act, where, site, run)
        if hook.head is None:
            return act
        out = full.clone()
        out[..., cols] = act
        return out

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

    With ``require_fired`` (the default), a block that ends normally while some site's hook
    never ran raises `InterventionError`: an intervention on a module the forward never reached
    (a decoder site while only the encoder ran, say) would otherwise change nothing, silently.
    """
    plan = _normalise(model, interventions)  # raises before anything is installed
    run = Run()
    handles: list[Any] = []
    try:
        for site, chain in plan:
            hook = model.hook_for(site)
            transform = _make_transform(model, site, chain, masks, run)
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


# --------------------------------------------------------------------------- proof of action


@dataclass(frozen=True)
class ActedReport:
    """Where an intervention changed its site's activation, against where it was meant to.

    ``intended`` and ``changed`` are ``[batch, pos]`` bool tensors; ``leaked`` counts positions
    changed outside the intent (or, for a head, any change in another head's columns), ``missed``
    intended positions left unchanged.
    """

    site: Site
    intended: torch.Tensor
    changed: torch.Tensor
    missed: int
    leaked: int
    max_change_outside: float

    @property
    def held(self) -> bool:
        return self.missed == 0 and self.leaked == 0

    def __str__(self) -> str:
        return (f"{self.site}: changed {int(self.changed.sum())} of {int(self.intended.sum())} intended "
                f"positions, missed {self.missed}, leaked {self.leaked} "
                f"(max change outside {self.max_change_outside:.3g})")


def check_acted(model: LoadedModel, site: Site | str, intervention: Intervention, *,
                forward: Callable[[], Any], masks: Mapping[str, torch.Tensor],
                atol: float = 0.0) -> ActedReport:
    """Run `forward` twice, plain and with `intervention`, and compare the site's activation.

    Example::

        rep = check_acted(m, site, Add(d, alpha=1.0, positions=Positions.last()),
                          forward=lambda: m.module(**batch), masks={"blocks": mask})
        assert rep.held, str(rep)

    For a head site the whole input of the output projection is compared, so a change that
    leaks into another head's columns counts as leaked.
    """
    site = model.site(site)
    hook = model.hook_for(site)
    with torch.no_grad():
        with _capture(hook) as before:
            forward()
        with intervene(model, {site: intervention}, masks=masks), _capture(hook) as after:
            forward()
    diff = (after[0] - before[0]).abs()
    real = masks[site.stack].bool().to(diff.device)
    intended = getattr(intervention, "positions", ALL).resolve(real)
    alpha = getattr(intervention, "alpha", None)
    if isinstance(alpha, torch.Tensor) and alpha.dim() == 1:
        intended = intended & (alpha != 0).to(intended.device)[:, None]
    inside_cols = torch.zeros(diff.shape[-1], dtype=torch.bool, device=diff.device)
    if hook.head is not None:
        w = model.width(site)
        inside_cols[hook.head * w:(hook.head + 1) * w] = True
    else:
        inside_cols[:] = True
    changed = (diff[..., inside_cols] > atol).any(-1)
    outside = diff[..., inside_cols].amax(-1).masked_fill(intended, 0)
    leaked = int((changed & ~intended).sum())
    if (~inside_cols).any():
        other = diff[..., ~inside_cols]
        leaked += int((other > atol).any(-1).sum())
        outside = torch.maximum(outside, other.amax(-1))
    return ActedReport(site=site, intended=intended, changed=changed,
                       missed=int((intended & ~changed).sum()), leaked=leaked,
                       max_change_outside=float(outside.amax()))


@contextlib.contextmanager
def _capture(hook: Any) -> Iterator[list[torch.Tensor]]:
    """Capture the whole tensor a `Hook` sees (after any hooks registered before this one)."""
    store: list[torch.Tensor] = []

    def keep(x: torch.Tensor) -> torch.Tensor:
        store.append(x.detach().clone())
        return x

    if hook.kind == "output":
        handle = hook.module.register_forward_hook(_output_hook(keep))
    else:
        handle = hook.module.register_forward_pre_hook(_input_hook(keep), with_kwargs=True)
    try:
        yield store
    finally:
        handle.remove()
