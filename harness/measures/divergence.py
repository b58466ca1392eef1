"""Divergence of a steered generation from the unsteered (baseline) generation of the same prompt.

    similarity(a, b)     difflib's matching ratio of two sequences, in [0, 1] (1 = identical)
    length_ratio(a, b)   len(b) / len(a): steered length over baseline length
    divergence(...)      both, row by row over a study's generations, as a `Divergence`

Steering studies of code models ask not only whether an edit changes a score but how far it
moves what the model writes: a steered generation identical to the baseline (similarity 1)
means the edit did nothing visible; one that shares little with it (similarity near 0) means it
rewrote the output. The ratio is ``2 * M / (len(a) + len(b))``, where M is the number of
elements in the matching blocks `difflib.SequenceMatcher` finds (Ratcliff & Obershelp's
"gestalt pattern matching", Dr. Dobb's Journal 1988): strings compare character by character,
lists of token ids token by token. Junk heuristics are off (``autojunk=False``): with them on,
difflib ignores any element that makes up more than 1% of a sequence of 200 or more, such as
the space or newline of a long code generation, and the ratio drops for no visible reason
(twenty identical lines of code with one comment line put in front score 0.0 instead of 0.996).

Pure Python, no model: the result is per-row numbers for `harness.stats` (for example
``stats.bootstrap_mean(d.char_similarity, seed=0)``).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.errors import DataError

__all__ = ["similarity", "length_ratio", "Divergence", "divergence"]


def _as_sequence(value: Any, *, name: str) -> str | list[Any]:
    """A str as is; a list, tuple, numpy array or tensor of token ids as a plain list."""
    if isinstance(value, str):
        return value
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        value = value.tolist()  # numpy arrays and torch tensors: compare plain ints
    if isinstance(value, (list, tuple)):
        if any(isinstance(item, (list, tuple)) for item in value):
            raise DataError(
                f"`{name}` must be one sequence (a str, or a flat list of token ids), got a "
                "nested list; pass one row at a time (divergence() takes lists of rows)"
            )
        return list(value)
    raise DataError(
        f"`{name}` must be a str or a list of token ids, got {type(value).__name__} "
        f"({value!r:.60}); pass the generated text or its token ids"
    )


def _check_pair(a: Any, b: Any) -> tuple[str | list[Any], str | list[Any]]:
    sa, sb = _as_sequence(a, name="a"), _as_sequence(b, name="b")
    if isinstance(sa, str) != isinstance(sb, str):
        raise DataError(
            f"`a` and `b` must both be str or both token-id lists, got {type(a).__name__} and "
            f"{type(b).__name__}; compare text with text (character level) or ids with ids "
            "(token level)"
        )
    return sa, sb


def similarity(a: Any, b: Any) -> float:
    """difflib's similarity ratio of two sequences: a float in [0, 1], 1 when they are equal.

    Example::

        similarity("abcd", "abce")          # 0.75: 3 matching characters, 2 * 3 / 8
        similarity([5, 9, 2], [5, 9, 7])    # 0.667 (token ids)

    `a` (the baseline) and `b` (the steered generation) are both strings (compared character
    by character) or both sequences of hashable items such as token ids (a list, tuple,
    numpy array or tensor; compared item by item). ``2 * M / (len(a) + len(b))`` with M the
    size of the matching blocks `difflib.SequenceMatcher(None, a, b, autojunk=False)` finds;
    two empty sequences give 1.0, one empty and one not 0.0.

    Not exactly symmetric: the matcher is greedy, so ``similarity(a, b)`` and
    ``similarity(b, a)`` can differ slightly on sequences with repeated material; keep the
    baseline first. Worst-case time grows with ``len(a) * len(b)`` (milliseconds for
    generations of a few thousand characters). Raises `DataError` for anything that is not a
    str or a flat sequence, or a str compared with a token list.
    """
    sa, sb = _check_pair(a, b)
    return float(difflib.SequenceMatcher(None, sa, sb, autojunk=False).ratio())


def length_ratio(a: Any, b: Any) -> float:
    """``len(b) / len(a)``: the steered generation's length over the baseline's.

    Example::

        length_ratio("abcd", "ab")     # 0.5: the steered text is half as long
        length_ratio([1, 2], [1, 2])   # 1.0

    Lengths are in the sequences' own units (characters of a str, items of a token list).
    When the baseline is empty: 1.0 if the steered generation is empty too (no change), and
    ``inf`` otherwise (a statistic of per-example values treats an inf as a bad value, e.g.
    `harness.stats.bootstrap_mean` returns a degenerate estimate naming how many there are,
    so filter or report those rows; never NaN, so an undefined ratio cannot pass silently
    through a mean). Raises `DataError` as `similarity` does.
    """
    sa, sb = _check_pair(a, b)
    if len(sa) == 0:
        return 1.0 if len(sb) == 0 else math.inf
    return len(sb) / len(sa)


@dataclass(frozen=True)
class Divergence:
    """Per-row divergence of n steered generations from their baselines.

    ``char_similarity`` ``[n]``: `similarity` of the texts, character level, in [0, 1].
    ``token_similarity`` ``[n]``: `similarity` at token level, in [0, 1]: of the token ids when
    `divergence` was given them, else of the texts' whitespace-separated words.
    ``length_ratio`` ``[n]``: steered length over baseline length, in characters (see
    `length_ratio` for an empty baseline: 1.0 or inf).

    All three are read-only float64 numpy arrays in row order; pass one to `harness.stats`,
    e.g. ``stats.bootstrap_mean(d.char_similarity, seed=0)``. Raises `DataError` when built
    from arrays that are not 1-D or not of one length.
    """

    char_similarity: np.ndarray
    token_similarity: np.ndarray
    length_ratio: np.ndarray

    def __post_init__(self) -> None:
        shapes = {name: np.shape(getattr(self, name))
                  for name in ("char_similarity", "token_similarity", "length_ratio")}
        if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 1:
            raise DataError(f"Divergence fields must be 1-D arrays of one length, got shapes {shapes}")
        for name in shapes:
            array = np.array(getattr(self, name), dtype=np.float64)
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    @property
    def n(self) -> int:
        """The number of rows (generation pairs)."""
        return int(self.char_similarity.shape[0])


def _texts(value: Any, *, name: str) -> list[str]:
    if isinstance(value, str):
        raise DataError(
            f"`{name}` must be a list of strings (one generation per row), got a single str "
            f"({value!r:.40}); wrap it in a list"
        )
    try:
        rows = list(value)
    except TypeError:
        raise DataError(
            f"`{name}` must be a list of strings, got {type(value).__name__}; pass one "
            "generated text per row"
        ) from None
    if not rows:
        raise DataError(f"`{name}` is empty; pass at least one generation")
    for i, row in enumerate(rows):
        if not isinstance(row, str):
            raise DataError(
                f"`{name}[{i}]` must be a str, got {type(row).__name__} ({row!r:.40}); pass "
                "the generated text (Generation.text), not the Generation or its ids"
            )
    return rows


def _token_rows(value: Any, *, name: str, n: int) -> list[list[Any]]:
    if isinstance(value, str):
        raise DataError(
            f"`{name}` must be a list of token-id lists (one per row), got a single str; pass "
            "token ids, e.g. [g.ids for g in generations]"
        )
    try:
        rows = list(value)
    except TypeError:
        raise DataError(
            f"`{name}` must be a list of token-id lists, got {type(value).__name__}; pass one "
            "sequence of token ids per row"
        ) from None
    if len(rows) != n:
        raise DataError(
            f"`{name}` has {len(rows)} rows but the texts have {n}; pass the token ids of the "
            "same generations, in the same order"
        )
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, str):
            raise DataError(
                f"`{name}[{i}]` must be a list of token ids, got a str ({row!r:.40}); pass "
                "token ids, or leave both token arguments None to compare words"
            )
        sequence = _as_sequence(row, name=f"{name}[{i}]")
        assert not isinstance(sequence, str)
        out.append(sequence)
    return out


def divergence(
    baseline_texts: Sequence[str],
    steered_texts: Sequence[str],
    *,
    baseline_tokens: Sequence[Sequence[int]] | None = None,
    steered_tokens: Sequence[Sequence[int]] | None = None,
) -> Divergence:
    """Row-by-row divergence of steered generations from their baselines.

    Example::

        base = generate(model, prompts, stop=[END_OF_FUNCTION])
        steered = generate(model, prompts, interventions={site: Add(d, alpha=4.0)},
                           stop=[END_OF_FUNCTION])
        d = divergence([g.text for g in base], [g.text for g in steered])
        stats.bootstrap_mean(1.0 - d.char_similarity, seed=0)   # mean divergence, with a CI

    `baseline_texts` and `steered_texts` are lists of n strings; row i of each comes from the
    same prompt. `baseline_tokens` and `steered_tokens` (give both or neither) are lists of n
    token-id sequences of those generations, unpadded; with them, ``token_similarity`` compares
    token ids. Without them it compares whitespace-separated words (``text.split()``), a
    tokenizer-free token level that ignores changes in whitespace alone. Token ids should
    cover the same span as the texts: `Generation.ids` also holds the end-of-sequence token and
    the tokens that made a stop, which the text drops, so re-tokenize the text (or cut the ids)
    when that matters. ``length_ratio`` is in characters. Returns a `Divergence` of ``[n]``
    arrays.

    Raises `DataError` naming the argument: a single str instead of a list, an empty list, a
    row that is not a str, texts of different lengths, only one of the two token arguments,
    or token lists whose row count differs from the texts'.
    """
    base = _texts(baseline_texts, name="baseline_texts")
    steered = _texts(steered_texts, name="steered_texts")
    if len(base) != len(steered):
        raise DataError(
            f"`steered_texts` has {len(steered)} rows but `baseline_texts` has {len(base)}; "
            "pass one steered generation per baseline generation, in the same order"
        )
    if (baseline_tokens is None) != (steered_tokens is None):
        given, missing = (("baseline_tokens", "steered_tokens") if steered_tokens is None
                          else ("steered_tokens", "baseline_tokens"))
        raise DataError(
            f"`{missing}` is None but `{given}` was given; pass both token lists (token-level "
            "similarity of ids) or neither (similarity of whitespace-separated words)"
        )
    n = len(base)
    if baseline_tokens is None:
        base_tok: list[Any] = [text.split() for text in base]
        steered_tok: list[Any] = [text.split() for text in steered]
    else:
        base_tok = _token_rows(baseline_tokens, name="baseline_tokens", n=n)
        steered_tok = _token_rows(steered_tokens, name="steered_tokens", n=n)
    return Divergence(
        char_similarity=np.array([similarity(a, b) for a, b in zip(base, steered)]),
        token_similarity=np.array([similarity(a, b) for a, b in zip(base_tok, steered_tok)]),
        length_ratio=np.array([length_ratio(a, b) for a, b in zip(base, steered)]),
    )
