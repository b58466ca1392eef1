"""LeanDojo Benchmark 4: the reader, intro/apply labels and goal spans in ByT5 input.

    read_leandojo(path)              (state_before, tactic) rows of a LeanDojo JSON file or benchmark folder
    rows_from_theorems(theorems)     the same rows from already-loaded theorems
    TacticRow                        one row: state, tactic, theorem, index (and a label once labelled)
    tactic_class(tactic, rule=)      "intro", "apply" or None for a tactic string
    intro_apply_rows(rows)           rows whose tactic is an ``intro`` or an ``apply``, labelled
    CLASSES                          ("intro", "apply"), the class order sampling and splitting follow
    goal_spans(state, ...)           token spans of the context, the goal and the goal's head in ByT5 input
    Spans, GOAL_MARK, BYT5_OFFSET    the spans, the goal mark ``⊢``, ByT5's byte-to-id offset

Balancing, splitting and hashing are generic and live in `harness.data.splits`; `TacticRow` is
registered there (`register_rows`) with its classes. The pipeline of the intro-vs-apply study::

    rows = intro_apply_rows(read_leandojo("leandojo_benchmark_4/random"))
    parts = split(balanced(rows, n=5000, seed=0), test_fraction=0.2, seed=0)
    save_split(parts, "reports/tacgen/split.json")
    parts.test500, parts.test200

Everything is plain Python (no torch): rows are frozen dataclasses, and the same inputs give the
same rows in the same order.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from harness.data.splits import register_rows
from harness.errors import DataError

__all__ = [
    "TacticRow", "read_leandojo", "rows_from_theorems", "CLASSES", "tactic_class", "intro_apply_rows",
    "Spans", "goal_spans", "GOAL_MARK", "BYT5_OFFSET",
]

CLASSES = ("intro", "apply")
GOAL_MARK = "⊢"
BYT5_OFFSET = 3  # ByT5 token id = byte value + 3 (ids 0, 1, 2 are <pad>, </s>, <unk>)
BENCHMARK_PARTS = ("train", "val", "test")


# --------------------------------------------------------------------------- rows


@register_rows(classes=CLASSES, labelled_by="intro_apply_rows")
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
