"""Studies: a folder of claims with its own settings, found by the installed plugin.

A study is any folder that holds a ``study.py`` whose top level sets ``STUDY = Study(...)``:

    # mystudy/study.py
    from harness.plugin import Study
    THRESHOLDS = {"/models/my-gpt2": Thresholds(min_slope=0.5)}
    STUDY = Study("mystudy", model="/models/my-gpt2", thresholds=THRESHOLDS)

The plugin finds the study of every collected test by walking up from the test's file, so a
study in a researcher's own repository works exactly like the ones in this repository. Contents:

- `Study`: the declaration (name, default model spec, threshold rows, the data set and SAE names
  the study reads); `StudyError`: a declaration or a name the plugin cannot use (exit code 4).
- `study_of_path(path)`: the study whose folder holds `path` (its ``study.py`` imported once).
- `claim_identity(path, nodeid)`: a claim's stable identity, ``STUDY/FILE::NAME[PARAMS]`` with
  FILE relative to the study's folder (outside a study, relative to the first folder above the
  test's package), from which its seed derives: the same from any invocation or root folder.

Which row a study's claims are judged by is `harness.plugin.thresholds`. Imports neither torch
nor numpy (a ``study.py`` should not either: it is imported at collection).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DECLARATION = "study.py"
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_DECLARES = re.compile(r"^STUDY\s*(:[^=]*)?=", re.MULTILINE)


class StudyError(pytest.UsageError):
    """A study declaration, or a command-line name, that the plugin cannot use (exit code 4)."""


@dataclass(frozen=True)
class Study:
    """A study's declaration: what the plugin needs to run its claims on any model.

    Example (``mystudy/study.py``)::

        STUDY = Study("mystudy", model="fixture:planted",
                      thresholds={"fixture:planted": Thresholds(min_slope=2.5)},
                      data=("mystudy",))

    `name` names the study on the command line (``--claims-model NAME=SPEC``,
    ``--claims-thresholds NAME=ROW``) and in claim identities. `model` is the spec its model
    fixture loads without ``--claims-model``. `thresholds` maps a row name (a model spec, a hub
    id, ``fixture:NAME``) to the row (any object; a frozen dataclass reads best) that says what
    each claim must show on that model; a row's ``refuted`` mapping (test name -> the measured
    numbers) runs those claims as strict xfails. `models`, `data` and `saes` are the names the
    study accepts for ``--claims-model``, ``--claims-data`` and ``--claims-sae`` (default: its
    own name for models and data, none for SAEs). `n` names the row field that counts what the
    study measures (prompts, problems, pairs): ``--claims-n NAME=N`` replaces it for one run
    (None: the study takes no count from the command line); the field holds an integer, or None
    for "all of them". Raises `StudyError` for a bad field.
    """

    name: str
    model: str
    thresholds: Mapping[str, Any]
    data: tuple[str, ...] | None = None
    saes: tuple[str, ...] = ()
    models: tuple[str, ...] | None = None
    n: str | None = None
    folder: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise StudyError(f"Study `name` must start with a letter or '_' and hold only letters, digits, '_' or "
                             f"'-', got {self.name!r}; e.g. Study('mystudy', ...)")
        if not isinstance(self.model, str) or not self.model.strip():
            raise StudyError(f"Study {self.name!r}: `model` must be the default model's spec (a directory, a hub "
                             f"id or 'fixture:NAME'), got {self.model!r}")
        if not isinstance(self.thresholds, Mapping) or not self.thresholds or \
                not all(isinstance(k, str) and k for k in self.thresholds):
            raise StudyError(f"Study {self.name!r}: `thresholds` must map row names to rows, with at least one "
                             f"row (e.g. {{{self.model!r}: Thresholds(...)}}), got {self.thresholds!r}")
        for attr, default in (("data", (self.name,)), ("models", (self.name,)), ("saes", ())):
            value = getattr(self, attr)
            value = default if value is None else value
            if isinstance(value, str) or not all(isinstance(v, str) and _NAME_RE.fullmatch(v) for v in value):
                raise StudyError(f"Study {self.name!r}: `{attr}` must be a tuple of names such as "
                                 f"({self.name!r},), got {value!r}")
            object.__setattr__(self, attr, tuple(value))
        if self.n is not None:
            if not isinstance(self.n, str) or not self.n.isidentifier():
                raise StudyError(f"Study {self.name!r}: `n` must name the row field that counts what the study "
                                 f"measures (e.g. n='n_prompts'), got {self.n!r}")
            for row_name, row in self.thresholds.items():
                value = getattr(row, self.n, None)
                has = dataclasses.is_dataclass(row) and self.n in {f.name for f in dataclasses.fields(row)}
                if not has or not (value is None or (isinstance(value, int) and not isinstance(value, bool))):
                    raise StudyError(f"Study {self.name!r}: `n={self.n!r}` must name an integer field of every "
                                     f"threshold row (a dataclass; None counts as all); row {row_name!r} has "
                                     f"{self.n}={value!r}")

    @property
    def where(self) -> str:
        """Where the declaration is, for messages (``claims/tracer/study.py``)."""
        if self.folder is None:
            return f"the study.py of study {self.name!r}"
        return _display(self.folder / DECLARATION)




# ---------------------------------------------------------------------------------------------
# Finding a test's study


_BY_FOLDER: dict[Path, Study | None] = {}


def study_of_path(path: str | os.PathLike) -> Study | None:
    """The study whose folder holds `path` (the nearest ``study.py`` above it that sets
    ``STUDY``), or None. Each declaration is imported once per process, under the module name
    pytest gives it (``claims.tracer.study`` inside a package), so the study's own modules and
    the plugin share one copy. Raises `StudyError` for a ``study.py`` whose ``STUDY`` is not a
    `Study` or that fails to import."""
    here = Path(path).resolve()
    folder = here if here.is_dir() else here.parent
    visited = []
    found: Study | None = None
    for candidate in (folder, *folder.parents):
        if candidate in _BY_FOLDER:
            found = _BY_FOLDER[candidate]
            break
        visited.append(candidate)
        declaration = candidate / DECLARATION
        if declaration.is_file() and _declares(declaration):
            found = _load(declaration)
            break
    for candidate in visited:
        _BY_FOLDER[candidate] = found
    return found


def _declares(declaration: Path) -> bool:
    """Whether `declaration` sets ``STUDY`` at its top level (a ``study.py`` that does not is
    someone else's module, never imported)."""
    try:
        return bool(_DECLARES.search(declaration.read_text(encoding="utf-8", errors="replace")))
    except OSError:
        return False


def _load(declaration: Path) -> Study:
    folder = declaration.parent
    name = _module_name(declaration)
    try:
        if name is not None:
            module = importlib.import_module(name)
        else:
            name = "_claims_study_" + hashlib.sha1(str(folder).encode()).hexdigest()[:12]
            spec = importlib.util.spec_from_file_location(name, declaration)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    except StudyError:
        raise
    except Exception as exc:  # the study's own code failed: say which file
        raise StudyError(f"{_display(declaration)}: importing the study declaration failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    declared = getattr(module, "STUDY", None)
    if not isinstance(declared, Study):
        raise StudyError(f"{_display(declaration)}: `STUDY` must be a harness.plugin.Study, got "
                         f"{type(declared).__name__}; e.g. STUDY = Study('{folder.name}', model=..., thresholds=...)")
    if declared.folder is None:
        object.__setattr__(declared, "folder", folder)
    return declared


def _module_name(declaration: Path) -> str | None:
    """``pkg.sub.study`` for a ``study.py`` inside a package (its package root put on sys.path, as
    pytest's default import mode does for the package's tests), or None for a plain folder."""
    folder = declaration.parent
    if not (folder / "__init__.py").is_file():
        return None
    parts = [declaration.stem]
    root = folder
    while (root / "__init__.py").is_file():
        parts.insert(0, root.name)
        root = root.parent
    if not all(p.isidentifier() for p in parts):
        return None
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return ".".join(parts)


def _display(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def claim_identity(path: str | os.PathLike, nodeid: str) -> str:
    """A claim's identity, from which its seed derives: ``STUDY/FILE::NAME[PARAMS]``, FILE
    relative to the study's folder; outside a study, FILE relative to the first folder above the
    test file's package (the folder pytest puts on sys.path). It never depends on pytest's root
    folder, the invocation directory, ``-k`` or xdist.

    Example: ``claim_identity("/x/claims/tracer/test_das.py", "claims/tracer/test_das.py::test_a[k1]")``
    is ``"tracer/test_das.py::test_a[k1]"``.
    """
    file = Path(path).resolve()
    test = nodeid.split("::", 1)[1] if "::" in nodeid else ""
    study = study_of_path(file)
    if study is not None and study.folder is not None:
        where = f"{study.name}/{file.relative_to(study.folder.resolve()).as_posix()}"
    else:
        base = file.parent
        while (base / "__init__.py").is_file():
            base = base.parent
        where = file.relative_to(base).as_posix()
    return f"{where}::{test}" if test else where
