"""Fixture models: small models the project builds itself from seeded recipes in ``fixtures/``.

    available()           fixture names declared by the recipes (``VARIANTS`` in each recipe)
    resolve(name)         the directory holding the model: shipped weights, or a built cache entry
    build(name, seed=)    run the recipe into the cache (atomically) and return the directory
    parse_name(text)      ``"tacgen@seed=1"`` -> ("tacgen", 1): a fixture trained with another seed
    fixtures_dir()        the folder of the recipes package
    package()             the recipes package itself (``fixtures``), imported
    import_module(name)   a module of it: ``import_module("tracer.data")`` is ``fixtures.tracer.data``

The recipes are the package ``fixtures`` of the repository (``fixtures/__init__.py``), one
subpackage per family: ``fixtures/<family>/recipe.py`` with ``VARIANTS: dict[name, dict]``
(keyword arguments for its ``build``), a default ``SEED`` and ``build(out_dir, *, seed, **variant)``;
``fixtures/toolkit.py`` holds what the recipes share. The package is found in the clone the
harness is installed from (``fixtures/`` beside ``harness/``: an editable install, ``pip install
-e .``), or at ``$CLAIMS_FIXTURES_DIR``; an installed wheel carries no recipes, weights or data,
and asking it for a fixture is an error that says so. The package is imported under its name
``fixtures`` (so ``from fixtures.tracer import data`` elsewhere gives the same modules), or,
where another module already holds that name, under a private one (recipes import their
neighbours relatively).

Shipped weights live in ``fixtures/<family>/<name>/`` and are used when present; otherwise the
recipe is built once into ``$CLAIMS_CACHE_DIR`` (default ``~/.cache/interp-claims``) under a key
that hashes the recipe's sources, the package's shared ones and the seed, so an edited recipe
never reuses stale weights.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import pkgutil
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from harness.errors import ModelLoadError

__all__ = ["available", "resolve", "build", "fixtures_dir", "package", "import_module", "parse_name"]

PACKAGE = "fixtures"


def fixtures_dir() -> Path:
    """The folder of the recipes package: ``$CLAIMS_FIXTURES_DIR``, else ``fixtures/`` of the clone
    the harness runs from. Raises `ModelLoadError` saying what is missing and how to get it."""
    env = os.environ.get("CLAIMS_FIXTURES_DIR")
    path = Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / PACKAGE
    if not path.is_dir():
        raise ModelLoadError(
            f"fixture recipes not found at {path}; install interp-claims from a checkout "
            "(`pip install -e .`) or set CLAIMS_FIXTURES_DIR to the repository's fixtures/ folder "
            "(the `fixtures` package of recipes, shipped weights and data lives in the repository; "
            "an installed wheel does not carry it)"
        )
    if not (path / "__init__.py").is_file():
        raise ModelLoadError(
            f"{path} is not a package of fixture recipes (it has no __init__.py); point CLAIMS_FIXTURES_DIR "
            "at the repository's fixtures/ folder, or give a folder of recipes an __init__.py and one "
            "<family>/__init__.py beside each <family>/recipe.py"
        )
    return path


def _folder(module: ModuleType) -> Path | None:
    paths = list(getattr(module, "__path__", []) or [])
    return Path(paths[0]).resolve() if len(paths) == 1 else None


def package() -> ModuleType:
    """The recipes package at `fixtures_dir`, imported (once) as ``fixtures``, or under a private
    name where ``fixtures`` is already another module (another folder of recipes, or another
    distribution's package of that name)."""
    path = fixtures_dir().resolve()
    loaded = sys.modules.get(PACKAGE)
    if loaded is not None and _folder(loaded) == path:
        return loaded
    name = PACKAGE if loaded is None else f"_claims_fixtures_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path / "__init__.py", submodule_search_locations=[str(path)])
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except BaseException:
        del sys.modules[name]
        raise
    return module


def import_module(name: str) -> ModuleType:
    """A module of the recipes package by its dotted name inside it: ``import_module("tracer.data")``."""
    return importlib.import_module(f"{package().__name__}.{name}")


def _recipes() -> dict[str, tuple[Path, ModuleType, dict]]:
    pkg = package()
    root = Path(pkg.__path__[0])
    out: dict[str, tuple[Path, ModuleType, dict]] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        recipe = root / info.name / "recipe.py"
        if not info.ispkg or not recipe.is_file():
            continue
        module = importlib.import_module(f"{pkg.__name__}.{info.name}.recipe")
        for name, variant in getattr(module, "VARIANTS", {}).items():
            out[name] = (recipe, module, dict(variant))
    return out


def available() -> list[str]:
    return sorted(_recipes())


def parse_name(text: str) -> tuple[str, int | None]:
    """A fixture name and its training seed: ``"tacgen"`` -> ("tacgen", None) (the recipe's own
    seed, shipped weights where present), ``"tacgen@seed=1"`` -> ("tacgen", 1) (built by the
    same recipe with seed 1, cached like the default).

    Raises `ModelLoadError` for a malformed suffix, naming the form.
    """
    name, sep, suffix = text.partition("@")
    if not sep:
        return name, None
    key, eq, value = suffix.partition("=")
    if key != "seed" or not eq or not value.isdigit():
        raise ModelLoadError(
            f"fixture spec 'fixture:{text}' has the suffix {'@' + suffix!r}; the only suffix is a training "
            f"seed, e.g. 'fixture:{name}@seed=1'"
        )
    return name, int(value)


def _lookup(name: str) -> tuple[Path, ModuleType, dict]:
    recipes = _recipes()
    if name not in recipes:
        raise ModelLoadError(f"unknown fixture {name!r}; available fixtures are {sorted(recipes)}")
    return recipes[name]


def _cache_root() -> Path:
    return Path(os.environ.get("CLAIMS_CACHE_DIR", Path.home() / ".cache" / "interp-claims")) / "fixtures"


def _cache_key(recipe: Path, name: str, seed: int) -> str:
    """Name, seed and the bytes of every ``*.py`` in the recipe's folder (the recipe and the
    modules it builds from, e.g. a data generator) and in the package's own folder (the toolkit
    every recipe uses): a change to any of them is a new entry."""
    h = hashlib.sha256()
    for folder in (recipe.parent, recipe.parent.parent):
        for source in sorted(folder.glob("*.py")):
            h.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    h.update(f"|{name}|{seed}".encode())
    return f"{name}-{h.hexdigest()[:16]}"


def resolve(name: str, *, seed: int | None = None) -> Path:
    """The directory of fixture `name`: shipped weights if present, else a (built) cache entry.

    `name` may carry a training seed (``"tacgen@seed=1"``, see `parse_name`); an explicit
    `seed` wins over it.
    """
    name, named_seed = parse_name(name)
    seed = named_seed if seed is None else seed
    recipe, module, _ = _lookup(name)
    shipped = recipe.parent / name
    if seed is None and (shipped / "config.json").is_file():
        return shipped
    return build(name, seed=seed)


def build(name: str, *, seed: int | None = None, out: Path | None = None, force: bool = False) -> Path:
    """Run the recipe of `name` (default seed: the recipe's ``SEED``) and return its directory.

    The build goes to a temporary directory that is renamed into place only when complete, so
    an interrupted build never leaves a half-written fixture behind.
    """
    recipe, module, variant = _lookup(name)
    seed = int(getattr(module, "SEED", 0) if seed is None else seed)
    target = Path(out) if out is not None else _cache_root() / _cache_key(recipe, name, seed)
    if (target / "config.json").is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    from harness.verdicts.evidence import close_registry, open_registry

    registry = open_registry()   # the recipe's own reloads are not models of the run's report
    try:
        module.build(tmp, seed=seed, **variant)
        if force and target.exists():
            shutil.rmtree(target)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # lost a race to a complete build: keep theirs
                raise
    finally:
        close_registry(registry)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
