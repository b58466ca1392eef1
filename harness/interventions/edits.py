"""The deterministic edits an intervention makes at a site: record, add, patch, interchange, ablate.

    Record          capture the activation (detached) into ``run.recorded[site]``
    Add             act + alpha * direction; alpha a float or a per-row vector ``[batch]``
    RmsAdd          act + alpha * rms(act) * direction, rms over d_model at each position
    Patch           replace with a recorded source activation ``[batch, pos, d]``
    Interchange     replace only the activation's part in the span of a basis ``[d, k]`` with the
                    source's: ``act + ((source - act) @ basis) @ basis.T`` (DAS's interchange)
    Ablate          zero / mean over a reference set / resample from another example
    ProjectOut      remove the activation's part in the span of a basis ``[k, d]`` (rows):
                    ``act - (act @ Q) @ Q.T``, Q an orthonormal basis of that span

Shapes are checked, never broadcast: a direction must be ``[d]`` for the site (``d_head`` for
a head), an alpha vector ``[batch]``, a patch or interchange source exactly the activation's
``[batch, pos, d]``, an interchange basis ``[d, k]`` (columns), a projection basis ``[k, d]``
(rows).

Wherever an edit takes a vector (`Add` and `RmsAdd`'s ``direction``, the ``value`` of a mean
`Ablate`, a one-column `Interchange` ``basis``, a one-row `ProjectOut` ``basis``) it also takes a `Direction`
(`harness.measures.directions`): its ``vector`` is used, and its ``site`` must be the site the
edit is installed at (an `InterventionError` naming both otherwise; pass ``direction.vector`` to
use a direction elsewhere on purpose). A Direction whose site is empty is not checked. Any
other argument that is not a tensor (a list, a numpy array, a float) is an `InterventionError`
naming the argument and the value.

Each kind is an `Intervention` (`harness.interventions.intervention`, the protocol):
``apply(act, where, site, run, context)`` returns the edited activation; `intervene`
(`harness.interventions.hooks`) calls it from the site's hook. These kinds need no `Context`
(``apply`` may be called without one, as below). `Noise` lives in
`harness.interventions.noise`.

>>> import torch
>>> from harness.interventions import Add, Positions
>>> from harness.models.sites import Site
>>> act = torch.zeros(1, 3, 2)                          # [batch, pos, d]
>>> where = Positions.last().resolve(torch.ones(1, 3))  # only the last real token
>>> Add(torch.tensor([1.0, -1.0]), alpha=2.0).apply(act, where, Site.parse("blocks.1.resid_post"), None)
tensor([[[ 0.,  0.],
         [ 0.,  0.],
         [ 2., -2.]]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from harness.errors import InterventionError, ShapeError, SiteError
from harness.interventions.intervention import Context, Intervention, moved
from harness.interventions.positions import ALL, Positions
from harness.models.sites import Site, parse_site

if TYPE_CHECKING:
    from harness.interventions.hooks import Run
    from harness.measures.directions import Direction

__all__ = ["Record", "Add", "RmsAdd", "Patch", "Interchange", "Ablate", "ProjectOut"]


def _is_direction(value: object) -> bool:
    if isinstance(value, torch.Tensor):
        return False
    from harness.measures.directions import Direction  # lazily: that module imports this package

    return isinstance(value, Direction)


def _describe(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def _check_vector_arg(value: object, name: str, owner: str, shape: str) -> None:
    """`value` must be a tensor or a `Direction`; raise naming `name` of `owner` otherwise."""
    if isinstance(value, torch.Tensor) or _is_direction(value):
        return
    raise InterventionError(
        f"`{name}` of {owner} must be a torch.Tensor {shape} or a Direction, got {_describe(value)}; "
        f"pass torch.as_tensor(...) of the values, or a Direction (harness.measures.directions)"
    )


def _check_tensor_arg(value: object, name: str, owner: str, shape: str, what: str) -> None:
    """`value` must be a tensor (an activation, not a direction); raise naming `name` otherwise."""
    if isinstance(value, torch.Tensor):
        return
    hint = (f"; a Direction is a vector to add: use Add(direction) or RmsAdd(direction)"
            if _is_direction(value) else f"; pass {what}")
    raise InterventionError(
        f"`{name}` of {owner} must be a torch.Tensor {shape}, got {_describe(value)}{hint}"
    )


def _vector_at(value: torch.Tensor | Any, site: Site, name: str, owner: str) -> torch.Tensor:
    """The tensor of a vector argument installed at `site`: a tensor as is, a `Direction`'s
    ``vector`` once its ``site`` is checked against `site` (a Direction with an empty site is
    not checked)."""
    if isinstance(value, torch.Tensor):
        return value
    own = str(value.site).strip()
    if own:
        try:
            same = parse_site(own) == site
        except SiteError:
            same = own == str(site)
        if not same:
            raise InterventionError(
                f"`{name}` of {owner} is a Direction at {own} ({value.kind}) but the edit is installed "
                f"at {site}; install it at {own}, or pass `{name}.vector` to use this direction at "
                f"{site} on purpose"
            )
    return value.vector


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


def _alpha_column(alpha: float | torch.Tensor, act: torch.Tensor, site: Site, owner: object) -> torch.Tensor:
    if isinstance(alpha, torch.Tensor) and alpha.dim() > 0:
        if alpha.dim() != 1 or alpha.shape[0] != act.shape[0]:
            raise ShapeError(
                f"per-row `alpha` must have shape [{act.shape[0]}] (one per batch row) at site "
                f"{site}, got {tuple(alpha.shape)}"
            )
        return moved(owner, "alpha", alpha, act.device, act.dtype)[:, None, None]
    return torch.as_tensor(float(alpha), device=act.device, dtype=act.dtype)


def _rows_with_alpha(intended: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """`intended` without the rows whose per-row ``alpha`` is 0 (adding 0 changes nothing)."""
    if isinstance(alpha, torch.Tensor) and alpha.dim() == 1:
        return intended & (alpha != 0).to(intended.device)[:, None]
    return intended


@dataclass(frozen=True)
class Record(Intervention):
    """Capture the activation at the site into ``run.recorded[site]`` (``[batch, pos, d]``)."""

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: "Run | None",
              context: Context | None = None) -> torch.Tensor:
        run.recorded[site] = act.detach().clone()
        return act


@dataclass(frozen=True)
class Add(Intervention):
    """``act + alpha * direction`` at the chosen positions; ``alpha`` may be ``[batch]``.

    ``direction``: a ``[d]`` tensor or a `Direction` (its vector; its site must be the site the
    edit is installed at).

    >>> import torch
    >>> from harness.models.sites import Site
    >>> act, where = torch.zeros(2, 1, 2), torch.ones(2, 1, dtype=torch.bool)
    >>> Add(torch.tensor([1.0, 0.0]), alpha=torch.tensor([1.0, -3.0])).apply(
    ...     act, where, Site.parse("blocks.1.resid_post"), None)[:, 0]    # one alpha per row
    tensor([[ 1.,  0.],
            [-3.,  0.]])
    """

    direction: "torch.Tensor | Direction"
    alpha: float | torch.Tensor = 1.0
    positions: Positions = ALL

    def __post_init__(self) -> None:
        _check_vector_arg(self.direction, "direction", "Add", "[d]")

    def intended(self, real: torch.Tensor) -> torch.Tensor:
        """The resolved ``positions``, less the rows whose per-row ``alpha`` is 0."""
        return _rows_with_alpha(self.positions.resolve(real), self.alpha)

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: "Run | None",
              context: Context | None = None) -> torch.Tensor:
        direction = _vector_at(self.direction, site, "direction", "Add")
        _check_direction(direction, act.shape[-1], site)
        delta = _alpha_column(self.alpha, act, site, self) * moved(self, "direction", direction, act.device, act.dtype)
        return torch.where(where[..., None], act + delta, act)


@dataclass(frozen=True)
class RmsAdd(Intervention):
    """``act + alpha * rms(act) * direction``: the edit scales with the residual's RMS at each
    position (pass an RMS-normalised direction so alpha is a fraction of the residual's size).

    ``direction``: a ``[d]`` tensor or a `Direction` (as for `Add`).

    >>> import torch
    >>> from harness.models.sites import Site
    >>> act, where = torch.tensor([[[3.0, 4.0]]]), torch.ones(1, 1, dtype=torch.bool)   # rms 3.5355
    >>> RmsAdd(torch.tensor([1.0, 0.0]), alpha=0.5).apply(act, where, Site.parse("blocks.1.resid_post"), None)
    tensor([[[4.7678, 4.0000]]])
    """

    direction: "torch.Tensor | Direction"
    alpha: float | torch.Tensor = 1.0
    positions: Positions = ALL

    def __post_init__(self) -> None:
        _check_vector_arg(self.direction, "direction", "RmsAdd", "[d]")

    def intended(self, real: torch.Tensor) -> torch.Tensor:
        """The resolved ``positions``, less the rows whose per-row ``alpha`` is 0."""
        return _rows_with_alpha(self.positions.resolve(real), self.alpha)

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: "Run | None",
              context: Context | None = None) -> torch.Tensor:
        direction = _vector_at(self.direction, site, "direction", "RmsAdd")
        _check_direction(direction, act.shape[-1], site)
        rms = act.float().pow(2).mean(-1, keepdim=True).sqrt().to(act.dtype)
        delta = _alpha_column(self.alpha, act, site, self) * rms * moved(self, "direction", direction, act.device,
                                                                          act.dtype)
        return torch.where(where[..., None], act + delta, act)


@dataclass(frozen=True)
class Patch(Intervention):
    """Replace the activation with ``source`` (same ``[batch, pos, d]``) at the chosen positions.

    ``source`` is an activation (a tensor), never a `Direction`: to move along a direction use
    `Add`.

    >>> import torch
    >>> from harness.interventions import Positions
    >>> from harness.models.sites import Site
    >>> act, source = torch.zeros(1, 3, 1), torch.ones(1, 3, 1)
    >>> where = Positions.of_spans([[(1, 3)]]).resolve(torch.ones(1, 3))
    >>> Patch(source).apply(act, where, Site.parse("blocks.1.resid_post"), None).flatten()
    tensor([0., 1., 1.])
    """

    source: torch.Tensor
    positions: Positions = ALL

    def __post_init__(self) -> None:
        _check_tensor_arg(self.source, "source", "Patch", "[batch, pos, d]",
                          "the source run's activation at the site (`Record` it)")

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: "Run | None",
              context: Context | None = None) -> torch.Tensor:
        _check_source(self.source, act, site, "patch", "patches")
        return torch.where(where[..., None], moved(self, "source", self.source, act.device, act.dtype), act)


@dataclass(frozen=True)
class Interchange(Intervention):
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

    ``basis`` may also be a `Direction`: the one-dimensional subspace it spans, as the column
    ``[d, 1]`` of its unit vector (its site must be the site the edit is installed at).

    Raises `ShapeError` for a ``source`` of another shape than the activation, or a ``basis``
    that is not ``[d, k]`` for the site; `InterventionError` for a ``source`` or ``basis`` that
    is not a tensor (a basis may be a Direction) or a Direction at another site.

    Sources: Geiger, Wu, Icard, Potts, Goodman 2023, "Finding Alignments Between Interpretable
    Causal Variables and Distributed Neural Representations"; Wu et al. 2023, "Interpretability
    at Scale: Identifying Causal Mechanisms in Alpaca" (Boundless DAS); pyvene's
    ``RotatedSpaceIntervention`` / ``LowRankRotatedSpaceIntervention``.
    """

    source: torch.Tensor
    basis: "torch.Tensor | Direction"
    positions: Positions = ALL

    def __post_init__(self) -> None:
        _check_tensor_arg(self.source, "source", "Interchange", "[batch, pos, d]",
                          "the source run's activation at the site (`Record` it)")
        _check_vector_arg(self.basis, "basis", "Interchange", "[d, k]")

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: "Run | None",
              context: Context | None = None) -> torch.Tensor:
        _check_source(self.source, act, site, "interchange", "interchanges")
        basis = _vector_at(self.basis, site, "basis", "Interchange")
        if not isinstance(self.basis, torch.Tensor):  # a Direction: the line it spans, [d, 1]
            _check_direction(basis, act.shape[-1], site, "the Direction given as interchange `basis`")
            norm = basis.float().norm()
            if norm == 0:
                raise InterventionError(
                    f"`basis` of Interchange is a zero Direction ({self.basis.kind}) at {site}; it spans "
                    "no subspace"
                )
            basis = (basis.float() / norm)[:, None]
        if basis.dim() != 2 or basis.shape[0] != act.shape[-1]:
            raise ShapeError(
                f"interchange `basis` must have shape [{act.shape[-1]}, k] (the width of {site} by "
                f"the subspace's dimension) for site {site}, got {tuple(basis.shape)}; give "
                "the basis vectors as columns (transpose a [k, d] basis)"
            )
        dtype = torch.promote_types(act.dtype, torch.float32)
        basis = moved(self, "basis", basis, act.device, dtype)
        base, source = act.to(dtype), moved(self, "source", self.source, act.device, dtype)
        # act + ((source - act) @ U) @ U.T, written so that U = identity gives the source and
        # U = 0 the activation bit for bit (``act - act`` is exactly 0)
        edited = (base - (base @ basis) @ basis.T + (source @ basis) @ basis.T).to(act.dtype)
        return torch.where(where[..., None], edited, act)


