"""What a claim observed: evidence records, the recorder around a test, and the session registry.

Contents:

- `Evidence`: one judgement: the numbers of an `Estimate` (kind ``"estimate"``) or of an exactly
  computed value (kind ``"exact"``: `expect(values).equals(...)`), the expectation it was held
  to, and whether it held. `Evidence.from_estimate(est, expectation=..., held=...)`.
- `zero_width(ci_low, ci_high)`: whether an interval is narrower than rounding
  (`ZERO_WIDTH_RTOL` of its magnitude); `EVIDENCE_KINDS`.
- `recording()` / `record(evidence)`: the plugin opens a recorder around each test call;
  `expect(...)` calls `record`, so a test records its evidence without extra code. Outside a
  recorder (a notebook, a script) `record` does nothing.
- `register_model(...)`, `register_dataset(...)`, `registered_models()`,
  `registered_datasets()`: what the study loaded, for the report header. Study conftests (which
  load models with torch) register; the plugin only reads. `open_registry()` /
  `close_registry(...)` give each pytest session its own registry.

Pure Python: no numpy, no torch, so the plugin can import this at load.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:  # pragma: no cover - typing only; Estimate imports numpy
    from harness.stats.estimate import Estimate

__all__ = [
    "Evidence",
    "EVIDENCE_KINDS",
    "ZERO_WIDTH_RTOL",
    "zero_width",
    "ModelRecord",
    "DatasetRecord",
    "Registry",
    "RegistryError",
    "recording",
    "record",
    "current_records",
    "register_model",
    "register_dataset",
    "registered_models",
    "registered_datasets",
    "open_registry",
    "close_registry",
]


class RegistryError(HarnessError, ValueError):
    """A model or data set registered twice under one name with different details."""


def _json_float(x: float | None) -> float | None:
    """A float for JSON: None stays None, NaN and +-inf become None (JSON has no such numbers)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


EVIDENCE_KINDS: tuple[str, ...] = ("estimate", "exact")

# An interval narrower than this fraction of its magnitude has zero width: about 8 float32 ulps,
# the rounding of the arithmetic that produced it, not sampling variation. A bootstrap whose every
# resample gives the same value up to rounding (near-constant data, a discrete statistic that
# never moves) says nothing about how uncertain an effect is.
ZERO_WIDTH_RTOL = 1e-6


def zero_width(ci_low: float | None, ci_high: float | None) -> bool:
    """Whether the interval [ci_low, ci_high] has zero width up to rounding:
    ``ci_high - ci_low <= ZERO_WIDTH_RTOL * max(|ci_low|, |ci_high|)`` (so [0, 0] and [3.92, 3.92]
    do, [3.9199999, 3.9200001] does too, [0, 1e-9] does not). False for a missing or non-finite bound.

    Example::

        zero_width(3.919999917, 3.920000378)   # True: a width of 4.6e-07 on 3.92
    """
    if ci_low is None or ci_high is None:
        return False
    lo, hi = float(ci_low), float(ci_high)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return False
    return hi - lo <= ZERO_WIDTH_RTOL * max(abs(lo), abs(hi))


