"""Python programs: the code in a model's completion, its cyclomatic complexity, selection by it.

    extract_code(generation, stop=)      the code of a model's completion (fences, stop sequences, trailing
                                         prose and example calls removed; imports and helpers kept)
    complexity(code)                     radon's total cyclomatic complexity of a program (module code included)
    by_complexity(problems, ...)         a seeded selection of MBPP problems stratified by the complexity of
                                         their code (`harness.data.strata.stratified_sample`)
    COMPLEXITY_EDGES                     (1, 2, 3, 4, 6, inf): strata 1 | 2 | 3 | 4-5 | 6+

Complexity is McCabe's (1976) cyclomatic complexity as radon computes it
(https://radon.readthedocs.io, `radon.visitors.ComplexityVisitor`): 1 + the decision points of
the whole program. ``radon.complexity.cc_visit`` reports functions and classes only and so misses
decisions in module-level code; `complexity` counts them. A selection ranks each stratum's rows
by a blake2b hash of (seed, key), so it depends on the seed and on the set of rows, not on
their order (as `harness.measures.directions` ranks rows). Plain Python (no torch).
"""

from __future__ import annotations

import ast
import math
import re
import textwrap
import warnings
from typing import Any, Sequence

from harness.data.strata import stratified_sample
from harness.errors import DataError

__all__ = ["extract_code", "complexity", "by_complexity", "COMPLEXITY_EDGES", "STOP"]

COMPLEXITY_EDGES = (1, 2, 3, 4, 6, math.inf)
STOP = ("[DONE]",)
_FENCE = re.compile(r"^[ \t]*```[\w+.-]*[ \t]*\n(.*?)(?:^[ \t]*```|\Z)", re.M | re.S)
_DEF = r"(?:async[ \t]+def|def|class)[ \t]"
_IMPORT = r"(?:import[ \t]+[\w.]|from[ \t]+[\w.]+[ \t]+import\b)"
_ASSIGN = r"[A-Za-z_][\w.]*(?:[ \t]*,[ \t]*[A-Za-z_][\w.]*)*[ \t]*(?::[ \t]*[\w.\[\], ]+)?[ \t]*=(?!=)"
_START = re.compile(rf"(?:{_DEF}|{_IMPORT}|@|#|{_ASSIGN})")      # a line that can open the program
_CODE = re.compile(rf"(?:{_DEF}|{_IMPORT}|@|#|{_ASSIGN}|[)\]}}])")  # column-0 lines kept inside it


def _parse(code: str) -> ast.Module:
    with warnings.catch_warnings():  # e.g. an invalid escape such as "\d" in a non-raw regex string
        warnings.simplefilter("ignore", (SyntaxWarning, DeprecationWarning))
        return ast.parse(code)


def _parses(lines: Sequence[str]) -> bool:
    try:
        _parse("\n".join(lines))
    except (SyntaxError, ValueError):
        return False
    return True


def _drop_trailing_statements(lines: list[str]) -> list[str]:
    """Remove top-level statements after the last def/class, except imports (example calls, prints)."""
    body = _parse("\n".join(lines)).body
    last = max((i for i, node in enumerate(body)
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))), default=None)
    if last is None:
        return lines
    drop = set()
    for node in body[last + 1:]:
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            drop.update(range(node.lineno - 1, node.end_lineno))
    return [line for i, line in enumerate(lines) if i not in drop]


