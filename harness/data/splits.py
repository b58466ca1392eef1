"""Generic data code: class-balanced sets, seeded stratified splits and content hashes of labelled rows.

    balanced(rows, n=, seed=)        a class-balanced seeded sample
    first_balanced(rows, n)          the first n rows, half of each class where possible (test500, test200)
    Split, split(rows, ...)          a seeded, stratified train/test split with a content hash per part
    save_split / load_split          the split as JSON; loading verifies the hashes
    content_hash(obj)                sha256 of an object's canonical JSON
    register_rows(classes=, labelled_by=)   declares a data set's row type (see below)

Nothing here knows a data set. A row is a frozen dataclass with a ``label`` field; its data set
module registers the type once, naming the classes in the fixed order that sampling and
splitting follow and the function that labels raw rows (named in errors)::

    @register_rows(classes=("intro", "apply"), labelled_by="intro_apply_rows")
    @dataclass(frozen=True)
    class TacticRow: ...

The functions read the classes from the rows' type, and `load_split` rebuilds each saved row
as the registered type whose fields it has. Everything is plain Python (no torch): randomness
is an explicit ``seed``, and the same inputs and seed give the same rows in the same order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.errors import DataError

__all__ = [
    "balanced", "first_balanced", "Split", "split", "save_split", "load_split", "content_hash",
    "register_rows",
]

SPLIT_FORMAT = "interp-claims/split"


# --------------------------------------------------------------------------- row types


@dataclass(frozen=True)
class _Labels:
    classes: tuple[str, ...]
    labelled_by: str


_ROW_TYPES: dict[type, _Labels] = {}


def register_rows(*, classes: Sequence[str], labelled_by: str) -> Callable[[type], type]:
    """Class decorator declaring a data set's row type: its labels and how rows get them.

    Example::

        @register_rows(classes=("intro", "apply"), labelled_by="intro_apply_rows")
        @dataclass(frozen=True)
        class TacticRow: ...

    ``classes`` is the fixed class order (sampling and splitting go class by class in it);
    ``labelled_by`` names the function that sets ``label``, for the error an unlabelled row gives.
    """
    classes = tuple(classes)
    if len(classes) < 2 or len(set(classes)) != len(classes) or not all(isinstance(c, str) for c in classes):
        raise DataError(f"`classes` must be two or more distinct strings, got {classes!r}")

    def register(cls: type) -> type:
        if not (is_dataclass(cls) and "label" in {f.name for f in dataclasses.fields(cls)}):
            raise DataError(f"{cls.__name__} is not a dataclass with a `label` field; a row type is a "
                            "frozen dataclass whose `label` holds one of `classes` once labelled")
        _ROW_TYPES[cls] = _Labels(classes, labelled_by)
        return cls

    return register


def _labels_of(rows: Sequence[Any], what: str) -> _Labels:
    kind = type(rows[0])
    for cls in kind.__mro__:
        if cls in _ROW_TYPES:
            return _ROW_TYPES[cls]
    known = ", ".join(c.__name__ for c in _ROW_TYPES) or "none"
    raise DataError(f"row 0 of `{what}` is a {kind.__name__}, not a registered row type ({known}); pass "
                    "rows of a data set module, or declare the type with register_rows(...)")


def _by_class(rows: Sequence[Any], what: str) -> tuple[tuple[str, ...], dict[str, list[Any]]]:
    if not rows:
        return (), {}
    labels = _labels_of(rows, what)
    groups: dict[str, list[Any]] = {c: [] for c in labels.classes}
    for i, row in enumerate(rows):
        if row.label not in groups:
            raise DataError(f"row {i} of `{what}` has label {row.label!r}; every row needs a label in "
                            f"{list(labels.classes)} (pass the rows through {labels.labelled_by} first)")
        groups[row.label].append(row)
    return labels.classes, groups


def _counts(groups: dict[str, list[Any]]) -> str:
    return ", ".join(f"{k}: {len(v)}" for k, v in groups.items())


# --------------------------------------------------------------------------- balanced sets


def balanced(rows: Sequence[Any], *, n: int = 5000, seed: int) -> list[Any]:
    """``n // 2`` rows of each class, drawn without replacement with `seed`, in shuffled order.

    Example::

        data = balanced(intro_apply_rows(rows), n=5000, seed=0)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2 or n % 2:
        raise DataError(f"`n` must be a positive even integer (half of each class), got {n!r}")
    rows = list(rows)
    half = n // 2
    if not rows:
        raise DataError(f"`n`={n} needs {half} rows of each class but `rows` is empty; supply labelled rows")
    classes, groups = _by_class(rows, "rows")
    for c in classes:
        if len(groups[c]) < half:
            most = 2 * min(len(g) for g in groups.values())
            raise DataError(
                f"`n`={n} needs {half} {c!r} rows but `rows` has only {len(groups[c])} "
                f"({_counts(groups)}); lower `n` to at most {most} or supply more data"
            )
    rng = random.Random(seed)
    picked = [row for c in classes for row in rng.sample(groups[c], half)]
    rng.shuffle(picked)
    return picked


