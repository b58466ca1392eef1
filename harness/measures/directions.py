"""Directions in activation space, and the controls every direction claim is paired with.

    Direction                   a vector at a site with its provenance (kind, seed)
    pooled_states               mask-aware mean over real tokens of a site's activation, ``[n, d]``
    pooled_states_at            the same at several sites of one stack, in one pass
    class_mean_direction        mean(states | label) - mean(states | other label)
    random_direction            a seeded random direction with the same norm
    shuffled_label_direction    the class-mean difference after a seeded shuffle of the labels
    within_class_direction      the difference of two random halves of one class

The seeded controls depend on the seed and on the set of rows, never on the rows' order: a
row's place in a shuffle comes from a hash of (seed, the row's key), not from its index.
    save_directions / load_directions   safetensors files of named directions

``Direction.rms_normalised()`` rescales to unit RMS (``||v|| = sqrt(d)``), the natural unit
for RMS-scaled injection.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from harness import progress
from harness.errors import DataError, ShapeError
from harness.interventions import Record, intervene
from harness.models.loaded import LoadedModel, length_order, pad_rows
from harness.models.sites import Site
from harness.verdicts.context import draw_seed

__all__ = [
    "Direction",
    "pooled_states",
    "pooled_states_at",
    "class_mean_direction",
    "random_direction",
    "shuffled_label_direction",
    "within_class_direction",
    "save_directions",
    "load_directions",
]


@dataclass(frozen=True)
class Direction:
    """A direction at a site. ``vector`` is ``[d]`` float32 on the CPU."""

    vector: torch.Tensor
    site: str
    kind: str
    seed: int | None = None

    @property
    def norm(self) -> float:
        return float(self.vector.norm())

    def rms_normalised(self) -> "Direction":
        rms = float(self.vector.pow(2).mean().sqrt())
        if rms == 0.0:
            raise DataError(f"direction {self.kind!r} at {self.site} is zero; it cannot be normalised")
        return Direction(self.vector / rms, self.site, f"{self.kind} (rms-normalised)", self.seed)


def pooled_states(model: LoadedModel, inputs: Sequence[str], site: Site | str, *,
                  batch_size: int = 32, max_length: int | None = None) -> torch.Tensor:
    """Mean of the activation at `site` over each input's real tokens, ``[n, d]`` float32.

    Only the stack that holds `site` runs (the encoder of an encoder-decoder).
    """
    site = model.site(site)
    return pooled_states_at(model, inputs, [site], batch_size=batch_size, max_length=max_length)[site]


@torch.no_grad()
def pooled_states_at(model: LoadedModel, inputs: Sequence[str], sites: Sequence[Site | str], *,
                     batch_size: int = 32, max_length: int | None = None) -> dict[Site, torch.Tensor]:
    """`pooled_states` at several sites of one stack from a single pass over the inputs.

    Example::

        pooled = pooled_states_at(tacgen, states, ["encoder.11.resid_post", "encoder.12.resid_post"])
    """
    sites = [model.site(s) for s in sites]
    if not sites:
        raise DataError("`sites` is empty; give at least one site to pool")
    stacks = {s.stack for s in sites}
    if len(stacks) != 1:
        raise DataError(f"`sites` must all be in one stack, got stacks {sorted(stacks)}")
    for site in sites:
        if model.is_encoder_decoder and site.stack != model.main_stack:
            raise DataError(f"pooled_states reads {model.main_stack} sites of an encoder-decoder (the stack "
                            f"the input tokens index); got {site}")
    if isinstance(inputs, str):
        raise DataError("`inputs` must be a list of strings, got a single str; wrap it in a list")
    rows = list(inputs)
    if not rows:
        raise DataError("`inputs` is empty; pooled states need at least one example")
    tokens = model.tokenize(rows, max_length=max_length)
    order = length_order(tokens)
    out: dict[Site, list[torch.Tensor]] = {site: [] for site in sites}
    with progress.task(f"pooled states at {', '.join(map(str, sites))}", total=len(rows), unit="examples") as bar:
        for start in range(0, len(rows), batch_size):
            ids, mask = pad_rows([tokens[i] for i in order[start:start + batch_size]],
                                 pad_id=model.pad_id, device=model.device)
            with intervene(model, {site: Record() for site in sites}, masks={sites[0].stack: mask}) as run:
                if model.is_encoder_decoder:
                    model.module.get_encoder()(input_ids=ids, attention_mask=mask)
                else:
                    model.module(input_ids=ids, attention_mask=mask)
            m = mask.to(torch.float32)[..., None]
            for site in sites:
                act = run.recorded[site].float()
                out[site].append(((act * m).sum(1) / m.sum(1)).cpu())
            bar.advance(len(order[start:start + batch_size]))
    back = torch.as_tensor(order).argsort()  # batched longest first; returned in input order
    return {site: torch.cat(parts)[back] for site, parts in out.items()}


def _labels(labels: Sequence[object], n: int) -> np.ndarray:
    arr = np.asarray(list(labels), dtype=object)
    if arr.shape[0] != n:
        raise ShapeError(f"`labels` has {arr.shape[0]} entries but `states` has {n} rows")
    return arr


def _sorted_labels(labels: np.ndarray) -> list[object]:
    seen = set(labels.tolist())
    try:
        return sorted(seen)
    except TypeError:  # labels of mixed types (e.g. None and str)
        return sorted(seen, key=repr)


def _mean_diff(states: torch.Tensor, labels: np.ndarray, positive: object, negative: object) -> torch.Tensor:
    pos, neg = labels == positive, labels == negative
    for name, sel, value in (("positive", pos, positive), ("negative", neg, negative)):
        if sel.sum() == 0:
            raise DataError(f"no examples with the {name} label {value!r}; labels seen: {_sorted_labels(labels)}")
    return states[torch.as_tensor(pos)].mean(0) - states[torch.as_tensor(neg)].mean(0)


def class_mean_direction(states: torch.Tensor, labels: Sequence[object], *, positive: object,
                         negative: object, site: str) -> Direction:
    """``mean(states[label == positive]) - mean(states[label == negative])``.

    Example::

        states = pooled_states(tacgen, train.inputs, "encoder.12.resid_post")
        d = class_mean_direction(states, train.labels, positive="intro", negative="apply",
                                 site="encoder.12.resid_post")
    """
    labels_arr = _labels(labels, states.shape[0])
    return Direction(_mean_diff(states.float(), labels_arr, positive, negative), str(site), "class-mean")



def _key_bytes(key: object, i: int) -> bytes:
    """The bytes a row's key is hashed as (tagged by kind, so "1" and 1 differ)."""
    if isinstance(key, str):
        return b"s" + key.encode("utf-8")
    if isinstance(key, bytes):
        return b"b" + key
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        return b"i" + str(int(key)).encode()
    if isinstance(key, (torch.Tensor, np.ndarray)):
        key = key.tolist()
    if isinstance(key, Sequence) and all(isinstance(t, numbers.Integral) and not isinstance(t, bool) for t in key):
        return b"t" + np.asarray(list(key), dtype=np.int64).tobytes()
    raise DataError(f"`keys` entry {i} is {key!r} ({type(key).__name__}); a key is the example's text, "
                    "its token ids, or an integer id")


