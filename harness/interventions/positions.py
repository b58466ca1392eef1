"""Positions: which positions of each row an intervention touches, resolved against a mask.

    Positions       all real tokens (``Positions.all()``), the last real token (``.last()``),
                    per-row token spans (``.of_spans(spans)``), or a mask (``.of_mask(mask)``);
                    ``.resolve(attention_mask)`` gives the bool mask ``[batch, pos]`` it acts on
    ALL             ``Positions.all()``, the default of every intervention kind

Positions are resolved against the attention mask of the site's stack, so padding is never
touched and "last token" means the last real token of each row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from harness.errors import InterventionError, ShapeError

__all__ = ["Positions", "ALL"]


@dataclass(frozen=True)
class Positions:
    """Which positions of each row an intervention touches.

    Example::

        Positions.all()                                    # every real (non-pad) token
        Positions.last()                                   # the last real token of each row
        Positions.of_spans([[(3, 9)], [(0, 2), (5, 7)]])   # per-row [start, end) token spans
        Positions.of_mask(mask)                            # a bool mask [batch, pos]

    `resolve` turns them into a mask against a batch's attention mask:

    >>> import torch
    >>> attention_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])   # row 1 has 2 real tokens
    >>> Positions.last().resolve(attention_mask).int()
    tensor([[0, 0, 0, 1],
            [0, 1, 0, 0]], dtype=torch.int32)
    >>> Positions.of_spans([[(0, 2)], [(1, 2)]]).resolve(attention_mask).int()
    tensor([[1, 1, 0, 0],
            [0, 1, 0, 0]], dtype=torch.int32)
    >>> Positions.all().resolve(attention_mask).sum().item()            # padding is never touched
    6
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
        from harness.interventions.intervention import moved  # that module imports this one

        return moved(self, "mask", self.mask, real.device) & real


ALL = Positions.all()
