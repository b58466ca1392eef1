"""The per-model threshold tables of the studies: which row a run uses, and why.

Each study ``claims/<study>/settings.py`` holds ``THRESHOLDS`` (row name -> the study's
``Thresholds``) and ``DEFAULT_MODEL`` (the spec its model fixture loads without
``--claims-model``). `resolve_row` picks a study's row from the model's spec string alone, without
loading the model; in order:

1. ``--claims-thresholds STUDY=ROW``: the row named ROW (an unknown ROW is a usage error);
2. the row of the model's spec itself (``fixture:tacgen``, a hub id, a path);
3. for a fixture seed variant ``fixture:NAME@seed=N``: the row of ``fixture:NAME``, without its
   ``refuted`` list (claims measured not to hold on one trained seed are measured afresh on
   another: a refuted list is a fact about the weights it was measured on);
4. for a directory: the row of the model its ``config.json`` names (``_name_or_path``, then
   ``name_or_path``), or of the hub id whose Hugging Face cache snapshot the directory is;
   for a hub id: the same, read from its config in the local Hugging Face cache (offline, a
   file lookup; skipped when ``huggingface_hub`` is missing).

Anything else is a `pytest.UsageError` that names ``--claims-thresholds``. ``claims/conftest.py``
resolves the row of every study with selected tests once collection finishes, so a model
without a row ends the run before any model loads.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Generic, Mapping, TypeVar

import pytest

Row = TypeVar("Row")

CLAIMS_DIR = Path(__file__).resolve().parent
NAME_KEYS = ("_name_or_path", "name_or_path")   # the config.json keys that may name the model
_CACHE_SNAPSHOT = re.compile(r"(?:^|[\\/])models--([^\\/]+?)--([^\\/]+)[\\/]snapshots[\\/]")


@dataclass(frozen=True)
class Choice(Generic[Row]):
    """The threshold row a study uses: its name in ``THRESHOLDS``, the row, and why."""

    study: str
    spec: str
    name: str
    row: Row
    why: str

    def header(self) -> list[str]:
        """Terminal header lines: the row and why, then its values (a table's size only)."""
        line = f"{self.study} thresholds: row {self.name!r} ({self.why})"
        if not is_dataclass(self.row):
            return [line]
        values = []
        for f in fields(self.row):
            value = getattr(self.row, f.name)
            if isinstance(value, Mapping):
                values.append(f"{f.name}: {len(value)}")
            else:
                values.append(f"{f.name}={value}")
        return [line, "  " + ", ".join(values)]


def resolve_row(table: Mapping[str, Row], spec: str, *, study: str, chosen: str | None = None,
                where: str | None = None) -> Choice[Row]:
    """The row of `table` (a study's ``THRESHOLDS``) for model `spec` (as given on the command
    line), or for row `chosen` (``--claims-thresholds STUDY=ROW``); reads at most a config.json,
    never the model. A model without a row is a usage error that names the option and `where`
    the table is (default ``claims/<study>/settings.py``)."""
    where = where or f"claims/{study}/settings.py"
    rows = sorted(table)
    if chosen is not None:
        if chosen not in table:
            raise pytest.UsageError(f"--claims-thresholds {study}={chosen}: no row {chosen!r} in THRESHOLDS "
                                    f"in {where} (rows: {rows})")
        return Choice(study, spec, chosen, table[chosen], "--claims-thresholds")
    if spec in table:
        return Choice(study, spec, spec, table[spec], "the model's spec")
    if spec.startswith("fixture:") and "@" in spec:
        base = spec.partition("@")[0]
        if base in table:
            row = table[base]
            why = f"{spec} is a variant of it"
            if getattr(row, "refuted", None):
                row = dataclasses.replace(row, refuted={})
                why += "; its refuted claims run as claims"
            return Choice(study, spec, base, row, why)
        reason = f"neither it nor {base} has a row"
    else:
        named, reason = _named_models(spec)
        for name, why in named:
            if name in table:
                return Choice(study, spec, name, table[name], why)
    raise pytest.UsageError(f"no thresholds for model {spec!r} (study {study}): {reason}; pass "
                            f"--claims-thresholds {study}=ROW (rows: {rows}) or add a row to THRESHOLDS in {where}")


def _named_models(spec: str) -> tuple[list[tuple[str, str]], str]:
    """The models `spec` names through its config or cache path (each with why), and what to say
    when none of them has a row."""
    if spec.startswith("fixture:"):
        return [], "no row names this fixture"
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        hub = _hub_id_of_cache_path(path)
        named = [(hub, f"{path} is a Hugging Face cache snapshot of it")] if hub else []
        config = Path(path) / "config.json"
        if not config.is_file():
            return named, "it has no row and no config.json that names a model"
        return named + _config_names(config), _no_row_reason(config)
    if spec.startswith((".", "/", "~")) or "\\" in spec or spec.count("/") > 1:
        return [], "it has no row and is not an existing directory"
    config = _cached_hub_config(spec)
    if config is None:
        return [], "it has no row and its config is not in the local Hugging Face cache"
    return _config_names(config), _no_row_reason(config)


def _config_values(config: Path) -> dict[str, str]:
    """The values of `NAME_KEYS` that `config` (a config.json) sets to a string."""
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: data[key] for key in NAME_KEYS if isinstance(data.get(key), str) and data[key].strip()}


