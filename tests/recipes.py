"""Shared by the fixture-family tests: loading a recipe module (their build cache is the
`cache` fixture in conftest.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def load_recipe(family: str) -> ModuleType:
    """``fixtures/<family>/recipe.py`` as a module (fixtures/ is not a package)."""
    name = f"test_{family}_recipe"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, FIXTURES / family / "recipe.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
