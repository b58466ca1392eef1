"""Linear probes: L2-regularised logistic regression on activations, and its controls.

    fit_probe(features, labels)          a multinomial logistic-regression probe on standardised
                                         features (full-batch L-BFGS from zero weights: the fit
                                         is deterministic)
    fit_control(features, labels, seed)  the same probe fitted on a seeded shuffle of the labels:
                                         what the probe reaches with no relation to the labels
    control_labels(features, labels, seed)  that shuffle: each row's control label
    Probe.correct(features, labels)      per-example correctness on held-out rows (for
                                         `harness.stats.proportion_of`)
    balance(labels, strata, seed)        indices that keep equally many rows of each class
                                         within each stratum (e.g. prompt length), seeded

The seeded draws (the control's shuffle, balancing's pick) are keyed by example, not by row:
rows are ranked by a blake2b hash of (seed, the row's key), as `harness.measures.directions` ranks
them, so the same rows in another order get the same control labels and the same rows kept,
and a row's draw never depends on the rows before it. Pass ``keys=`` (one per row: the
example's text, token ids or an integer id) to key rows by example; the defaults are each
row's features (`fit_control`) and each row's index (`balance`: the pick then follows
positions, so pass keys when rows may come in another order).

Features are ``[n, d]`` (activations at one site), labels ``[n]`` of any comparable type (bool,
int, str); the standardisation (mean and standard deviation per feature) is the training
rows', and a feature constant there is left unscaled. The penalty is ``l2 / 2 * |W|^2`` on the
weights (not the bias), added to the mean cross-entropy.

Example::

    probe = fit_probe(train_x, train_y)
    control = fit_control(train_x, train_y, seed=0, keys=train_texts)   # shuffle keyed by example
    stats.proportion_of(probe.correct(test_x, test_y))      # vs control.correct(test_x, test_y)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from harness.measures.directions import _key_bytes, _keyed_order
from harness.errors import DataError, ShapeError
from harness.verdicts.context import draw_seed

__all__ = ["Probe", "fit_probe", "fit_control", "control_labels", "balance"]

L2 = 1e-2
MAX_ITER = 500


@dataclass(frozen=True)
class Probe:
    """A fitted linear probe: ``argmax(((x - mean) / scale) @ weight + bias)`` indexes `classes`."""

    classes: np.ndarray
    mean: torch.Tensor
    scale: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def predict(self, features: Any) -> np.ndarray:
        """The predicted class of each row of `features` ``[n, d]``."""
        x = _features(features, name="features")
        if x.shape[1] != self.weight.shape[0]:
            raise ShapeError(f"`features` has {x.shape[1]} columns but the probe was fitted on "
                             f"{self.weight.shape[0]}; pass activations from the same site")
        logits = ((x - self.mean) / self.scale) @ self.weight + self.bias
        return self.classes[logits.argmax(1).numpy()]

    def correct(self, features: Any, labels: Any) -> np.ndarray:
        """Per-example correctness ``[n]`` bool on (held-out) `features` and their true `labels`."""
        x = _features(features, name="features")
        y = _labels(labels, n=x.shape[0], name="labels")
        unseen = sorted(set(y.tolist()) - set(self.classes.tolist()))
        if unseen:
            raise DataError(f"`labels` holds {unseen!r}, a class the probe was not fitted on (classes "
                            f"{self.classes.tolist()!r}); score on labels of the training classes")
        return self.predict(x) == y


def fit_probe(features: Any, labels: Any, *, l2: float = L2, max_iter: int = MAX_ITER) -> Probe:
    """Fit an L2-regularised logistic-regression probe predicting `labels` ``[n]`` from
    `features` ``[n, d]`` (standardised with the training rows' mean and deviation)."""
    x = _features(features, name="features")
    y = _labels(labels, n=x.shape[0], name="labels")
    if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not l2 >= 0:
        raise DataError(f"`l2` must be a non-negative number, got {l2!r}; e.g. l2=1e-2")
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"`labels` holds a single class {classes.tolist()!r} ({len(y)} rows); a probe needs "
                        "at least two classes: check the selection of rows")
    mean = x.mean(0)
    scale = x.std(0)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    z = (x - mean) / scale
    target = torch.as_tensor(codes, dtype=torch.long)
    weight = torch.zeros(x.shape[1], len(classes), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12)

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(z @ weight + bias, target) + 0.5 * l2 * weight.pow(2).sum()
        value.backward()
        return value

    optimizer.step(loss)
    return Probe(classes=classes, mean=mean, scale=scale, weight=weight.detach(), bias=bias.detach())


def control_labels(features: Any, labels: Any, *, seed: int | None = None, keys: Sequence | None = None) -> np.ndarray:
    """Each row's label after the seeded shuffle `fit_control` fits on (``[n]``, row order kept).

    The rows are ranked by a blake2b hash of (`seed`, the row's key) and the labels, sorted,
    are handed out in that rank order: a uniformly random relabelling that keeps the class
    counts. A row's control label depends on the seed, its key and the multiset of (key,
    label) rows, not on the order of the rows: reorder the rows and each row keeps its control
    label. The key of a row is ``keys[i]`` (the example's text, token ids or an integer id:
    robust when the same example's features differ in the last bits between runs or batches)
    or, without `keys`, the bytes of its features as float64 (rows equal in both features and
    key are interchangeable).
    """
    x = _features(features, name="features")
    y = _labels(labels, n=x.shape[0], name="labels")
    order = _control_order(x, keys, seed, "control_labels")
    out = np.empty_like(y)
    out[order] = np.sort(y, kind="stable")   # row order[j] gets the j-th smallest label
    return out