def first_balanced(rows: Sequence[Any], n: int) -> list[Any]:
    """The first ``n`` rows with half of each class where possible, in their original order.

    Example::

        test500 = first_balanced(parts.test, 500)

    Takes the first ``n // 2`` rows of each class (the first class gets the odd one); when a
    class has fewer, the other classes fill the rest (so the slice still has
    ``min(n, len(rows))`` rows).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError(f"`n` must be a positive integer, got {n!r}")
    rows = list(rows)
    classes, groups = _by_class(rows, "rows")
    want = {c: min(len(groups[c]), n // 2 + (n % 2 if c == classes[0] else 0)) for c in classes}
    short = n - sum(want.values())
    for c in classes:  # fill from the class that has more
        extra = min(short, len(groups[c]) - want[c])
        want[c] += extra
        short -= extra
    out = []
    for row in rows:
        if want[row.label] > 0:
            want[row.label] -= 1
            out.append(row)
    return out


# --------------------------------------------------------------------------- hashes


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise DataError(f"`obj` holds a {type(obj).__name__} ({obj!r:.60}), which has no canonical JSON; "
                    "pass dataclasses, dicts, lists, strings and numbers")


def content_hash(obj: Any) -> str:
    """sha256 (hex) of ``obj``'s canonical JSON: sorted keys, tuples as lists, dataclasses as dicts.

    Example::

        content_hash(parts.test)   # the same rows in the same order give the same hash
    """
    text = json.dumps(_jsonable(obj), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- splits


@dataclass(frozen=True)
class Split:
    """A seeded train/test split of labelled rows, with the content hash of each part.

    Example::

        parts = split(data, test_fraction=0.2, seed=0)
        parts.train, parts.test, parts.test500, parts.hashes["test"]
    """

    train: tuple[Any, ...]
    test: tuple[Any, ...]
    seed: int
    test_fraction: float
    hashes: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def test500(self) -> list[Any]:
        """The first 500 test rows, balanced where possible (the source study's test500)."""
        return first_balanced(self.test, 500)

    @property
    def test200(self) -> list[Any]:
        """The first 200 test rows, balanced where possible (the source study's test200)."""
        return first_balanced(self.test, 200)

    def part(self, name: str) -> list[Any]:
        """A part by name: ``train``, ``test``, ``test500`` or ``test200``."""
        parts = {"train": list(self.train), "test": list(self.test)}
        if name in parts:
            return parts[name]
        if name in ("test500", "test200"):
            return getattr(self, name)
        raise DataError(f"`name` must be one of ['train', 'test', 'test500', 'test200'], got {name!r}")


def _check_classes(rows: Sequence[Any], part: str, classes: tuple[str, ...]) -> None:
    groups = {c: [r for r in rows if r.label == c] for c in classes}
    for c in classes:
        if not groups[c]:
            raise DataError(
                f"the {part} part has no {c!r} rows ({_counts(groups)}); "
                f"every part needs both classes: supply {c!r} rows or change `test_fraction`"
            )


def split(rows: Sequence[Any], *, test_fraction: float = 0.2, seed: int) -> Split:
    """A stratified, seeded train/test split: each class keeps its share in both parts.

    Example::

        parts = split(balanced(rows, n=5000, seed=0), test_fraction=0.2, seed=0)

    Each class is shuffled with `seed` (class by class, in the row type's class order) and its
    first ``round(test_fraction * size)`` rows go to test; each part is then shuffled (seeded).
    A part that would miss a class is an error.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise DataError(f"`test_fraction` must be a number strictly between 0 and 1, got {test_fraction!r}")
    rows = list(rows)
    if not rows:
        labellers = " or ".join(labels.labelled_by for labels in _ROW_TYPES.values()) or "a data set module"
        raise DataError(f"`rows` is empty; pass labelled rows (from {labellers})")
    classes, groups = _by_class(rows, "rows")
    for c in classes:
        if not groups[c]:
            raise DataError(f"`rows` has no {c!r} rows ({_counts(groups)}); "
                            f"a split needs both classes: supply {c!r} rows")
    rng = random.Random(seed)
    train: list[Any] = []
    test: list[Any] = []
    for c in classes:
        group = groups[c][:]
        rng.shuffle(group)
        k = round(test_fraction * len(group))
        test.extend(group[:k])
        train.extend(group[k:])
    rng.shuffle(train)
    rng.shuffle(test)
    _check_classes(train, "train", classes)
    _check_classes(test, "test", classes)
    return Split(tuple(train), tuple(test), seed, float(test_fraction),
                 {"train": content_hash(train), "test": content_hash(test)})


def save_split(parts: Split, path: str | Path) -> Path:
    """Write a split as JSON (rows, seed, fraction, and the content hash of each part).

    Example::

        save_split(parts, "reports/tacgen/split.json")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"format": SPLIT_FORMAT, "version": 1, "seed": parts.seed, "test_fraction": parts.test_fraction}
    for name in ("train", "test"):
        rows = list(getattr(parts, name))
        doc[name] = {"hash": content_hash(rows), "rows": _jsonable(rows)}
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def _row_from(record: Any) -> Any:
    """The saved row ``record`` as the first registered row type that takes its fields."""
    error: TypeError | None = None
    for cls in _ROW_TYPES:
        try:
            return cls(**record)
        except TypeError as err:
            error = err
    raise error or TypeError("no row type is registered (import the data set's module)")


