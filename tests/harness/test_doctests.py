"""Docstring examples: the `>>>` ones run, and the `::` ones name only what exists.

Every module of `harness` whose source carries a `>>>` example is collected by walking the
package and its examples run as doctests (ELLIPSIS on, so a long message may end in `...`).
Examples that need a trained model stay as `::` literal blocks; every `Name.attr(` and
`harness.x(` they (or an inline ``literal``) call is resolved against the harness and must be
a callable attribute that exists: a call of `Positions.spans(...)` when the method is
`of_spans` fails here.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.util
import pkgutil
import re
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

import harness

HARNESS = Path(harness.__file__).resolve().parent
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

# the modules whose key public examples are runnable; a refactor that drops them fails here
MUST_RUN = {"harness.interventions.positions", "harness.interventions.edits", "harness.models.sites",
            "harness.stats", "harness.verdicts.expect"}


def _module_names() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages([str(HARNESS)], prefix="harness."))


def _source(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None, name
    return Path(spec.origin)


def _with_examples() -> list[str]:
    """The harness modules whose source holds a `>>>` example."""
    return [name for name in _module_names() if ">>>" in _source(name).read_text(encoding="utf-8")]


WITH_EXAMPLES = _with_examples()


def test_the_key_public_examples_are_collected_as_doctests():
    assert MUST_RUN <= set(WITH_EXAMPLES), sorted(MUST_RUN - set(WITH_EXAMPLES))


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_the_docstring_examples_run(name):
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, name) if t.examples]
    assert tests, f"{name} has `>>>` in its source but doctest finds no example in its docstrings"
    out: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests:
        runner.run(test, out=out.append, clear_globs=True)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0, "".join(out)


# --------------------------------------------------------------------------- names in examples

CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)\s*\(")
INLINE = re.compile(r"``(.+?)``")


def _code_in(doc: str) -> list[tuple[int, str]]:
    """(line offset, code) of each `::` literal block, `>>>`/`...` line and inline literal."""
    lines = doc.splitlines()
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if line.rstrip().endswith("::"):
            out.extend((i, part) for part in INLINE.findall(line))
            indent = len(line) - len(stripped)
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
                out.append((j, lines[j]))
                j += 1
            i = j
            continue
        if stripped.startswith((">>> ", "... ")):
            out.append((i, stripped[4:]))
        else:
            out.extend((i, part) for part in INLINE.findall(line))
        i += 1
    return out


def _docstrings(path: Path):
    """(qualified name, first line, docstring) of the module and every class and function in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                doc = ast.get_docstring(child, clean=True)
                if doc:
                    yield name, child.body[0].lineno, doc
                yield from walk(child, name + ".")

    doc = ast.get_docstring(tree, clean=True)
    if doc:
        yield "<module>", 1, doc
    yield from walk(tree, "")


def _owned(obj: object) -> bool:
    """Whether the harness defines `obj` (a harness module, or a class or function of one)."""
    name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
    return isinstance(name, str) and (name == "harness" or name.startswith("harness."))


def _public_names() -> dict[str, list[object]]:
    """Every name in a harness module's `__all__` (and harness's own), with its objects."""
    names: dict[str, list[object]] = {}
    modules = [importlib.import_module(n) for n in ["harness", *_module_names()]]
    for module in modules:
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name, None)
            if obj is not None and all(obj is not o for o in names.get(name, [])):
                names.setdefault(name, []).append(obj)
    return names


@dataclass(frozen=True)
class Slip:
    where: str
    reference: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: `{self.reference}(` {self.why}"


def _check(reference: str, root: object) -> str | None:
    """Why `reference` (``Name.attr...``, ``Name`` bound to `root`) does not name a callable of
    the harness; None when it does, or once the chain leaves the harness (numpy, torch, ...)."""
    first, *attrs = reference.split(".")
    obj = root
    for i, attr in enumerate(attrs):
        if not _owned(obj):
            return None
        if not hasattr(obj, attr):
            return f"names {'.'.join([first, *attrs[:i + 1]])}, which does not exist"
        obj = getattr(obj, attr)
    if not callable(obj):
        return f"calls {reference}, which is not callable ({type(obj).__name__} {obj!r:.40})"
    return None


def find_slips(path: Path, module: types.ModuleType, public: dict[str, list[object]]) -> list[Slip]:
    """Every `Name.attr(` / `harness.x(` in the docstring code of `path` (read as if it were
    `module`) that does not name a callable the harness has."""
    slips = []
    for qualname, line, doc in _docstrings(path):
        for offset, code in _code_in(doc):
            for match in CALL.finditer(code):
                reference = match.group(1)
                first = reference.split(".", 1)[0]
                if first == "harness":
                    roots = [harness]
                elif first in vars(module):
                    roots = [vars(module)[first]]
                else:
                    roots = public.get(first, [])
                roots = [r for r in roots if _owned(r)]
                if not roots:
                    continue  # a variable of the example (`curve.slope(`), or not the harness's
                reasons = [_check(reference, root) for root in roots]
                if all(reasons):
                    slips.append(Slip(f"{path.name}:{line + offset} ({qualname})", reference, reasons[0]))
    return slips


def test_docstring_code_names_only_methods_and_functions_that_exist():
    public = _public_names()
    slips = []
    for name in _module_names():
        found = find_slips(_source(name), importlib.import_module(name), public)
        slips.extend(f"{name}: {slip}" for slip in found)
    assert not slips, "\n".join(slips)


def test_the_name_check_catches_a_method_that_does_not_exist(tmp_path):
    from harness.interventions import positions

    probe = tmp_path / "probe.py"
    probe.write_text('''"""Example::

        Positions.spans([[(3, 9)]])      # the old slip: the method is of_spans
        Positions.of_spans([[(3, 9)]])
        harness.interventions.no_such_thing(1)
        stats.bootstrap_mean(x, seed=0)  # a public module of the harness
        stats.bootstrap_meen(x, seed=0)
        curve.slope(near=0.25)           # a variable: not checked
        np.linspace(0, 1, 3)             # not the harness's: not checked

    Inline too: ``Positions.lastt()``.
    """
''', encoding="utf-8")
    slips = find_slips(probe, positions, _public_names())
    assert [(s.reference, s.why) for s in slips] == [
        ("Positions.spans", "calls Positions.spans, which is not callable (tuple ())"),
        ("harness.interventions.no_such_thing", "names harness.interventions.no_such_thing, which does not exist"),
        ("stats.bootstrap_meen", "names stats.bootstrap_meen, which does not exist"),
        ("Positions.lastt", "names Positions.lastt, which does not exist"),
    ]
    assert slips[0].where == "probe.py:3 (<module>)"