@dataclass(frozen=True)
class Ablate(Intervention):
    """Zero, mean or resample ablation.

    Example::

        Ablate.zero()
        Ablate.mean(reference_acts, reference_mask)   # mean over real tokens of a reference set
        Ablate.resample(donor_acts)                   # activations of other examples, same shape
        Ablate("mean", mean_vector)                   # a mean computed elsewhere: [d] or a Direction

    ``value`` is None for ``"zero"``, the ``[d]`` vector (a tensor, or a `Direction` whose site
    must be the site the edit is installed at) for ``"mean"``, and the donor activations
    ``[batch, pos, d]`` for ``"resample"``.

    >>> import torch
    >>> from harness.models.sites import Site
    >>> act, where = torch.ones(1, 2, 2), torch.tensor([[True, False]])
    >>> reference = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])    # [n, pos, d]
    >>> edit = Ablate.mean(reference, torch.tensor([[1, 1, 0]]))           # the third is padding
    >>> edit.apply(act, where, Site.parse("blocks.1.resid_post"), None)
    tensor([[[2., 3.],
             [1., 1.]]])
    """

    kind: str
    value: "torch.Tensor | Direction | None" = None
    positions: Positions = ALL

    def __post_init__(self) -> None:
        if self.kind not in ("zero", "mean", "resample"):
            raise InterventionError(
                f"`kind` of Ablate must be 'zero', 'mean' or 'resample', got {self.kind!r}; use "
                "Ablate.zero(), Ablate.mean(reference) or Ablate.resample(donor)"
            )
        if self.kind == "zero":
            if self.value is not None:
                raise InterventionError(
                    f"`value` of a zero Ablate must be None, got {_describe(self.value)}; use "
                    "Ablate.zero(), or Ablate('mean', value) to ablate to a vector"
                )
        elif self.kind == "mean":
            _check_vector_arg(self.value, "value", "a mean Ablate", "[d]")
        else:
            _check_tensor_arg(self.value, "value", "a resample Ablate", "[batch, pos, d]",
                              "the donor activations at the site (`Record` them on other examples)")

    @classmethod
    def zero(cls, *, positions: Positions = ALL) -> "Ablate":
        return cls("zero", None, positions)

    @classmethod
    def mean(cls, reference: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
             positions: Positions = ALL) -> "Ablate":
        _check_tensor_arg(reference, "reference", "Ablate.mean", "[n, pos, d]",
                          "the activations of a reference set at the site (`Record` them)")
        if reference.dim() != 3:
            raise ShapeError(f"`reference` must be [n, pos, d], got {tuple(reference.shape)}")
        if attention_mask is None:
            mean = reference.reshape(-1, reference.shape[-1]).mean(0)
        else:
            _check_tensor_arg(attention_mask, "attention_mask", "Ablate.mean", "[n, pos]",
                              "the attention mask of the reference batch")
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
        _check_tensor_arg(donor, "donor", "Ablate.resample", "[batch, pos, d]",
                          "the donor activations at the site (`Record` them on other examples)")
        if donor.dim() != 3:
            raise ShapeError(f"`donor` must be [batch, pos, d], got {tuple(donor.shape)}")
        return cls("resample", donor, positions)

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: "Run | None",
              context: Context | None = None) -> torch.Tensor:
        if self.kind == "zero":
            value = torch.zeros_like(act)
        elif self.kind == "mean":
            mean = _vector_at(self.value, site, "value", "a mean Ablate")
            _check_direction(mean, act.shape[-1], site, "the mean of `Ablate.mean`'s reference")
            value = moved(self, "value", mean, act.device, act.dtype).expand_as(act)
        else:  # "resample" (the kind is checked when the Ablate is made)
            _check_source(self.value, act, site, "patch", "patches")  # type: ignore[arg-type]
            return torch.where(where[..., None], moved(self, "value", self.value, act.device, act.dtype), act)
        return torch.where(where[..., None], value, act)


