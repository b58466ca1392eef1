"""The deterministic edits an intervention makes at a site: record, add, patch, interchange, ablate.

    Record          capture the activation (detached) into ``run.recorded[site]``
    Add             act + alpha * direction; alpha a float or a per-row vector ``[batch]``
    RmsAdd          act + alpha * rms(act) * direction, rms over d_model at each position
    Patch           replace with a recorded source activation ``[batch, pos, d]``
    Interchange     replace only the activation's part in the span of a basis ``[d, k]`` with the
                    source's: ``act + ((source - act) @ basis) @ basis.T`` (DAS's interchange)
    Ablate          zero / mean over a reference set / resample from another example

Shapes are checked, never broadcast: a direction must be ``[d]`` for the site (``d_head`` for
a head), an alpha vector ``[batch]``, a patch or interchange source exactly the activation's
``[batch, pos, d]``, an interchange basis ``[d, k]``.
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

__all__ = ["Record", "Add", "RmsAdd", "Patch", "Interchange", "Ablate"]


def _check_source(source: torch.Tensor, act: torch.Tensor, site: Site, what: str, plural: str) -> None:
    if tuple(source.shape) != tuple(act.shape):
        raise ShapeError(
            f"{what} `source` has shape {tuple(source.shape)} but the activation at "
            f"{site} is {tuple(act.shape)} [batch, pos, d]; record the source on inputs of "
            f"the same batch size and padded length ({plural} are never broadcast or truncated)"
        )


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
        _check_source(self.source, act, site, "patch", "patches")
        return torch.where(where[..., None], self.source.to(act.device, act.dtype), act)


@dataclass(frozen=True)
class Interchange:
    """An interchange intervention along a subspace (distributed alignment search, DAS):
    ``act + ((source - act) @ basis) @ basis.T`` at the chosen positions.

    Example::

        with intervene(m, {"blocks.3.resid_pre": Record()}, masks=...) as run:   # the source run
            m.module(input_ids=source_ids, attention_mask=mask)
        src = run.recorded[m.site("blocks.3.resid_pre")]
        with intervene(m, {"blocks.3.resid_pre": Interchange(src, U, Positions.last())}, masks=...):
            m.module(input_ids=base_ids, attention_mask=mask)                     # the base run

    ``source``: ``[batch, pos, d]``, the source run's activation at the site, recorded on inputs
    of the same batch size and padded length (as for `Patch`). ``basis``: ``[d, k]`` (``d`` the
    site's width: ``d_head`` for a head), ``k >= 0``, used as given: it is never
    orthonormalised here (`harness.measures.das` keeps its own orthonormal). With orthonormal
    columns ``U`` the edit sets the activation's projection onto ``span(U)`` to the source's and
    keeps the rest; the identity ``[d, d]`` is `Patch`, and ``k = 0`` or a zero basis changes
    nothing, bit for bit (unless matmuls round their inputs, as under TF32). The edit is
    differentiable with respect to ``basis`` (and ``source``): nothing is detached or written in
    place. It is computed in float32 at least and cast back to the activation's dtype.

    Raises `ShapeError` for a ``source`` of another shape than the activation, or a ``basis``
    that is not ``[d, k]`` for the site.

    Sources: Geiger, Wu, Icard, Potts, Goodman 2023, "Finding Alignments Between Interpretable
    Causal Variables and Distributed Neural Representations"; Wu et al. 2023, "Interpretability
    at Scale: Identifying Causal Mechanisms in Alpaca" (Boundless DAS); pyvene's
    ``RotatedSpaceIntervention`` / ``LowRankRotatedSpaceIntervention``.
    """

    source: torch.Tensor
    basis: torch.Tensor
    positions: Positions = ALL

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: "Run") -> torch.Tensor:
        _check_source(self.source, act, site, "interchange", "interchanges")
        if self.basis.dim() != 2 or self.basis.shape[0] != act.shape[-1]:
            raise ShapeError(
                f"interchange `basis` must have shape [{act.shape[-1]}, k] (the width of {site} by "
                f"the subspace's dimension) for site {site}, got {tuple(self.basis.shape)}; give "
                "the basis vectors as columns (transpose a [k, d] basis)"
            )
        dtype = torch.promote_types(act.dtype, torch.float32)
        basis = self.basis.to(act.device, dtype)
        base, source = act.to(dtype), self.source.to(act.device, dtype)
        # act + ((source - act) @ U) @ U.T, written so that U = identity gives the source and
        # U = 0 the activation bit for bit (``act - act`` is exactly 0)
        edited = (base - (base @ basis) @ basis.T + (source @ basis) @ basis.T).to(act.dtype)
        return torch.where(where[..., None], edited, act)


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