def extract_code(generation: str, *, stop: Sequence[str] = STOP) -> str:
    """The program in a model's completion of an MBPP prompt.

    Example::

        extract_code("Here you go:\\n```python\\nimport math\\ndef f(x):\\n    return math.sqrt(x)\\n```\\n"
                     "This uses math.sqrt.")          # 'import math\\ndef f(x):\\n    return math.sqrt(x)'
        extract_code("def f(x):\\n    return x\\n[DONE]\\nYou are an expert ...")   # 'def f(x):\\n    return x'

    In order: line endings become ``\\n``; the text is cut at the first of the ``stop`` sequences
    (``[DONE]``, the MBPP prompt's end marker, by default); when it holds a markdown fence, the first
    fenced block that defines a function is kept (else the first block; an unclosed fence runs
    to the end), dedented. The program starts at the first line at column 0 that opens code
    (``def``, ``class``, ``import``/``from ... import``, a decorator, a comment or an assignment
    such as a constant), so leading prose goes, and ends at the first later column-0 line that
    is none of these (nor a closing bracket) and where the lines so far parse: an ``assert``, a
    ``print``, ``if __name__``, prose. Top-level statements after the last def/class other than
    imports (example calls) are removed. Imports, constants and helper functions stay. When no
    line opens code, the stripped text is returned as it is, so running it reports what it is.
    """
    if not isinstance(generation, str):
        raise DataError(f"`generation` must be a string, got {type(generation).__name__}")
    if isinstance(stop, str):
        raise DataError(f"`stop` must be a sequence of strings, got the single string {stop!r}; "
                        f"write stop=({stop!r},)")
    text = generation.replace("\r\n", "\n").replace("\r", "\n")
    cuts = [i for s in stop if s and (i := text.find(s)) >= 0]
    text = text[:min(cuts)] if cuts else text
    blocks = [m.group(1) for m in _FENCE.finditer(text)]
    if blocks:
        text = textwrap.dedent(next((b for b in blocks if re.search(rf"^[ \t]*{_DEF}", b, re.M)), blocks[0]))
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if _START.match(line)), None)
    if start is None:
        return text.strip()
    ends = [i for i in range(start + 1, len(lines))
            if lines[i][:1] not in ("", " ", "\t") and not _CODE.match(lines[i])] + [len(lines)]
    end = next((e for e in ends if _parses(lines[start:e])), ends[0])
    kept = [line.rstrip() for line in lines[start:end]]
    if _parses(kept):
        kept = _drop_trailing_statements(kept)
    return "\n".join(kept).strip("\n")


def complexity(code: str) -> int:
    """Total cyclomatic complexity of ``code`` (1 + its decision points, module level included).

    Example::

        complexity("def f(x):\\n    return 1 if x else 2")           # 2
        complexity("T = [i for i in range(9) if i % 3]\\ndef f(x):\\n    return x in T")   # 3

    ``radon.visitors.ComplexityVisitor.from_code(code).total_complexity`` (parsed with warnings about
    invalid escapes such as ``"\\d"`` silenced; several MBPP solutions have them): a function with radon
    complexity c and nothing else gives c; decisions at module level (a comprehension with a
    condition building a table) count too, unlike in ``radon.complexity.cc_visit``, which lists
    functions and classes only. Raises `DataError` when ``code`` is not valid Python 3.
    """
    from radon.visitors import ComplexityVisitor  # lazy: importing harness.data stays light

    if not isinstance(code, str):
        raise DataError(f"`code` must be a string, got {type(code).__name__}")
    try:
        return int(ComplexityVisitor.from_ast(_parse(code)).total_complexity)
    except (SyntaxError, ValueError) as err:
        raise DataError(f"`code` is not valid Python ({type(err).__name__}: {err}); its complexity is "
                        f"undefined. Code starts: {code[:80]!r}") from None


def by_complexity(problems: Sequence[Any], *, seed: int, edges: Sequence[float] = COMPLEXITY_EDGES,
                  per_stratum: int | None = None, n: int | None = None) -> list[Any]:
    """MBPP problems chosen by `stratified_sample` over the `complexity` of their reference code.

    Example::

        picked = by_complexity(mbpp_split(read_mbpp(folder), "test"), per_stratum=40, seed=0)

    Keys are task ids, so the same problems and seed give the same selection in any order.
    """
    return stratified_sample(problems, value=lambda p: complexity(p.code), key=lambda p: p.task_id,
                             edges=edges, seed=seed, per_stratum=per_stratum, n=n)
