"""Study data: LeanDojo Benchmark 4 readers, intro/apply rows, balanced sets, seeded splits, goal spans.

    read_leandojo(path)              (state_before, tactic) rows of a LeanDojo JSON file or benchmark folder
    rows_from_theorems(theorems)     the same rows from already-loaded theorems
    TacticRow                        one row: state, tactic, theorem, index (and a label once labelled)
    intro_apply_rows(rows)           rows whose tactic is an ``intro`` or an ``apply``, labelled
    balanced(rows, n=, seed=)        a class-balanced seeded sample
    Split, split(rows, ...)          a seeded, stratified train/test split with a content hash per part
    save_split / load_split          the split as JSON; loading verifies the hashes
    first_balanced(rows, n)          the first n rows, half of each class where possible (test500, test200)
    goal_spans(state, ...)           token spans of the context, the goal and the goal's head in ByT5 input
    content_hash(obj)                sha256 of an object's canonical JSON

The pipeline of the intro-vs-apply study::

    rows = intro_apply_rows(read_leandojo("leandojo_benchmark_4/random"))
    parts = split(balanced(rows, n=5000, seed=0), test_fraction=0.2, seed=0)
    save_split(parts, "reports/tacgen/split.json")
    parts.test500, parts.test200

Everything is plain Python (no torch): rows are frozen dataclasses, randomness is an explicit
``seed``, and the same inputs and seed give the same rows in the same order.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness.errors import DataError

__all__ = [
    "TacticRow", "read_leandojo", "rows_from_theorems", "CLASSES", "tactic_class", "intro_apply_rows",
    "balanced", "Split", "split", "save_split", "load_split", "first_balanced",
    "Spans", "goal_spans", "content_hash", "GOAL_MARK", "BYT5_OFFSET",
]

CLASSES = ("intro", "apply")
GOAL_MARK = "⊢"
BYT5_OFFSET = 3  # ByT5 token id = byte value + 3 (ids 0, 1, 2 are <pad>, </s>, <unk>)
BENCHMARK_PARTS = ("train", "val", "test")
SPLIT_FORMAT = "interp-claims/split"


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class TacticRow:
    """One traced tactic: the proof state before it, the tactic, where it comes from.

    ``theorem`` is the theorem's ``full_name`` and ``index`` the tactic's position in its
    ``traced_tactics``; ``label`` is ``"intro"``/``"apply"`` once `intro_apply_rows` labelled it.
    """

    state: str
    tactic: str
    theorem: str
    index: int
    label: str | None = None


def _expected(path: Path, got: str) -> DataError:
    return DataError(
        f"`path` {str(path)!r} is not LeanDojo Benchmark 4 JSON: {got}. Expected a JSON list of "
        "theorems, each with 'full_name' and 'traced_tactics' (a list of objects with 'tactic' and "
        "'state_before'), as in leandojo_benchmark_4/random/train.json; pass such a file or the "
        "benchmark folder"
    )


def rows_from_theorems(theorems: Any, *, source: str | Path = "<theorems>") -> list[TacticRow]:
    """The (state_before, tactic) rows of loaded LeanDojo theorems, in file order.

    Example::

        rows_from_theorems(json.load(open("random/test.json")))
    """
    path = Path(source)
    if not isinstance(theorems, list):
        raise _expected(path, f"the top level is a JSON {type(theorems).__name__}, not a list")
    rows: list[TacticRow] = []
    for i, thm in enumerate(theorems):
        if not isinstance(thm, dict) or "traced_tactics" not in thm or "full_name" not in thm:
            keys = sorted(thm)[:8] if isinstance(thm, dict) else type(thm).__name__
            raise _expected(path, f"item {i} has no 'full_name'/'traced_tactics' (it has {keys})")
        tactics = thm["traced_tactics"]
        if not isinstance(tactics, list):
            raise _expected(path, f"item {i} ({thm['full_name']!r}) has 'traced_tactics' of type "
                                  f"{type(tactics).__name__}, not a list")
        for j, tac in enumerate(tactics):
            if not (isinstance(tac, dict) and isinstance(tac.get("tactic"), str)
                    and isinstance(tac.get("state_before"), str)):
                raise _expected(path, f"traced tactic {j} of {thm['full_name']!r} lacks a string "
                                      "'tactic' or 'state_before'")
            rows.append(TacticRow(state=tac["state_before"], tactic=tac["tactic"],
                                  theorem=str(thm["full_name"]), index=j))
    return rows


def _benchmark_files(path: Path) -> list[Path]:
    folder = path / "random" if (path / "random").is_dir() else path
    files = [folder / f"{part}.json" for part in BENCHMARK_PARTS if (folder / f"{part}.json").is_file()]
    if not files:
        raise DataError(
            f"`path` {str(path)!r} is a folder without train.json, val.json or test.json (nor a "
            "random/ folder holding them); pass the LeanDojo Benchmark 4 folder "
            "(leandojo_benchmark_4 or leandojo_benchmark_4/random) or one of its JSON files"
        )
    return files


def read_leandojo(path: str | Path) -> list[TacticRow]:
    """Every (state_before, tactic) row of a LeanDojo Benchmark 4 file or folder, in order.

    Example::

        rows = read_leandojo("fixtures/tacgen/data/benchmark.json")
        rows = read_leandojo("leandojo_benchmark_4")        # random/{train,val,test}.json, in that order

    A folder is read as ``random/`` (when present) and its ``train.json``, ``val.json`` and
    ``test.json`` concatenated; a missing path or a file in another shape is a `DataError`
    that says what was expected.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(
            f"`path` {str(path)!r} does not exist; pass a LeanDojo Benchmark 4 JSON file "
            "(e.g. leandojo_benchmark_4/random/test.json), its folder, or the shipped "
            "fixtures/tacgen/data/benchmark.json"
        )
    files = _benchmark_files(path) if path.is_dir() else [path]
    rows: list[TacticRow] = []
    for file in files:
        try:
            with open(file, encoding="utf-8") as handle:
                theorems = json.load(handle)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _expected(file, f"it is not UTF-8 JSON ({type(err).__name__}: {err})") from None
        rows.extend(rows_from_theorems(theorems, source=file))
    return rows