def load_split(path: str | Path) -> Split:
    """Read a split written by `save_split`, verifying each part's content hash.

    Example::

        parts = load_split("reports/tacgen/split.json")
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file `path` {str(path)!r} does not exist; write one with "
                        "save_split(split(rows, seed=...), path)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"split file {str(path)!r} is not JSON ({err}); rewrite it with save_split") from None
    if not isinstance(doc, dict) or doc.get("format") != SPLIT_FORMAT:
        raise DataError(f"`path` {str(path)!r} is not a split file written by save_split (no "
                        f"'format': {SPLIT_FORMAT!r}); rewrite it with save_split")
    parts: dict[str, list[Any]] = {}
    for name in ("train", "test"):
        try:
            rows = [_row_from(r) for r in doc[name]["rows"]]
            recorded = doc[name]["hash"]
        except (KeyError, TypeError) as err:
            raise DataError(f"split file {str(path)!r} has a malformed {name!r} part ({err!r}); "
                            "rewrite it with save_split") from None
        actual = content_hash(rows)
        if actual != recorded:
            raise DataError(
                f"split file {str(path)!r}: the {name!r} part hashes to {actual[:12]}… but the file "
                f"records {str(recorded)[:12]}…; the rows were edited or corrupted. Rebuild the split "
                "(split(...) then save_split) rather than editing it"
            )
        parts[name] = rows
    return Split(tuple(parts["train"]), tuple(parts["test"]), int(doc["seed"]), float(doc["test_fraction"]),
                 {n: content_hash(r) for n, r in parts.items()})
