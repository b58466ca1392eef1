"""Distributed alignment search (DAS): learn the subspace of one site whose interchange makes the
model give a causal model's answer.

    das(model, base, source, site, positions, target)          learn an orthonormal basis U [d, k]
    interchange_logits(model, base, source, site, positions, U) last-token logits of each base run
                                                                 under the interchange along U
    random_basis(d, k, seed)                                     a seeded random orthonormal [d, k]
    Subspace                                                     the learned basis, its site, the
                                                                 training losses, the seed

An *interchange intervention* along U at position p of pair i replaces the base run's
activation at the site by ``h_base + (h_source - h_base) @ U @ U.T`` at p (`Interchange`): the
projection onto ``span(U)`` comes from the source run, the rest stays the base's. DAS fits U by
minimising the cross-entropy of ``target[i]`` (what the causal model says the output is after
the interchange, e.g. the source program's answer) at the last real token of base run i, with
the model's weights frozen. Evaluate a learned subspace on held-out pairs with
`interchange_logits` (interchange accuracy: how often the argmax is the target) against
`random_basis` subspaces of the same k.

Inputs: ``base`` and ``source`` are equally long lists of strings (tokenized with
``model.tokenize``) or of token-id lists; pair i's two must have the same token length (pairs
may differ from each other: rows are right-padded, `harness.models.loaded.pad_rows`).
``positions[i]`` is the index of the token of pair i where the interchange happens (negative
indices count from the pair's end, -1 its last token); ``target[i]`` a token id (or a
single-token string). Decoder-only models.

Sources: Geiger, Wu, Icard, Potts, Goodman 2023, "Finding Alignments Between Interpretable Causal
Variables and Distributed Neural Representations" (DAS); Wu, Geiger, Icard, Potts, Goodman 2023,
"Interpretability at Scale: Identifying Causal Mechanisms in Alpaca" (Boundless DAS, pyvene's
``RotatedSpaceIntervention`` / low-rank interchange).
"""

from __future__ import annotations

import contextlib
import operator
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from harness import progress
from harness.errors import DataError, ShapeError
from harness.interventions import Interchange, Positions, Record, intervene
from harness.models.loaded import LoadedModel, pad_rows
from harness.models.sites import Site
from harness.measures.patching import _ids
from harness.measures.patching_engine import token_pairs as _pair_rows

__all__ = ["Subspace", "das", "interchange_logits", "random_basis"]


@dataclass(frozen=True)
class Subspace:
    """A subspace learned by `das`: ``basis`` ``[d, k]`` float32 on the CPU, orthonormal columns;
    ``site`` where it lives; ``losses`` the training cross-entropy of each step; ``seed``."""

    basis: torch.Tensor
    site: Site
    losses: list[float]
    seed: int

    @property
    def k(self) -> int:
        return int(self.basis.shape[1])

    def overlap(self, v: torch.Tensor) -> float:
        """``|U.T v| / |v|``: the cosine between `v` (``[d]``) and the subspace (1 when v lies in it)."""
        v = v.detach().float().cpu()
        if tuple(v.shape) != (self.basis.shape[0],):
            raise ShapeError(f"`v` must have shape [{self.basis.shape[0]}] for {self.site}, got {tuple(v.shape)}")
        return float((self.basis.T @ v).norm() / v.norm())


def random_basis(d: int, k: int, seed: int) -> torch.Tensor:
    """A random orthonormal basis ``[d, k]`` (float32, CPU): the Q of the QR decomposition of a
    standard normal ``[d, k]`` drawn from ``torch.Generator().manual_seed(seed)``, so the span is
    uniform over k-dimensional subspaces. Raises `DataError` unless ``1 <= k <= d``.

    `das` starts from ``random_basis(d, k, seed)``; compare a learned subspace with random ones
    of other seeds.
    """
    d, k = _int(d, "d"), _int(k, "k")
    if not 1 <= k <= d:
        raise DataError(f"`k` must be between 1 and d={d} (the subspace's dimension), got {k}")
    draw = torch.randn(d, k, generator=torch.Generator().manual_seed(int(seed)), dtype=torch.float64)
    return torch.linalg.qr(draw).Q.float()


def _int(value: Any, name: str) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise DataError(f"`{name}` must be an int, got {value!r}") from None


@dataclass
class _Pairs:
    base: torch.Tensor       # [n, pos] input ids
    source: torch.Tensor     # [n, pos]
    mask: torch.Tensor       # [n, pos]
    positions: torch.Tensor  # [n] non-negative
    site: Site