@dataclass(frozen=True)
class Evidence:
    """One judgement a claim made: what was measured, what it was held to, and whether it held.

    Example::

        Evidence.from_estimate(est, expectation="ci_excludes(0)", held=True)

    `kind` says what the numbers are. ``"estimate"``: they copy an `Estimate` (a value and its
    confidence interval at `level`). ``"exact"``: a value computed exactly and compared with
    `expected` within an absolute `tolerance` (``expect(values).equals(1.0, tol=1e-6)``); `value`
    is the measured value farthest from its expected value, `deviation` that largest absolute
    deviation, `n` the number of values compared, ``ci_low == ci_high == value`` and `level` 1.0
    (there is no interval). `expected`, `tolerance` and `deviation` are None for an estimate.

    `expectation` says what it was held to (``"ci_excludes(0)"``, ``"within(-0.1, 0.1)"``,
    ``"equals(1, tol=1e-06)"``) and `held` whether it passed. A degenerate judgement (a
    degenerate estimate, too few examples, an effect judged on a zero-width CI) has
    ``status="degenerate"``, a `reason`, and never ``held=True``.
    """

    statistic: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    level: float
    n: int
    method: str
    unit: str
    site: str | None
    seed: int | None
    fingerprint: str | None
    expectation: str
    held: bool
    status: str = "ok"
    reason: str = ""
    resamples: int | None = None
    kind: str = "estimate"
    expected: float | None = None
    tolerance: float | None = None
    deviation: float | None = None

    @property
    def exact(self) -> bool:
        """Whether this is the evidence of an exact comparison (kind ``"exact"``)."""
        return self.kind == "exact"

    @classmethod
    def from_estimate(cls, est: "Estimate", *, expectation: str, held: bool) -> "Evidence":
        """The evidence of judging `est` against `expectation` (``held`` is the verdict)."""
        if not isinstance(expectation, str) or not expectation:
            raise TypeError(
                f"`expectation` must be a non-empty string such as 'ci_excludes(0)', "
                f"got {expectation!r}"
            )
        if not isinstance(held, bool):
            raise TypeError(f"`held` must be True or False, got {held!r}")
        seed = getattr(est, "seed", None)
        return cls(
            statistic=str(getattr(est, "statistic", "") or ""),
            value=_maybe_float(est.value),
            ci_low=_maybe_float(est.ci_low),
            ci_high=_maybe_float(est.ci_high),
            level=float(est.level),
            n=int(est.n),
            method=str(est.method),
            unit=str(getattr(est, "unit", "examples")),
            site=_maybe_str(getattr(est, "site", None)),
            seed=None if seed is None else int(seed),
            fingerprint=_maybe_str(getattr(est, "fingerprint", None)),
            expectation=expectation,
            held=held,
            status=str(getattr(est, "status", "ok")),
            reason=str(getattr(est, "reason", "") or ""),
            resamples=getattr(est, "resamples", None),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe fields, in schema order (non-finite numbers become None). `kind`,
        `expected`, `tolerance` and `deviation` are written for an exact comparison only: the
        evidence of an estimate reads as before (`from_dict` takes their absence as an estimate)."""
        out = dataclasses.asdict(self)
        if not self.exact:
            for key in _EXACT_FIELDS:
                del out[key]
        for key in ("value", "ci_low", "ci_high", *(k for k in _EXACT_FIELDS[1:] if k in out)):
            out[key] = _json_float(out[key])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Evidence":
        """The inverse of `to_dict`; `data` must hold every field (see `harness.reports.report.read_report`)."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data or
                      f.default is dataclasses.MISSING})


_EXACT_FIELDS = ("kind", "expected", "tolerance", "deviation")


def _maybe_float(x: Any) -> float | None:
    return None if x is None else float(x)


def _maybe_str(x: Any) -> str | None:
    return None if x is None else str(x)


# ---------------------------------------------------------------------------------------------
# The recorder: a context variable holding the running test's evidence list.

_CURRENT: contextvars.ContextVar[list[Evidence] | None] = contextvars.ContextVar(
    "harness_evidence_records", default=None
)


@contextlib.contextmanager
def recording() -> Iterator[list[Evidence]]:
    """Collect every `record(...)` made inside the block into the yielded list.

    Example::

        with recording() as records:
            expect(est).positive()
        records[0].held   # True

    Recorders nest: an inner block collects its own records and the outer one resumes after.
    """
    records: list[Evidence] = []
    token = _CURRENT.set(records)
    try:
        yield records
    finally:
        _CURRENT.reset(token)


def record(evidence: Evidence) -> None:
    """Append `evidence` to the running recorder; outside any recorder, do nothing."""
    if not isinstance(evidence, Evidence):
        raise TypeError(
            f"record() takes an Evidence, got {type(evidence).__name__} {evidence!r}; "
            "build one with Evidence.from_estimate(est, expectation=..., held=...)"
        )
    records = _CURRENT.get()
    if records is not None:
        records.append(evidence)


def current_records() -> tuple[Evidence, ...] | None:
    """The running recorder's records so far, or None outside a recorder."""
    records = _CURRENT.get()
    return None if records is None else tuple(records)


# ---------------------------------------------------------------------------------------------
# The session registry: which models and data sets the study used.