# --------------------------------------------------------------------------- labels


_HEAD = re.compile(r"^\s*([^\s;(\[{⟨]+)")
_INTRO_WORDS = {"intro": "intro", "intros": "intro", "apply": "apply"}


def tactic_class(tactic: str, *, rule: str = "word") -> str | None:
    """``"intro"``, ``"apply"`` or None for a tactic string.

    Example::

        tactic_class("intro x hx")      # 'intro'
        tactic_class("apply_fun f at h")  # None (rule="word"); 'apply' with rule="prefix"

    ``rule="word"`` (the default) reads the tactic's first word: ``intro`` and ``intros``
    (``intros`` is ``intro`` for all binders at once; "intro" is a prefix of it, so the score
    ``logP(intro) - logP(apply)`` is consistent with it) count as intro, ``apply`` as apply.
    Other tactics that merely start with those letters are different tactics with their own
    rules and are left out: ``introv``, ``apply?`` (a search, never in human proofs),
    ``apply_fun``, ``apply_rules``, ``apply_assumption``, ``apply_mod_cast``.
    ``rule="prefix"`` takes the source study's wording literally: any tactic whose text begins
    with ``intro`` or ``apply``.
    """
    if rule == "prefix":
        text = tactic.lstrip()
        return next((c for c in CLASSES if text.startswith(c)), None)
    if rule != "word":
        raise DataError(f"`rule` must be 'word' or 'prefix', got {rule!r}")
    m = _HEAD.match(tactic)
    return _INTRO_WORDS.get(m.group(1)) if m else None


def intro_apply_rows(rows: Iterable[TacticRow], *, rule: str = "word") -> list[TacticRow]:
    """The rows whose tactic is an intro or an apply (see `tactic_class`), with ``label`` set.

    Example::

        labelled = intro_apply_rows(read_leandojo(path))
        sum(r.label == "intro" for r in labelled)
    """
    out = []
    for row in rows:
        label = tactic_class(row.tactic, rule=rule)
        if label is not None:
            out.append(TacticRow(row.state, row.tactic, row.theorem, row.index, label))
    return out


def _by_class(rows: Sequence[TacticRow], what: str) -> dict[str, list[TacticRow]]:
    groups: dict[str, list[TacticRow]] = {c: [] for c in CLASSES}
    for i, row in enumerate(rows):
        if row.label not in groups:
            raise DataError(f"row {i} of `{what}` has label {row.label!r}; every row needs a label in "
                            f"{list(CLASSES)} (pass the rows through intro_apply_rows first)")
        groups[row.label].append(row)
    return groups