def _keyed_order(states: torch.Tensor, keys: Sequence[object] | None, seed: int, purpose: bytes,
                 rows: np.ndarray | None = None) -> np.ndarray:
    """`rows` (default: all rows of `states`) sorted by a seeded hash of each row's key.

    The key of a row is ``keys[i]`` or, without `keys`, the bytes of ``states[i]``; rows with
    equal keys are ordered by their state's bytes (rows equal in both are interchangeable). So
    the order, as a sequence of (key, state) rows, depends on the seed and on the set of rows,
    not on the order they come in.
    """
    n = states.shape[0]
    if keys is not None:
        if isinstance(keys, (str, bytes)):
            raise DataError("`keys` must be one key per row of `states`, got a single string")
        keys = list(keys)
        if len(keys) != n:
            raise ShapeError(f"`keys` has {len(keys)} entries but `states` has {n} rows; give one key per row "
                             "(e.g. the example's text)")
    rows = np.arange(n) if rows is None else np.asarray(rows)
    flat = states.detach().to("cpu", torch.float32).contiguous()
    ranked = []
    for i in rows.tolist():
        state = flat[i].numpy().tobytes()
        key = state if keys is None else _key_bytes(keys[i], i)
        h = hashlib.blake2b(digest_size=16, person=purpose)
        h.update(str(seed).encode() + b"|" + key)
        ranked.append((h.digest(), state, i))
    ranked.sort()
    return np.asarray([i for _, _, i in ranked], dtype=np.int64)