def _pairs(model: LoadedModel, base: Sequence[Any], source: Sequence[Any], site: Site | str,
           positions: Sequence[int]) -> _Pairs:
    a, b = _pair_rows(model, base, source, names=("base", "source"), what="das and interchanges",
                      swap="an interchange swaps")
    where = model.site(site)
    if isinstance(positions, (int, str)) or (isinstance(positions, torch.Tensor) and positions.dim() != 1):
        raise DataError(f"`positions` must be a list of token indices, one per pair, got {positions!r}")
    pos = [_int(p, f"positions[{i}]") for i, p in enumerate(positions)]
    if len(pos) != len(a):
        raise DataError(f"`positions` has {len(pos)} entries but there are {len(a)} pairs; give one "
                        "token index per pair (where the interchange happens)")
    for i, x in enumerate(a):
        if not -len(x) <= pos[i] < len(x):
            raise DataError(f"`positions[{i}]` is {pos[i]} but pair {i} has {len(x)} tokens; give an index "
                            f"in [{-len(x)}, {len(x) - 1}] into the pair's tokens")
        pos[i] %= len(x)
    ids_a, mask = pad_rows(a, pad_id=model.pad_id, device=model.device)
    ids_b, _ = pad_rows(b, pad_id=model.pad_id, device=model.device)
    return _Pairs(ids_a, ids_b, mask, torch.as_tensor(pos, dtype=torch.long, device=model.device), where)


def _check_basis(model: LoadedModel, site: Site, basis: torch.Tensor) -> torch.Tensor:
    d = model.width(site)
    if not isinstance(basis, torch.Tensor) or basis.dim() != 2 or basis.shape[0] != d:
        shape = tuple(basis.shape) if isinstance(basis, torch.Tensor) else type(basis).__name__
        raise ShapeError(f"`basis` must be a tensor [{d}, k] for {site} (the site's width by the subspace's "
                         f"dimension, basis vectors as columns), got {shape}")
    return basis.detach().float().to(model.device)


def _targets(model: LoadedModel, target: Any, n: int) -> torch.Tensor:
    if isinstance(target, (int, str)):
        raise DataError(f"`target` must hold one token id per pair ({n}), got the single value {target!r}; "
                        "repeat it for every pair if that is meant")
    ids = _ids(model, list(target), "target")
    if ids.numel() != n:
        raise DataError(f"`target` has {ids.numel()} token ids but there are {n} pairs; give one per pair")
    vocab = model.module.get_output_embeddings().weight.shape[0]
    bad = ((ids < 0) | (ids >= vocab)).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        raise DataError(f"`target[{i}]` is {int(ids[i])}, not a token id of {model.name} (vocabulary of {vocab})")
    return ids.to(model.device)


