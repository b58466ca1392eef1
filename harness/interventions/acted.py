"""Proof of action: did an intervention change its site where intended, and nowhere else?

    check_acted     runs a forward plain and intervened, and compares the site's activation
    ActedReport     intended vs changed positions, missed and leaked counts

For a site that is some columns of a tensor (a head, a set of neurons, the queries of a fused
q/k/v projection) the whole tensor is compared, so a change that leaks into other columns
counts as leaked.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import torch

from harness.interventions.hooks import _input_hook, _output_hook, intervene
from harness.interventions.intervention import Intervention
from harness.models.loaded import LoadedModel
from harness.models.sites import Site

__all__ = ["check_acted", "ActedReport"]


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

    For a site that is some columns of a tensor (a head, a neuron set, the queries of a fused
    q/k/v projection) the whole tensor is compared, so a change that leaks into other columns
    counts as leaked; a module run on flattened ``[batch * pos, d]`` rows is compared per
    position. Where the intervention is meant to act
    is its ``intended(real)`` (`Intervention`): its positions, less the rows of an `Add` or
    `RmsAdd` whose per-row alpha is 0.
    """
    site = model.site(site)
    hook = model.hook_for(site)
    with torch.no_grad():
        with _capture(hook) as before:
            forward()
        with intervene(model, {site: intervention}, masks=masks), _capture(hook) as after:
            forward()
    real = masks[site.stack].bool()
    rows = tuple(real.shape)
    diff = (hook.whole(after[0], rows) - hook.whole(before[0], rows)).abs()   # [batch, pos, D]
    real = real.to(diff.device)
    intended = intervention.intended(real)
    inside_cols = hook.column_mask(diff.shape[-1], device=diff.device)
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