@dataclass(frozen=True)
class ModelRecord:
    """A model the study loaded: its name in the study, the spec it was loaded from, the
    fingerprint of its weights and config, where it ran, and its source (what the spec resolved
    to: ``fixture: /cache/...``, ``directory: /models/x``, ``hub: org/name``)."""

    name: str
    spec: str
    fingerprint: str
    device: str
    dtype: str
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class DatasetRecord:
    """A data set the study read: its name, where it came from, and a hash of its content."""

    name: str
    path: str
    content_hash: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Registry:
    """Models and data sets registered during one session (insertion-ordered by name)."""

    def __init__(self) -> None:
        self._models: dict[str, ModelRecord] = {}
        self._datasets: dict[str, DatasetRecord] = {}

    def add_model(self, rec: ModelRecord) -> ModelRecord:
        return _add(self._models, rec, kind="model", option="--claims-model")

    def add_dataset(self, rec: DatasetRecord) -> DatasetRecord:
        return _add(self._datasets, rec, kind="data set", option="--claims-data")

    def models(self) -> tuple[ModelRecord, ...]:
        return tuple(self._models.values())

    def datasets(self) -> tuple[DatasetRecord, ...]:
        return tuple(self._datasets.values())


def _add(table: dict[str, Any], rec: Any, *, kind: str, option: str) -> Any:
    old = table.get(rec.name)
    if old is None:
        table[rec.name] = rec
        return rec
    if old == rec:
        return old
    diffs = ", ".join(
        f"{f.name}={getattr(old, f.name)!r} -> {getattr(rec, f.name)!r}"
        for f in dataclasses.fields(rec)
        if getattr(old, f.name) != getattr(rec, f.name)
    )
    raise RegistryError(
        f"{kind} {rec.name!r} is already registered in this session with different details "
        f"({diffs}); register each name once per session, give the second one its own name, "
        f"or choose the {kind} for the whole run with {option} {rec.name}=..."
    )


_REGISTRIES: list[Registry] = [Registry()]  # the bottom one serves notebooks and scripts


def open_registry() -> Registry:
    """Start a fresh registry (the plugin calls this at session start) and make it current."""
    reg = Registry()
    _REGISTRIES.append(reg)
    return reg


def close_registry(registry: Registry) -> None:
    """End `registry` (and any opened after it and left open); the one before becomes current."""
    for i in range(len(_REGISTRIES) - 1, 0, -1):
        if _REGISTRIES[i] is registry:
            del _REGISTRIES[i:]
            return


def _check_str(arg: str, value: Any, example: str) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"`{arg}` must be a non-empty string such as {example!r}, got {value!r}")
    return value


def register_model(name: str, *, spec: str, fingerprint: str, device: str, dtype: str,
                   source: str = "") -> ModelRecord:
    """Record that the study uses model `name`, for the report header.

    Example::

        register_model("tacgen", spec="fixture:tacgen", fingerprint="3f2a9c...",
                       device="cpu", dtype="float32")

    Registering the same name again with the same details is a no-op; different details raise
    `RegistryError`.
    """
    rec = ModelRecord(
        name=_check_str("name", name, "tacgen"),
        spec=_check_str("spec", spec, "fixture:tacgen"),
        fingerprint=_check_str("fingerprint", fingerprint, "3f2a9c0d1e"),
        device=_check_str("device", str(device) if device is not None else device, "cpu"),
        dtype=_check_str("dtype", str(dtype) if dtype is not None else dtype, "float32"),
        source=str(source),
    )
    return _REGISTRIES[-1].add_model(rec)


def register_dataset(name: str, *, path: str, content_hash: str) -> DatasetRecord:
    """Record that the study reads data set `name` (from `path`, with `content_hash`).

    Example::

        register_dataset("mbpp", path="data/mbpp.jsonl", content_hash="sha256:9b1c...")
    """
    rec = DatasetRecord(
        name=_check_str("name", name, "mbpp"),
        path=_check_str("path", str(path) if path is not None else path, "data/mbpp.jsonl"),
        content_hash=_check_str("content_hash", content_hash, "sha256:9b1c..."),
    )
    return _REGISTRIES[-1].add_dataset(rec)


def registered_models() -> tuple[ModelRecord, ...]:
    """The models registered in the current registry, in registration order."""
    return _REGISTRIES[-1].models()


def registered_datasets() -> tuple[DatasetRecord, ...]:
    """The data sets registered in the current registry, in registration order."""
    return _REGISTRIES[-1].datasets()