def _canonical(labels: np.ndarray) -> np.ndarray:
    """The labels sorted (by value; by type name and repr when they do not compare)."""
    values = labels.tolist()
    try:
        ordered = sorted(values)
    except TypeError:
        ordered = sorted(values, key=lambda v: (type(v).__name__, repr(v)))
    out = np.empty(len(ordered), dtype=object)
    out[:] = ordered
    return out


def random_direction(like: Direction, *, seed: int | None = None) -> Direction:
    """A random Gaussian direction with the same norm as `like` (a norm-matched control).

    The draw depends only on `seed` and the width ``d`` of `like` (a float32 CPU generator of
    its own; the global torch generator is left alone), never on any example or batch.
    """
    seed = draw_seed(seed, owner="random_direction")
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(like.vector.shape, generator=g)
    return Direction(v * (like.norm / float(v.norm())), like.site, "random (norm-matched)", seed)


def shuffled_label_direction(states: torch.Tensor, labels: Sequence[object], *, positive: object,
                             negative: object, site: str, seed: int | None = None,
                             keys: Sequence[object] | None = None) -> Direction:
    """The class-mean difference computed after a seeded shuffle of the labels.

    The shuffle ranks the rows by a seeded hash of each row's key and hands the labels, sorted,
    out in that rank order: a uniformly random relabelling that keeps the class counts. It
    depends on the seed and on the set of (key, state, label) rows, not on their order: the
    same rows in any order give the same direction bit for bit. The key of a row is
    ``keys[i]`` (the example's text or token ids: robust when the same example's states differ
    in the last bits between runs) or, without `keys`, the bytes of ``states[i]``.
    """
    labels_arr = _labels(labels, states.shape[0])
    seed = draw_seed(seed, owner="shuffled_label_direction")
    order = _keyed_order(states, keys, seed, b"shuffled-label")
    shuffled = _canonical(labels_arr)  # row order[j] gets the j-th smallest label
    return Direction(_mean_diff(states.float()[torch.as_tensor(order)], shuffled, positive, negative), str(site),
                     "shuffled-label class-mean", seed)


def within_class_direction(states: torch.Tensor, labels: Sequence[object], *, label: object,
                           site: str, seed: int | None = None, keys: Sequence[object] | None = None) -> Direction:
    """The difference of the means of two random halves of one class (no class signal).

    The class's rows are ranked by a seeded hash of each row's key (``keys[i]`` or, without
    `keys`, the bytes of ``states[i]``); the first ``size // 2`` form one half. The result
    depends on the seed and on the set of (key, state) rows of the class, not on their order
    or on the other classes' rows.
    """
    labels_arr = _labels(labels, states.shape[0])
    seed = draw_seed(seed, owner="within_class_direction")
    idx = np.flatnonzero(labels_arr == label)
    if idx.size < 2:
        raise DataError(f"need at least 2 examples labelled {label!r} to split, got {idx.size}")
    idx = _keyed_order(states, keys, seed, b"within-class", rows=idx)
    half = idx.size // 2
    a, b = states[torch.as_tensor(idx[:half])].float(), states[torch.as_tensor(idx[half:])].float()
    return Direction(a.mean(0) - b.mean(0), str(site), f"within-class split ({label})", seed)


def save_directions(path: str | Path, directions: Mapping[str, Direction]) -> Path:
    """Write named directions to one safetensors file (metadata keeps site, kind, seed)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {name: json.dumps({"site": d.site, "kind": d.kind, "seed": d.seed}) for name, d in directions.items()}
    tmp = path.with_name(path.name + ".tmp")
    # own copies: safetensors refuses tensors that share memory (one vector under two names)
    tensors = {name: d.vector.detach().to("cpu", torch.float32).clone().contiguous() for name, d in directions.items()}
    try:
        save_file(tensors, str(tmp), metadata=meta)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_directions(path: str | Path) -> dict[str, Direction]:
    """Read directions written by `save_directions`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DataError(f"directions file {str(path)!r} does not exist")
    out = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        for name in f.keys():
            info = json.loads(meta.get(name, "{}"))
            out[name] = Direction(f.get_tensor(name), info.get("site", ""), info.get("kind", name), info.get("seed"))
    return out