@torch.no_grad()
def _source_at(model: LoadedModel, pairs: _Pairs, batch_size: int) -> torch.Tensor:
    """The source runs' activation at the site and each pair's position, ``[n, d]`` (Record, no grad)."""
    out = []
    for start in range(0, pairs.mask.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        mask = pairs.mask[rows]
        with intervene(model, {pairs.site: Record()}, masks={model.main_stack: mask}) as run:
            model.module(input_ids=pairs.source[rows], attention_mask=mask, use_cache=False)
        act = run.recorded[pairs.site]
        out.append(act[torch.arange(act.shape[0], device=act.device), pairs.positions[rows]])
    return torch.cat(out)


def _interchanged(model: LoadedModel, pairs: _Pairs, rows: torch.Tensor, src: torch.Tensor,
                  basis: torch.Tensor) -> torch.Tensor:
    """Last-token logits ``[r, vocab]`` (float32) of the base runs of `rows` under the interchange
    along `basis` at each pair's position; differentiable in `basis` when grad is enabled."""
    mask = pairs.mask[rows]
    width = int(mask.sum(1).max())  # right padding: columns past the longest row change nothing
    mask, ids = mask[:, :width], pairs.base[rows][:, :width]
    r = torch.arange(rows.shape[0], device=mask.device)
    pos = pairs.positions[rows]
    source = src.new_zeros(rows.shape[0], width, src.shape[-1])
    source[r, pos] = src
    where = torch.zeros_like(mask, dtype=torch.bool)
    where[r, pos] = True
    edit = Interchange(source, basis, Positions.of_mask(where))
    with intervene(model, {pairs.site: edit}, masks={model.main_stack: mask}):
        logits = model.module(input_ids=ids, attention_mask=mask, use_cache=False).logits
    return logits[r, mask.sum(1) - 1].float()


@contextlib.contextmanager
def _frozen(model: LoadedModel) -> Iterator[None]:
    """The model's parameters with ``requires_grad`` off (and the module in eval mode) for the
    block; each flag and the mode restored afterwards, whatever is raised."""
    params = list(model.module.parameters())
    flags = [p.requires_grad for p in params]
    training = model.module.training
    try:
        for p in params:
            p.requires_grad_(False)
        model.module.eval()
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        model.module.train(training)


def das(model: LoadedModel, base: Sequence[Any], source: Sequence[Any], site: Site | str,
        positions: Sequence[int], target: Sequence[Any], *, k: int = 1, steps: int = 200, lr: float = 1e-2,
        batch_size: int = 64, seed: int | None = None) -> Subspace:
    """Learn an orthonormal ``U`` ``[d, k]`` at `site` whose interchange (source -> base, at
    ``positions[i]``) makes base run i predict ``target[i]`` at its last real token.

    Example::

        sub = das(m, base_prompts, source_prompts, "blocks.3.resid_pre", positions=[-1] * n,
                  target=source_answers, k=1, steps=200)
        logits = interchange_logits(m, held_base, held_source, sub.site, held_positions, sub.basis)
        accuracy = (logits.argmax(-1) == torch.tensor(held_targets)).float().mean()

    ``U`` is the Q of the QR decomposition of a free parameter ``W`` ``[d, k]`` (recomputed every
    step, so U stays orthonormal), ``W`` starting at ``random_basis(d, k, seed)`` and trained by
    Adam (`lr`) for `steps` steps on minibatches of `batch_size` pairs (each a seeded random
    permutation, cycled). The loss is the mean cross-entropy of the targets. The source runs'
    activations are recorded once (`Record`, no grad). The model's weights are frozen: nothing is
    accumulated in their ``.grad``, ``requires_grad`` and the train/eval mode are restored, and the
    weights are unchanged (the fingerprint is the same). Same inputs and seed: the same U on the
    same device. Every hook is removed when the call returns or raises.

    Each step runs a full forward and backward of the minibatch (the blocks before the site
    included); memory grows with ``batch_size x pos x vocab`` for the logits.

    Raises `DataError` for empty or mismatched inputs (`base`/`source`/`positions`/`target` of
    different counts, a position outside its pair, a target outside the vocabulary), ``k`` outside
    ``1..d``, or ``steps``, ``lr``, ``batch_size`` below 1 (``lr`` <= 0); `ShapeError` for a pair
    whose two prompts differ in token length; `SiteError` for an unknown site;
    `InterventionError` for an encoder-decoder model.
    """
    pairs = _pairs(model, base, source, site, positions)
    n = pairs.mask.shape[0]
    targets = _targets(model, target, n)
    d = model.width(pairs.site)
    from harness.verdicts.context import default_seed

    seed = default_seed(seed, owner="das")
    k, steps, batch_size, seed = _int(k, "k"), _int(steps, "steps"), _int(batch_size, "batch_size"), _int(seed, "seed")
    if not 1 <= k <= d:
        raise DataError(f"`k` must be between 1 and {d} (the width of {pairs.site}), got {k}")
    if steps < 1 or batch_size < 1:
        raise DataError(f"`steps` and `batch_size` must be positive integers, got steps={steps}, "
                        f"batch_size={batch_size}")
    if not float(lr) > 0:
        raise DataError(f"`lr` must be a positive learning rate, got {lr!r}")
    order_gen = torch.Generator().manual_seed(seed)
    free = random_basis(d, k, seed).to(model.device).requires_grad_(True)
    optimizer = torch.optim.Adam([free], lr=float(lr))
    losses: list[float] = []
    with _frozen(model), torch.enable_grad():
        src = _source_at(model, pairs, batch_size)
        queue = torch.empty(0, dtype=torch.long)
        with progress.task(f"das {pairs.site}", total=steps, unit="steps") as bar:
            for _ in range(steps):
                while queue.numel() < min(batch_size, n):
                    queue = torch.cat([queue, torch.randperm(n, generator=order_gen)])
                rows, queue = queue[:batch_size].to(model.device), queue[batch_size:]
                basis = torch.linalg.qr(free).Q
                logits = _interchanged(model, pairs, rows, src[rows], basis)
                loss = torch.nn.functional.cross_entropy(logits, targets[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
                bar.advance(1)
    basis = torch.linalg.qr(free.detach()).Q.float().cpu()
    return Subspace(basis=basis, site=pairs.site, losses=losses, seed=seed)


@torch.no_grad()
def interchange_logits(model: LoadedModel, base: Sequence[Any], source: Sequence[Any], site: Site | str,
                       positions: Sequence[int], basis: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Next-token logits at the last real token of each base run under the interchange along
    `basis` (``[d, k]``, used as given: pass orthonormal columns) at ``positions[i]``, ``[n, vocab]``
    float32 on the CPU, no grad. Inputs as for `das`; ``basis`` = ``Subspace.basis`` or
    `random_basis` (a zero-column basis ``[d, 0]`` gives the plain base runs).

    Raises `DataError` / `ShapeError` / `SiteError` / `InterventionError` as `das` does for the
    inputs, `ShapeError` for a basis that is not ``[d, k]`` for the site, `DataError` for a
    `batch_size` below 1.
    """
    pairs = _pairs(model, base, source, site, positions)
    u = _check_basis(model, pairs.site, basis)
    batch_size = _int(batch_size, "batch_size")
    if batch_size < 1:
        raise DataError(f"`batch_size` must be a positive integer, got {batch_size}")
    src = _source_at(model, pairs, batch_size)
    n = pairs.mask.shape[0]
    out = []
    for start in range(0, n, batch_size):
        rows = torch.arange(start, min(start + batch_size, n), device=model.device)
        out.append(_interchanged(model, pairs, rows, src[rows], u).cpu())
    return torch.cat(out)