@dataclass(frozen=True)
class ProjectOut(Intervention):
    """Remove the activation's component in a subspace (a subspace ablation):
    ``act - (act @ Q) @ Q.T`` at the chosen positions, ``Q`` ``[d, r]`` an orthonormal basis of
    the span of the rows of ``basis``.

    ``basis``: ``[k, d]``, the vectors as rows (``d`` the site's width: ``d_head`` for a head),
    in any scale and not necessarily independent: the span is what counts (it is
    orthonormalised here by an SVD in float64, singular values below ``max(k, d) * eps *
    largest`` dropped, ``eps`` of the basis's dtype, at least float32's: numpy's
    ``matrix_rank`` tolerance), so rescaled, repeated or mixed rows give the same edit; ``k = 0`` or a
    zero basis changes nothing, bit for bit. A `Direction` is the line it spans (its site must
    be the site the edit is installed at). The edit is computed in float32 at least and cast
    back to the activation's dtype.

    Afterwards the activation is orthogonal to every row of ``basis``. One row ``u`` of unit
    norm gives ``act - (act . u) u``, the directional ablation of Arditi et al. 2024 ("Refusal
    in Language Models Is Mediated by a Single Direction"); LEACE (Belrose et al. 2023) is the
    least-squares generalisation with a whitening, not this.

    >>> import torch
    >>> from harness.models.sites import Site
    >>> act, where = torch.tensor([[[3.0, 4.0, 5.0]]]), torch.ones(1, 1, dtype=torch.bool)
    >>> ProjectOut(torch.tensor([[2.0, 0.0, 0.0], [0.0, -3.0, 0.0]])).apply(   # span of x and y
    ...     act, where, Site.parse("blocks.1.resid_post"), None)
    tensor([[[0., 0., 5.]]])

    Raises `ShapeError` for a basis that is not ``[k, d]`` for the site; `InterventionError`
    for a basis that is neither a tensor nor a Direction, a Direction at another site, or a
    basis with NaN or infinite entries.
    """

    basis: "torch.Tensor | Direction"
    positions: Positions = ALL

    def __post_init__(self) -> None:
        _check_vector_arg(self.basis, "basis", "ProjectOut", "[k, d]")

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: "Run | None",
              context: Context | None = None) -> torch.Tensor:
        basis = _vector_at(self.basis, site, "basis", "ProjectOut")
        if not isinstance(self.basis, torch.Tensor):  # a Direction: the line it spans, [1, d]
            _check_direction(basis, act.shape[-1], site, "the Direction given as `basis` of ProjectOut")
            basis = basis[None, :]
        if basis.dim() != 2 or basis.shape[1] != act.shape[-1]:
            raise ShapeError(
                f"`basis` of ProjectOut must have shape [k, {act.shape[-1]}] (the vectors as rows, "
                f"the width of {site}) for site {site}, got {tuple(basis.shape)}; transpose a [d, k] "
                "basis of columns"
            )
        if not bool(torch.isfinite(basis).all()):
            raise InterventionError(f"`basis` of ProjectOut at {site} has NaN or infinite entries")
        span = self._span(basis)                                         # [r, d], float64
        if span.shape[0] == 0:
            return act
        dtype = torch.promote_types(act.dtype, torch.float32)
        q = moved(self, "span", span, act.device, dtype)
        base = act.to(dtype)
        edited = (base - (base @ q.T) @ q).to(act.dtype)
        return torch.where(where[..., None], edited, act)


    def _span(self, basis: torch.Tensor) -> torch.Tensor:
        """`_orthonormal_rows` of `basis`, computed once per basis (and again after an in-place
        change to it, by its version counter) rather than on every forward."""
        if basis.requires_grad:
            return _orthonormal_rows(basis)
        hit = self.__dict__.get("_span_of")
        if hit is not None and hit[0] is basis and hit[1] == basis._version:
            return hit[2]
        span = _orthonormal_rows(basis)
        object.__setattr__(self, "_span_of", (basis, basis._version, span))
        return span


def _orthonormal_rows(basis: torch.Tensor) -> torch.Tensor:
    """``[r, d]`` orthonormal rows spanning the rows of `basis` ``[k, d]`` (float64, on the CPU)."""
    eps = torch.finfo(torch.promote_types(basis.dtype, torch.float32)).eps   # the rows' own precision
    b = basis.detach().to("cpu", torch.float64)
    if b.shape[0] == 0:
        return b
    _, s, vh = torch.linalg.svd(b, full_matrices=False)
    if s.numel() == 0 or float(s[0]) == 0.0:
        return vh[:0]
    keep = s > s[0] * max(b.shape) * eps  # numpy.linalg.matrix_rank's tolerance
    return vh[keep]
