"""Threshold rows: which row of its study's table each claim is judged by, and why.

- `Choice`: the threshold row a run uses, with the model's spec and why.
- `resolve_row(table, spec, ...)`: the row for a model spec, without loading the model; in order
  ``--claims-thresholds STUDY=ROW``; the spec's own row; for ``fixture:NAME@seed=N`` the row of
  ``fixture:NAME`` without its ``refuted`` list; for a directory or a cached hub id the row of the
  model its ``config.json`` names (``_name_or_path``). Anything else is a `StudyError`.
- `register(config, study)`, `session_studies(config)`: the studies of this session's tests.
- `thresholds_for(config, study)` / `threshold_row(config, study)`: the session's row of a study,
  resolved once; `resolved_choices(config)`: those resolved so far (for the report).
- `check_names(config, ...)`: every NAME given to ``--claims-model``, ``--claims-data``,
  ``--claims-sae``, ``--claims-thresholds`` and ``--claims-n`` is one some collected study
  declares, else one usage error that lists the known names and suggests the closest.
- ``--claims-n STUDY=N`` sets the row field the study's declaration names (``Study(..., n=FIELD)``)
  for the run; the row's ``refuted`` entries then run as claims.
- `mark_refuted(items, config)`: the claims a row lists in ``refuted`` run as strict xfails.

Imports neither torch nor numpy.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

from .studies import Study, StudyError, study_of_path

Row = TypeVar("Row")

NAME_KEYS = ("_name_or_path", "name_or_path")   # the config.json keys that may name the model
_CACHE_SNAPSHOT = re.compile(r"(?:^|[\\/])models--([^\\/]+?)--([^\\/]+)[\\/]snapshots[\\/]")


@dataclass(frozen=True)
class Choice(Generic[Row]):
    """The threshold row a study uses: its name in ``thresholds``, the row, the model spec, and why."""

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
            values.append(f"{f.name}: {len(value)}" if isinstance(value, Mapping) else f"{f.name}={value}")
        return [line, "  " + ", ".join(values)]

    def to_dict(self) -> dict[str, str]:
        return {"study": self.study, "model": self.spec, "row": self.name, "why": self.why}



# ---------------------------------------------------------------------------------------------
# One row from a model spec


def resolve_row(table: Mapping[str, Row], spec: str, *, study: str, chosen: str | None = None,
                where: str | None = None) -> Choice[Row]:
    """The row of `table` (a study's ``thresholds``) for model `spec` (as given on the command
    line), or for row `chosen` (``--claims-thresholds STUDY=ROW``); reads at most a config.json,
    never the model. A model without a row is a `pytest.UsageError` that names the option and
    `where` the table is."""
    where = where or f"the study.py of study {study!r}"
    rows = sorted(table)
    if chosen is not None:
        if chosen not in table:
            raise StudyError(f"--claims-thresholds {study}={chosen}: no row {chosen!r} in the thresholds of "
                             f"{where} (rows: {rows}){_did_you_mean(chosen, rows)}")
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
    raise StudyError(f"no thresholds for model {spec!r} (study {study}): {reason}; pass "
                     f"--claims-thresholds {study}=ROW (rows: {rows}) or add a row to the thresholds in {where}")


def _named_models(spec: str) -> tuple[list[tuple[str, str]], str]:
    """The models `spec` names through its config or cache path (each with why), and what to say
    when none of them has a row."""
    if spec.startswith("fixture:"):
        return [], "no row names this fixture"
    path = os.path.expanduser(spec)
    if spec.startswith("gguf:") or (spec.lower().endswith(".gguf") and not os.path.isdir(path)):
        return [], ("no row is keyed by this GGUF spec, and a GGUF checkpoint names no hub model to look "
                    "one up by (a row keyed 'gguf:NAME' serves a packaged model)")
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
# The session's studies and their rows


_STUDIES = pytest.StashKey[dict]()   # name -> Study, every study a collected test belongs to
_CHOICES = pytest.StashKey[dict]()   # name -> Choice, or the usage error's text


def register(config: pytest.Config, study: Study) -> Study:
    """Add `study` to the session's studies; two folders declaring one name is a `StudyError`."""
    known = config.stash.setdefault(_STUDIES, {})
    old = known.get(study.name)
    if old is not None and old is not study and old.folder != study.folder:
        raise StudyError(f"two studies are named {study.name!r}: {old.where} and {study.where}; rename one")
    known.setdefault(study.name, study)
    return study


def session_studies(config: pytest.Config) -> dict[str, Study]:
    """The studies of this session's collected tests, by name."""
    return dict(config.stash.get(_STUDIES, {}))