def fit_control(features: Any, labels: Any, *, seed: int | None = None, keys: Sequence | None = None, l2: float = L2,
                max_iter: int = MAX_ITER) -> Probe:
    """`fit_probe` on the labels shuffled with `seed` (`control_labels`): the probe's accuracy
    when the labels carry no information the features could hold (same classes, same class
    balance).

    The shuffle is keyed by example (`control_labels`: by ``keys[i]`` or, without `keys`, the
    row's features), and the rows are fitted in their keyed order, so the same rows in any
    order give the same control probe bit for bit.
    """
    x = _features(features, name="features")
    y = _labels(labels, n=x.shape[0], name="labels")
    order = _control_order(x, keys, seed, "fit_control")
    return fit_probe(x[torch.as_tensor(order)], np.sort(y, kind="stable"), l2=l2, max_iter=max_iter)


def _control_order(x: torch.Tensor, keys: Sequence | None, seed: int, owner: str) -> np.ndarray:
    """The rows of `x` ranked by a hash of (seed, key); the key defaults to the row's float64 bytes."""
    seed = draw_seed(seed, owner=owner)
    if keys is None:
        keys = [row.tobytes() for row in x.numpy()]
    return _keyed_order(x, _keys(keys, x.shape[0], "features"), seed, b"probe-control")


def balance(labels: Any, strata: Sequence | None = None, *, seed: int | None = None, keys: Sequence | None = None) -> np.ndarray:
    """Sorted indices of a subset with equally many rows of each class within each stratum
    (the least any class has there; a stratum lacking a class is dropped), drawn with `seed`.

    With `strata` (e.g. each row's token count), a probe that reads only the stratum is at chance.

    Within each (stratum, class) the rows are ranked by a blake2b hash of (`seed`, the row's
    key) and the first ones kept. Whether a row is kept depends on the seed, its key, and the
    keys in its stratum and class (and how many rows each class has in its stratum), never on
    the order of the rows or on other strata. The key of a row is ``keys[i]`` (the example's
    text, token ids or an integer id) or, without `keys`, its index: pass keys to keep the
    same examples when the rows come in another order.
    """
    y = _labels(labels, n=None, name="labels")
    groups = np.zeros(len(y), dtype=int) if strata is None else _labels(strata, n=len(y), name="strata")
    seed = draw_seed(seed, owner="balance")
    keys = _keys(range(len(y)) if keys is None else keys, len(y), "labels")
    rows = torch.zeros(len(y), 0)
    classes = np.unique(y)
    keep = []
    for stratum in np.unique(groups):
        members = [np.flatnonzero((groups == stratum) & (y == c)) for c in classes]
        least = min(len(m) for m in members)
        if least:
            keep += [_keyed_order(rows, keys, seed, b"probe-balance", rows=m)[:least] for m in members]
    out = np.sort(np.concatenate(keep)) if keep else np.empty(0, dtype=int)
    if len(out) == 0:
        raise DataError(f"no stratum holds every class {classes.tolist()!r}, so balancing keeps no rows; "
                        "check `labels` and `strata`")
    return out



def _keys(keys: Any, n: int, against: str) -> list:
    """`keys` as a list of one key per row (text, bytes, token ids or an integer id), checked."""
    if isinstance(keys, (str, bytes)):
        raise DataError("`keys` must be one key per row (e.g. each example's text), got a single "
                        f"{type(keys).__name__}")
    keys = list(keys)
    if len(keys) != n:
        raise ShapeError(f"`keys` has {len(keys)} entries but `{against}` has {n} rows; give one key per row "
                         "(e.g. the example's text)")
    for i, key in enumerate(keys):
        _key_bytes(key, i)   # refuses a key that is not text, bytes, token ids or an integer
    return keys


def _features(features: Any, *, name: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(features, dtype=np.float64))
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ShapeError(f"`{name}` must be [n_examples, d] with n, d >= 1, got shape {tuple(x.shape)}; "
                         "pass one activation vector per row")
    if not torch.isfinite(x).all():
        row = int((~torch.isfinite(x)).any(1).nonzero()[0])
        raise DataError(f"`{name}` holds NaN or inf (first in row {row}); drop or fix those rows")
    return x


def _labels(labels: Any, *, n: int | None, name: str) -> np.ndarray:
    """`labels` as a 1-d array, of `n` rows when `n` is given."""
    y = np.asarray(labels)
    if y.ndim != 1 or (n is not None and len(y) != n):
        rows = "" if n is None else f" ({n} rows)"
        raise ShapeError(f"`{name}` must be one value per row{rows}, got shape {y.shape}; pass a 1-d "
                         "sequence with one entry per row of the features")
    return y