def balanced(rows: Sequence[TacticRow], *, n: int = 5000, seed: int) -> list[TacticRow]:
    """``n // 2`` rows of each class, drawn without replacement with `seed`, in shuffled order.

    Example::

        data = balanced(intro_apply_rows(rows), n=5000, seed=0)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2 or n % 2:
        raise DataError(f"`n` must be a positive even integer (half of each class), got {n!r}")
    rows = list(rows)
    groups = _by_class(rows, "rows")
    half = n // 2
    for c in CLASSES:
        if len(groups[c]) < half:
            most = 2 * min(len(g) for g in groups.values())
            raise DataError(
                f"`n`={n} needs {half} {c!r} rows but `rows` has only {len(groups[c])} "
                f"({', '.join(f'{k}: {len(v)}' for k, v in groups.items())}); lower `n` to at most "
                f"{most} or supply more data"
            )
    rng = random.Random(seed)
    picked = [row for c in CLASSES for row in rng.sample(groups[c], half)]
    rng.shuffle(picked)
    return picked


def first_balanced(rows: Sequence[TacticRow], n: int) -> list[TacticRow]:
    """The first ``n`` rows with half of each class where possible, in their original order.

    Example::

        test500 = first_balanced(parts.test, 500)

    Takes the first ``n // 2`` rows of each class; when a class has fewer, the other class
    fills the rest (so the slice still has ``min(n, len(rows))`` rows).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError(f"`n` must be a positive integer, got {n!r}")
    rows = list(rows)
    groups = _by_class(rows, "rows")
    want = {c: min(len(groups[c]), n // 2 + (n % 2 if c == CLASSES[0] else 0)) for c in CLASSES}
    short = n - sum(want.values())
    for c in CLASSES:  # fill from the class that has more
        extra = min(short, len(groups[c]) - want[c])
        want[c] += extra
        short -= extra
    out = []
    for row in rows:
        if want[row.label] > 0:
            want[row.label] -= 1
            out.append(row)
    return out


# --------------------------------------------------------------------------- splits


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


@dataclass(frozen=True)
class Split:
    """A seeded train/test split of labelled rows, with the content hash of each part.

    Example::

        parts = split(data, test_fraction=0.2, seed=0)
        parts.train, parts.test, parts.test500, parts.hashes["test"]
    """

    train: tuple[TacticRow, ...]
    test: tuple[TacticRow, ...]
    seed: int
    test_fraction: float
    hashes: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def test500(self) -> list[TacticRow]:
        """The first 500 test rows, balanced where possible (the source study's test500)."""
        return first_balanced(self.test, 500)

    @property
    def test200(self) -> list[TacticRow]:
        """The first 200 test rows, balanced where possible (the source study's test200)."""
        return first_balanced(self.test, 200)

    def part(self, name: str) -> list[TacticRow]:
        """A part by name: ``train``, ``test``, ``test500`` or ``test200``."""
        parts = {"train": list(self.train), "test": list(self.test)}
        if name in parts:
            return parts[name]
        if name in ("test500", "test200"):
            return getattr(self, name)
        raise DataError(f"`name` must be one of ['train', 'test', 'test500', 'test200'], got {name!r}")


def _check_classes(rows: Sequence[TacticRow], part: str) -> None:
    groups = _by_class(rows, part)
    for c in CLASSES:
        if not groups[c]:
            raise DataError(
                f"the {part} part has no {c!r} rows ({', '.join(f'{k}: {len(v)}' for k, v in groups.items())}); "
                f"every part needs both classes: supply {c!r} rows or change `test_fraction`"
            )


def split(rows: Sequence[TacticRow], *, test_fraction: float = 0.2, seed: int) -> Split:
    """A stratified, seeded train/test split: each class keeps its share in both parts.

    Example::

        parts = split(balanced(rows, n=5000, seed=0), test_fraction=0.2, seed=0)

    Each class is shuffled with `seed` and its first ``round(test_fraction * size)`` rows go
    to test; each part is then shuffled (seeded). A part that would miss a class is an error.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise DataError(f"`test_fraction` must be a number strictly between 0 and 1, got {test_fraction!r}")
    rows = list(rows)
    if not rows:
        raise DataError("`rows` is empty; pass labelled rows (intro_apply_rows(read_leandojo(path)))")
    groups = _by_class(rows, "rows")
    for c in CLASSES:
        if not groups[c]:
            raise DataError(f"`rows` has no {c!r} rows ({', '.join(f'{k}: {len(v)}' for k, v in groups.items())}); "
                            f"a split needs both classes: supply {c!r} rows")
    rng = random.Random(seed)
    train: list[TacticRow] = []
    test: list[TacticRow] = []
    for c in CLASSES:
        group = groups[c][:]
        rng.shuffle(group)
        k = round(test_fraction * len(group))
        test.extend(group[:k])
        train.extend(group[k:])
    rng.shuffle(train)
    rng.shuffle(test)
    _check_classes(train, "train")
    _check_classes(test, "test")
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
    parts: dict[str, list[TacticRow]] = {}
    for name in ("train", "test"):
        try:
            rows = [TacticRow(**r) for r in doc[name]["rows"]]
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


# --------------------------------------------------------------------------- goal spans


_SPECIAL = re.compile(r"<pad>|</s>|<unk>|<extra_id_\d+>")


@dataclass(frozen=True)
class Spans:
    """Half-open token spans ``(start, end)`` in a state's ByT5 input (bytes + ``</s>``).

    ``context``: the bytes before the first ``⊢`` (hypotheses, case tag); ``goal``: from that
    ``⊢`` to the end of its goal (the next blank line, or the end of the state); ``goal_head``:
    the first ``head`` bytes of ``goal``; ``length``: the number of input tokens, ``</s>``
    included (its position is ``length - 1``). Spans are clipped to the truncated input, so a
    goal cut off entirely by `max_length` is empty (``start == end``).
    """

    context: tuple[int, int]
    goal: tuple[int, int]
    goal_head: tuple[int, int]
    length: int

    def positions(self, name: str) -> range:
        """The token positions of span ``name`` (``context``, ``goal`` or ``goal_head``)."""
        if name not in ("context", "goal", "goal_head"):
            raise DataError(f"`name` must be 'context', 'goal' or 'goal_head', got {name!r}")
        return range(*getattr(self, name))


def goal_spans(state: str, *, max_length: int | None = 384, head: int = 16) -> Spans:
    """Where the context, the goal and the goal's head lie in the ByT5 tokens of ``state``.

    Example::

        s = goal_spans("h : p → q\\nhp : p\\n⊢ q")
        s.context, s.goal, s.goal_head     # ((0, 19), (19, 24), (19, 24)); s.length == 25

    ByT5 tokens are the UTF-8 bytes (id = byte + 3) with no BOS and ``</s>`` appended, so
    positions are byte offsets; with ``truncation=True, max_length=L`` the tokenizer keeps
    ``L - 1`` bytes and ``</s>``, and the spans are clipped to those bytes. Only the first goal
    of a multi-goal state is the goal; later goals belong to neither span.
    """
    if not isinstance(state, str):
        raise DataError(f"`state` must be a string, got {type(state).__name__}")
    if isinstance(head, bool) or not isinstance(head, int) or head < 1:
        raise DataError(f"`head` must be a positive integer (bytes of the goal), got {head!r}")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2):
        raise DataError(f"`max_length` must be at least 2 (one byte and </s>), got {max_length!r}; "
                        "the source study uses 384")
    special = _SPECIAL.search(state)
    if special:
        raise DataError(f"`state` contains the ByT5 special token {special.group()!r} at character "
                        f"{special.start()}, which the tokenizer reads as one token, so byte offsets "
                        "would not be token positions; remove or escape it")
    mark = state.find(GOAL_MARK)
    if mark < 0:
        raise DataError(f"`state` has no goal line (no {GOAL_MARK!r}): {state[:80]!r}; a proof state "
                        f"lists hypotheses and then '{GOAL_MARK} goal'")
    data = state.encode("utf-8")
    start = len(state[:mark].encode("utf-8"))
    stop = state.find("\n\n", mark)
    end = len(data) if stop < 0 else len(state[:stop].encode("utf-8"))
    kept = len(data) if max_length is None else min(len(data), max_length - 1)

    def clip(a: int, b: int) -> tuple[int, int]:
        return (min(a, kept), min(b, kept))

    return Spans(context=clip(0, start), goal=clip(start, end), goal_head=clip(start, min(end, start + head)),
                 length=kept + 1)