def thresholds_for(config: pytest.Config, study: str | Study) -> Choice:
    """The threshold row of `study` (its name, or its `Study`) in this session, from the command
    line (``--claims-model NAME=SPEC``, ``--claims-thresholds NAME=ROW``); resolved once per
    session. A model without a row, or an unknown study, is a `pytest.UsageError`.

    Example (a study's conftest)::

        @pytest.fixture(scope="session")
        def thresholds(pytestconfig):
            return thresholds_for(pytestconfig, "mystudy").row
    """
    from .state import SETTINGS_KEY

    if isinstance(study, Study):
        study = register(config, study)
    else:
        known = config.stash.get(_STUDIES, {})
        if study not in known:
            raise StudyError(f"no study {study!r} in this session (studies: {sorted(known)})"
                             f"{_did_you_mean(study, known)}; a study is a folder whose study.py sets STUDY")
        study = known[study]
    cache = config.stash.setdefault(_CHOICES, {})
    if study.name not in cache:
        settings = config.stash[SETTINGS_KEY]
        try:
            choice = resolve_row(study.thresholds, settings.model_spec(study.name, study.model),
                                 study=study.name, chosen=settings.thresholds_row(study.name), where=study.where)
            cache[study.name] = _sized(choice, study, settings.size(study.name))
        except pytest.UsageError as exc:
            cache[study.name] = str(exc)
    found = cache[study.name]
    if isinstance(found, str):
        raise StudyError(found)
    return found


def _sized(choice: Choice, study: Study, n: int | None) -> Choice:
    """`choice` with its row's count field (``Study(..., n=FIELD)``) set to `n` from
    ``--claims-n``: the row's ``refuted`` entries were measured at its own count, so its claims
    run as claims. Unchanged when `n` is None or equals the row's count."""
    if n is None:
        return choice
    if study.n is None:
        raise StudyError(f"--claims-n {study.name}={n}: study {study.name!r} takes no count from the command line "
                         f"(its declaration in {study.where} names no row field with Study(..., n=FIELD))")
    if getattr(choice.row, study.n) == n:
        return choice
    row = dataclasses.replace(choice.row, **{study.n: n})
    why = f"{choice.why}; {study.n}={n} from --claims-n"
    if getattr(row, "refuted", None):
        row = dataclasses.replace(row, refuted={})
        why += ", so its refuted claims run as claims"
    return dataclasses.replace(choice, row=row, why=why)


def threshold_row(config: pytest.Config, study: str | Study) -> Any:
    """The threshold row of `study` in this session (see `thresholds_for`)."""
    return thresholds_for(config, study).row


def resolved_choices(config: pytest.Config) -> list[Choice]:
    """The rows resolved so far this session, by study name (for the report)."""
    return [c for _, c in sorted(config.stash.get(_CHOICES, {}).items()) if isinstance(c, Choice)]


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_names(config: pytest.Config, selected: Iterable[Study]) -> None:
    """One `StudyError` (exit code 4) for the first bad name on the command line: a NAME in
    ``--claims-model``, ``--claims-data``, ``--claims-sae`` that no collected study declares, a
    ``--claims-thresholds`` study with no selected tests or an unknown row; then the row of each
    study with selected tests is resolved (a model without a row is the error)."""
    from .state import SETTINGS_KEY

    settings = config.stash[SETTINGS_KEY]
    studies = session_studies(config)
    selected_names = sorted({s.name for s in selected})
    for option, given, attr in (("--claims-model", settings.models, "models"),
                                ("--claims-data", settings.data, "data"),
                                ("--claims-sae", settings.saes, "saes")):
        known = sorted({n for s in studies.values() for n in getattr(s, attr)})
        for name, value in given.items():
            if name not in known:
                where = (f"known: {known}" if known else f"the studies collected ({sorted(studies) or 'none'}) "
                         f"declare none")
                raise StudyError(f"{option} {name}={value}: no study in this run reads a {option[9:]} named "
                                 f"{name!r} ({where}){_did_you_mean(name, known)}")
    for option, given in (("--claims-thresholds", settings.thresholds), ("--claims-n", settings.sizes)):
        for name, value in given.items():
            if name not in selected_names:
                raise StudyError(f"{option} {name}={value}: no selected test belongs to a study {name!r} (studies "
                                 f"with selected tests: {selected_names}){_did_you_mean(name, selected_names)}")
    for name in selected_names:
        thresholds_for(config, name)


def mark_refuted(items: Iterable[pytest.Item], config: pytest.Config) -> None:
    """Mark each claim whose study's row lists it in ``refuted`` as xfail(strict=True): it still
    runs and reports its evidence, and one that starts to hold fails the run, so the table must
    follow the model. Studies whose row does not resolve are left alone (the usage error ends the
    run once collection finishes)."""
    for item in items:
        study = study_of_path(item.path)
        if study is None:
            continue
        try:
            row = thresholds_for(config, study.name).row
        except pytest.UsageError:
            continue
        refuted = getattr(row, "refuted", None)
        if not refuted:
            continue
        reason = refuted.get(item.name) or refuted.get(getattr(item, "originalname", item.name))
        if reason:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"measured not to hold on this model: {reason}"))
