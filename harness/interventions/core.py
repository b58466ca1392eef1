"""Interventions at sites, and the one context manager that installs and always removes them.

    Positions       which positions an intervention touches: all, token spans, last token, a mask
    Record          capture the activation (detached) into ``run.recorded[site]``
    Add             act + alpha * direction; alpha a float or a per-row vector ``[batch]``
    RmsAdd          act + alpha * rms(act) * direction, rms over d_model at each position
    Patch           replace with a recorded source activation ``[batch, pos, d]``
    Ablate          zero / mean over a reference set / resample from another example
    Noise           act + std * N(0, 1), drawn from (seed, the row's real tokens, position)
    intervene       ``with intervene(model, {site: Add(...)}, masks=...) as run:``
    check_acted     proves an intervention changed the site where intended and nowhere else

Shapes are checked, never broadcast: a direction must be ``[d]`` for the site (``d_head`` for
a head), an alpha vector ``[batch]``, a patch source exactly the activation's ``[batch, pos, d]``.
Positions are resolved against the attention mask of the site's stack, so padding is never
touched and "last token" means the last real token of each row.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

import numpy as np
import torch

from harness.errors import InterventionError, ShapeError
from harness.models.load import LoadedModel
from harness.models.sites import Site

__all__ = [
    "Positions",
    "Record",
    "Add",
    "RmsAdd",
    "Patch",
    "Ablate",
    "Noise",
    "noise_draw",
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


def _check_seed(seed: Any, owner: str) -> int:
    """`seed` as an int, or an `InterventionError` naming it (bools and floats are refused)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InterventionError(
            f"`seed` of {owner} must be an integer, got {seed!r} ({type(seed).__name__}); "
            "pass a whole number, e.g. seed=0"
        )
    return int(seed)


def _row_key(seed: int, tokens: Sequence[int]) -> tuple[int, int]:
    """128 bits of blake2b over (seed, the row's real token ids): the row's stream key."""
    h = hashlib.blake2b(digest_size=16, person=b"harness.Noise")
    h.update(str(seed).encode() + b"|")
    h.update(np.asarray(tokens, dtype=np.int64).tobytes())
    digest = h.digest()
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little")


def noise_draw(seed: int, tokens: Sequence[int], position: int, width: int) -> torch.Tensor:
    """The ``[width]`` float32 N(0, 1) draw `Noise` adds (times ``std``) at one real position.

    A function of ``(seed, tokens, position, width)`` only: ``tokens`` are the row's real token
    ids (padding excluded, in order) and ``position`` counts among them (0 is the first real
    token, whatever the padding side). Bit for bit the same within one numpy version.
    """
    hi, lo = _row_key(int(seed), tokens)
    values = np.random.default_rng([hi, lo, int(position)]).standard_normal(int(width))
    return torch.from_numpy(values.astype(np.float32))


