"""The deterministic edits an intervention makes at a site: record, add, patch, ablate.

    Record          capture the activation (detached) into ``run.recorded[site]``
    Add             act + alpha * direction; alpha a float or a per-row vector ``[batch]``
    RmsAdd          act + alpha * rms(act) * direction, rms over d_model at each position
    Patch           replace with a recorded source activation ``[batch, pos, d]``
    Ablate          zero / mean over a reference set / resample from another example

Shapes are checked, never broadcast: a direction must be ``[d]`` for the site (``d_head`` for
a head), an alpha vector ``[batch]``, a patch source exactly the activation's ``[batch, pos, d]``.
Each kind's ``apply(act, where, site, run)`` returns the edited activation; `intervene`
(`harness.interventions.hooks`) calls it from the site's hook. `Noise` lives in
`harness.interventions.noise`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from harness.errors import InterventionError, ShapeError
from harness.interventions.positions import ALL, Positions
from harness.models.sites import Site

if TYPE_CHECKING:
    from harness.interventions.hooks import Run

__all__ = ["Record", "Add", "RmsAdd", "Patch", "Ablate"]


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
