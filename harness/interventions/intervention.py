"""The intervention protocol: the one abstract class every kind of edit implements.

    Intervention    the base class: ``apply(act, where, site, run, context)`` returns the edited
                    activation; ``positions`` (where it acts), ``needs_input_ids`` (whether its
                    hook must see the stack's input ids), ``intended(real)`` (where it is meant
                    to change the activation, for `check_acted`)
    Context         what a hook knows of the forward besides the activation: the real-token mask
                    of the site's stack and, when some intervention asks for them, its input ids
    known_kinds     the names of the library's kinds, for error messages

`intervene` (`harness.interventions.hooks`) treats every kind alike: it resolves the kind's
``positions`` against the stack's attention mask and calls ``apply`` with a `Context`. A new
kind is a subclass written anywhere (no list of kinds to extend); it then works wherever an
intervention is accepted (`intervene`, the scores' ``interventions=``, `check_acted`). For
example, scaling the activation::

    @dataclass(frozen=True)
    class Scale(Intervention):
        factor: float
        positions: Positions = ALL

        def apply(self, act, where, site, run, context=None):
            return torch.where(where[..., None], act * self.factor, act)

    with intervene(m, {"blocks.3.resid_post": Scale(0.5)}, masks={"blocks": mask}):
        m.module(input_ids=ids, attention_mask=mask)
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch

from harness.interventions.positions import ALL, Positions

if TYPE_CHECKING:
    from harness.interventions.hooks import Run
    from harness.models.sites import Site

__all__ = ["Intervention", "Context", "known_kinds", "moved"]


@dataclass(frozen=True)
class Context:
    """What the hook of a site knows of the forward, handed to every ``apply``.

    ``real``: bool ``[batch, pos]``, True at the real (non-padding) tokens of the site's stack,
    over exactly the positions of the activation the hook sees (a replay of positions
    ``start..`` hands ``mask[:, start:]``). ``input_ids``: ``[batch, pos]`` token ids the stack
    was called with in this forward, present only when an intervention at a site of that stack
    has ``needs_input_ids = True`` and the stack was called with ``input_ids`` (None otherwise:
    ``inputs_embeds``, or a replay of cached blocks).
    """

    real: torch.Tensor
    input_ids: torch.Tensor | None = None


class Intervention(abc.ABC):
    """One kind of edit (or read) at a site; subclass it to write a new kind.

    A subclass implements ``apply`` and usually is a frozen dataclass with a ``positions``
    field (`Positions`, default all real tokens). Class attributes it may set:

    ``needs_input_ids`` (default False): True makes `intervene` watch the stack that holds the
    site and hand its ``input_ids`` to ``apply`` in ``context.input_ids`` (as `Noise` keys its
    draws by each row's real tokens).

    ``apply(act, where, site, run, context)``:

    - ``act``: the activation at the site, ``[batch, pos, width]`` (a head site: that head's
      ``d_head`` columns only);
    - ``where``: bool ``[batch, pos]``, the positions to edit (``positions`` resolved against
      the stack's attention mask: never padding);
    - ``site``: the `Site`; ``run``: the `Run` of the ``intervene`` block (``run.recorded``
      holds what `Record` captured), None when called directly;
    - ``context``: a `Context` (None when called directly, outside ``intervene``).

    It returns the edited activation, of the same shape (never broadcast or truncated); an
    intervention that only reads returns ``act`` itself.
    """

    positions: Positions = ALL
    needs_input_ids: ClassVar[bool] = False

    @abc.abstractmethod
    def apply(self, act: torch.Tensor, where: torch.Tensor, site: "Site", run: "Run | None",
              context: Context | None = None) -> torch.Tensor:
        """The activation after this intervention, ``[batch, pos, width]`` like `act`."""

    def intended(self, real: torch.Tensor) -> torch.Tensor:
        """Bool ``[batch, pos]``: where this intervention is meant to change the activation, for
        the real-token mask `real`; `check_acted` compares it with where the site changed.
        By default the resolved ``positions``."""
        return self.positions.resolve(real)


def moved(owner: object, name: str, tensor: torch.Tensor, device: torch.device,
          dtype: torch.dtype | None = None) -> torch.Tensor:
    """`tensor` (a field of `owner`: a direction, a patch source, a basis) on `device` and in
    `dtype` (None: its own), moved once and kept on `owner` for the next call.

    On a model split across devices each hook sees its activation on its block's device; an
    edit's constants are moved there the first time and reused on every later forward (a
    sweep, a generation). A tensor already there is returned as is (no copy). A tensor that
    requires grad is moved on every call, so gradients reach it (DAS trains its basis through
    `Interchange`); a tensor changed in place since it was moved (its version counter) is moved
    again. One copy is kept per (name, device, dtype)."""
    dtype = tensor.dtype if dtype is None else dtype
    if tensor.device == device and tensor.dtype == dtype:
        return tensor
    if tensor.requires_grad:
        return tensor.to(device, dtype)
    cache = owner.__dict__.get("_moved")
    if cache is None:
        cache = {}
        object.__setattr__(owner, "_moved", cache)  # frozen dataclasses too; not a field
    key = (name, device, dtype)
    hit = cache.get(key)
    if hit is not None and hit[0] is tensor and hit[1] == tensor._version:
        return hit[2]
    out = tensor.to(device, dtype)
    cache[key] = (tensor, tensor._version, out)
    return out


def known_kinds() -> list[str]:
    """The names of the library's public concrete intervention kinds (``Record``, ``Add``, ...),
    in definition order; a kind defined outside ``harness``, or private to it (the patching
    engine's ``_PatchColumns``, whose module may or may not be imported yet), is accepted but not
    listed, so the list does not depend on what was imported before."""
    out: list[str] = []
    stack = list(Intervention.__subclasses__())
    while stack:
        kind = stack.pop(0)
        if kind.__module__.startswith("harness.") and not kind.__name__.startswith("_") \
                and not getattr(kind, "__abstractmethods__", None):
            out.append(kind.__name__)
        stack[:0] = kind.__subclasses__()
    return out