def _config_names(config: Path) -> list[tuple[str, str]]:
    """(model, why) for each model `config` names (a cache snapshot path also names its hub id)."""
    out = []
    for key, value in _config_values(config).items():
        out.append((value, f"named by {config} {key}"))
        hub = _hub_id_of_cache_path(value)
        if hub is not None:
            out.append((hub, f"named by {config} {key}, a Hugging Face cache snapshot of it"))
    return out


def _no_row_reason(config: Path) -> str:
    values = _config_values(config)
    if not values:
        return f"its config names no model with a row ({config} has no {' or '.join(NAME_KEYS)})"
    return "its config names no model with a row (" + ", ".join(
        f"{config} {key} = {value!r}" for key, value in values.items()) + ")"


def _hub_id_of_cache_path(path: str) -> str | None:
    """``org/name`` for a path inside a Hugging Face cache snapshot (``.../models--org--name/snapshots/...``)."""
    m = _CACHE_SNAPSHOT.search(path.rstrip("/\\") + "/")
    return f"{m.group(1)}/{m.group(2)}" if m else None


def _cached_hub_config(repo_id: str) -> Path | None:
    """The config.json of hub model `repo_id` in the local Hugging Face cache, if it is there (a
    file lookup, never a download)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:   # no huggingface_hub, or not a valid repo id
        return None
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None


# ---------------------------------------------------------------------------------------------
# The studies, and one resolution per session


@dataclass(frozen=True)
class Study:
    """A study's threshold table, the spec its model fixture loads by default, and where the
    table is."""

    name: str
    table: Mapping[str, Any]
    default_model: str
    where: str


def study(name: str) -> Study | None:
    """Study `name` (``claims/<name>/settings.py`` with ``THRESHOLDS`` and ``DEFAULT_MODEL``), or
    None if there is no such study."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or not (CLAIMS_DIR / name / "settings.py").is_file():
        return None
    module = importlib.import_module(f"claims.{name}.settings")
    table, default = getattr(module, "THRESHOLDS", None), getattr(module, "DEFAULT_MODEL", None)
    if table is None or default is None:
        return None
    return Study(name, table, default, f"claims/{name}/settings.py")


def studies() -> list[str]:
    """The names of the studies that have a threshold table."""
    return [p.name for p in sorted(CLAIMS_DIR.iterdir()) if p.is_dir() and study(p.name) is not None]


_CHOICES = pytest.StashKey[dict]()


def thresholds_for(config: pytest.Config, name: str) -> Choice:
    """The threshold row of study `name` in this session, from the command line
    (``--claims-model NAME=SPEC``, ``--claims-thresholds NAME=ROW``); resolved once per session.
    A model without a row is a `pytest.UsageError`.

    Example (a study's conftest)::

        @pytest.fixture(scope="session")
        def thresholds(pytestconfig):
            return thresholds_for(pytestconfig, "tacgen").row
    """
    from harness.plugin import SETTINGS_KEY

    cache = config.stash.setdefault(_CHOICES, {})
    if name not in cache:
        s = study(name)
        if s is None:
            raise pytest.UsageError(f"no study {name!r} with a threshold table (studies: {studies()})")
        settings = config.stash[SETTINGS_KEY]
        try:
            cache[name] = resolve_row(s.table, settings.model_spec(name, s.default_model), study=name,
                                      chosen=settings.thresholds_row(name), where=s.where)
        except pytest.UsageError as exc:
            cache[name] = str(exc)
    found = cache[name]
    if isinstance(found, str):
        raise pytest.UsageError(found)
    return found


def threshold_row(config: pytest.Config, name: str) -> Any:
    """The threshold row (a study's ``Thresholds``) of study `name` in this session (see
    `thresholds_for`)."""
    return thresholds_for(config, name).row


def mark_refuted(items, study: str, row) -> None:
    """Mark the claims of `study` among `items` that `row` (its THRESHOLDS row at collection, or
    None) lists in ``refuted`` as xfail(strict=True): they still run and report their evidence,
    and one that starts to hold fails the run, so the table must follow the model."""
    if row is None or not getattr(row, "refuted", None):
        return
    for item in items:
        if f"claims/{study}/" not in item.nodeid.replace("\\", "/"):
            continue
        reason = row.refuted.get(item.name) or row.refuted.get(getattr(item, "originalname", item.name))
        if reason:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"measured not to hold on this model: {reason}"))
