"""Noise: Gaussian noise at a site, keyed by (seed, the row's real tokens, position).

    Noise           act + std * N(0, 1), drawn from (seed, the row's real tokens, position)
    noise_draw      the ``[width]`` N(0, 1) draw at one real position, batch-independent

A row's noise depends only on the seed, its real token ids, the position among them and the
site's width: never on its batch, padding or chunk (see `Noise`).
"""

from __future__ import annotations

import hashlib
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np
import torch

from harness.errors import InterventionError, ShapeError
from harness.interventions.intervention import Context, Intervention
from harness.interventions.positions import ALL, Positions
from harness.models.sites import Site

if TYPE_CHECKING:
    from harness.interventions.hooks import Run

__all__ = ["Noise", "noise_draw"]


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
class Noise(Intervention):
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

    The token ids come from the forward itself: Noise sets ``needs_input_ids``, so `intervene`
    reads the ``input_ids`` the stack (e.g. ``transformer``, ``encoder``) is called with and
    hands them over in the `Context`, with the real-token mask. A forward that does not call the stack
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

    needs_input_ids: ClassVar[bool] = True

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

    def apply(self, act: torch.Tensor, where: torch.Tensor, site: Site, run: "Run | None",
              context: Context | None = None) -> torch.Tensor:
        if context is None:
            raise InterventionError(
                f"Noise at {site} draws each row's noise from its real token ids and needs the "
                "attention mask and input ids of the forward; install it with intervene(...) "
                "instead of calling apply() directly"
            )
        real = context.real.bool().cpu()
        rows = self._rows(real, context.input_ids, site)
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