@dataclass(frozen=True)
class Noise:
    """``act + std * N(0, 1)`` at the chosen real positions (causal tracing); padding untouched.

    What a row's noise depends on: the ``seed``, the row's real token ids (the ids of the
    forward at the positions the stack's attention mask marks real, in order), the position
    counted among those real tokens (0 = the first real token), and the site's width ``d``.
    Nothing else: not the row's index in the batch, its neighbours or their lengths, the padded
    width, the padding side, the chunk it ran in, the selected `positions` (a position's draw
    is the same whether or not others are selected), the site, the device or dtype (drawn in
    float32 on the CPU, then cast). So an example gets the same noise in any batch; two rows
    with the same real tokens get the same noise; two sites of one width with one seed get the
    same noise (give them different seeds for independent noise). The draw at a position is
    `noise_draw` ``(seed, tokens, position, d)``.

    The token ids come from the forward itself: `intervene` reads the ``input_ids`` the stack
    (e.g. ``transformer``, ``encoder``) is called with. A forward that does not call the stack
    with ``input_ids`` (``inputs_embeds``, or a replay of cached blocks as in
    `harness.interventions.prefix` / `harness.measures.patching`) must pass ``tokens``: each row's real token ids, one
    list per batch row; the count must equal the row's real positions in the mask the hook
    sees, so a replay that hands hooks only positions ``start..`` of each row is refused rather
    than given shifted noise. When both are available they must agree.
    """

    std: float
    seed: int
    positions: Positions = ALL
    tokens: tuple[tuple[int, ...], ...] | None = None

    def __post_init__(self) -> None:
        std = self.std
        if isinstance(std, bool) or not isinstance(std, numbers.Real) or not math.isfinite(float(std)) \
                or float(std) < 0:
            raise InterventionError(
                f"`std` of Noise must be a finite number >= 0, got {std!r}; pass the standard "
                "deviation of the noise, e.g. std=0.1 (use a different seed, not a negative std)"
            )
        object.__setattr__(self, "seed", _check_seed(self.seed, "Noise"))
        if not isinstance(self.positions, Positions):
            raise InterventionError(
                f"`positions` of Noise must be a Positions (e.g. Positions.all()), got "
                f"{type(self.positions).__name__}"
            )
        if self.tokens is not None:
            object.__setattr__(self, "tokens", _token_rows(self.tokens))

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: "Run", *,
              real: torch.Tensor | None = None, ids: torch.Tensor | None = None) -> torch.Tensor:
        if real is None:
            raise InterventionError(
                f"Noise at {site} draws each row's noise from its real token ids and needs the "
                "attention mask and input ids of the forward; install it with intervene(...) "
                "instead of calling apply() directly"
            )
        real = real.bool().cpu()
        rows = self._rows(real, ids, site)
        on = (where.cpu() & real)  # never on padding, whatever `positions` says
        rank = real.long().cumsum(1) - 1  # position counted among the row's real tokens
        width = act.shape[-1]
        noise = torch.zeros(act.shape, dtype=torch.float32)
        for b, p in on.nonzero().tolist():
            noise[b, p] = noise_draw(self.seed, rows[b], int(rank[b, p]), width)
        noise = noise.to(act.device, act.dtype) * float(self.std)
        return torch.where(on.to(act.device)[..., None], act + noise, act)

    def _rows(self, real: torch.Tensor, ids: torch.Tensor | None, site: Site) -> list[tuple[int, ...]]:
        """Each row's real token ids, from `tokens` or the forward's ``input_ids``."""
        seen = None
        if ids is not None:
            if tuple(ids.shape) != tuple(real.shape):
                raise ShapeError(
                    f"the input ids of the {site.stack} stack are {tuple(ids.shape)} but the "
                    f"activation at {site} is over {tuple(real.shape)} [batch, pos]; Noise keys "
                    "each row by its real tokens, so the mask must cover the ids of this forward"
                )
            ids = ids.cpu()
            seen = [tuple(ids[b][real[b]].tolist()) for b in range(real.shape[0])]
        if self.tokens is None:
            if seen is None:
                raise InterventionError(
                    f"Noise at {site} keys each row's noise by its real token ids, but the "
                    f"{site.stack} stack was not called with `input_ids` in this forward (a replay "
                    "of cached blocks, or `inputs_embeds`); pass tokens=[ids of row 0, ids of row "
                    "1, ...] (each row's real token ids, padding excluded) to Noise"
                )
            return seen
        if len(self.tokens) != real.shape[0]:
            raise ShapeError(
                f"`tokens` of Noise has {len(self.tokens)} rows but the batch at {site} has "
                f"{real.shape[0]}; give one list of real token ids per batch row"
            )
        counts = real.sum(1).tolist()
        for b, row in enumerate(self.tokens):
            if len(row) != counts[b]:
                raise ShapeError(
                    f"`tokens` row {b} of Noise has {len(row)} ids but the mask at {site} marks "
                    f"{counts[b]} real positions; give each row's real token ids (padding "
                    "excluded). A replay that hands hooks only positions start.. of each row "
                    "cannot draw Noise: its positions would be counted from `start`"
                )
            if seen is not None and seen[b] != row:
                raise InterventionError(
                    f"`tokens` row {b} of Noise is {list(row)[:8]}... but the forward's input ids "
                    f"at its real positions are {list(seen[b])[:8]}...; pass the tokens of this "
                    "batch, in batch order (or drop `tokens`: they are read from the forward)"
                )
        return list(self.tokens)


def _token_rows(tokens: Any) -> tuple[tuple[int, ...], ...]:
    if isinstance(tokens, (torch.Tensor, np.ndarray)):
        tokens = tokens.tolist()
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
        raise InterventionError(
            f"`tokens` of Noise must be one list of token ids per batch row, got "
            f"{type(tokens).__name__}; e.g. tokens=model.tokenize(texts)"
        )
    rows = []
    for b, row in enumerate(tokens):
        if isinstance(row, (torch.Tensor, np.ndarray)):
            row = row.tolist()
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or not all(
                isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in row):
            raise InterventionError(
                f"`tokens` row {b} of Noise must be a list of integer token ids, got {row!r}; "
                "tokenize the texts first, e.g. tokens=model.tokenize(texts)"
            )
        rows.append(tuple(int(t) for t in row))
    return tuple(rows)


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
                    masks: Mapping[str, torch.Tensor], run: Run,
                    ids_seen: Mapping[str, torch.Tensor | None] | None = None
                    ) -> Callable[[torch.Tensor], torch.Tensor]:
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
            if isinstance(item, Noise):  # keyed by each row's real tokens, not by its row
                ids = None if ids_seen is None else ids_seen.get(site.stack)
                act = item.apply(act, where, site, run, real=mask, ids=ids)
            else:
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


def _stack_module(model: LoadedModel, stack: str) -> torch.nn.Module:
    """The module that runs one stack (the parent of its blocks: ``transformer``, ``encoder``)."""
    parent = model.layout.stack(stack).blocks.rpartition(".")[0]
    return model.module.get_submodule(parent) if parent else model.module


def _watch_input_ids(model: LoadedModel, stack: str, seen: dict[str, torch.Tensor | None]) -> list[Any]:
    """Hooks that hold the ``input_ids`` of `stack` while that stack runs (None otherwise), so
    `Noise` keys each row by its real tokens; returns their handles."""
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

    With a `Noise` in the plan, two more hooks on the module that runs its stack (the parent
    of the blocks: ``transformer``, ``encoder``, ``model``) hold that stack's ``input_ids`` while
    it runs, so the noise is keyed by each row's real tokens; they are removed likewise.

    With ``require_fired`` (the default), a block that ends normally while some site's hook
    never ran raises `InterventionError`: an intervention on a module the forward never reached
    (a decoder site while only the encoder ran, say) would otherwise change nothing, silently.
    """
    plan = _normalise(model, interventions)  # raises before anything is installed
    run = Run()
    handles: list[Any] = []
    ids_seen: dict[str, torch.Tensor | None] = {}
    try:
        for stack in sorted({site.stack for site, chain in plan if any(isinstance(i, Noise) for i in chain)}):
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
