"""``claims init NAME --model SPEC``: a new study in ``./NAME/`` that runs green at once.

`write_study(name, model=spec, parent=Path("."))` writes a package the plugin recognises as a
study (its ``study.py`` sets ``STUDY``):

    NAME/__init__.py    makes NAME a package (its modules import each other as NAME.x)
    NAME/study.py       the declaration: default model, one threshold row for it, the Thresholds
    NAME/conftest.py    the model fixture (honours --claims-model NAME=SPEC), the threshold row,
                        the prompts (honours --claims-data NAME=PATH)
    NAME/prompts.txt    the study's prompts, one a line
    NAME/test_NAME.py   one claim with its control: steering the residual after the last block
                        along the unembedding difference of the model's two likeliest next tokens moves their
                        logit difference, far more than the strongest of 8 norm-matched random
                        directions does

The claim holds on any decoder-only language model (after the final norm the logit difference
is linear in the residual; before it, an edit is scaled by each prompt's RMS), so the study is green before a researcher
replaces it with findings of their own. Nothing is ever overwritten: an existing ``NAME/`` is a
`HarnessError`.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from harness.errors import HarnessError

__all__ = ["write_study", "ScaffoldError"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ScaffoldError(HarnessError, ValueError):
    """A study that cannot be written (a bad name, an existing folder)."""


_STUDY = '''"""The {name} study: its default model and what each claim must show on each model.

The installed interp-claims plugin reads ``STUDY`` at collection. One threshold row per model:
``--claims-model {name}=SPEC`` picks the row of SPEC (or of the model its config.json names), and
``--claims-thresholds {name}=ROW`` names one. A row's ``refuted`` lists the claims measured not
to hold on that model (test name -> the numbers): they run as strict xfails.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.plugin import Study


@dataclass(frozen=True)
class Thresholds:
    """What each claim must show on one model."""

    min_factor: float                 # the steering slope's CI must lie above min_factor x the strongest control's
    refuted: dict = field(default_factory=dict)


THRESHOLDS = {{
    {model!r}: Thresholds(min_factor=2.0),
}}

STUDY = Study({name!r}, model={model!r}, thresholds=THRESHOLDS)
'''

_CONFTEST = '''"""Fixtures of the {name} study: its model, its threshold row and its prompts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from harness import evidence, load_study_model
from harness.measures.scores import next_token_logits
from harness.plugin import threshold_row

from .study import STUDY

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def model(claims_settings):
    """The study's model: ``--claims-model {name}=SPEC``, else the study's default."""
    return load_study_model(STUDY.name, claims_settings.model_spec(STUDY.name, STUDY.model))


@pytest.fixture(scope="session")
def thresholds(pytestconfig):
    """The run's threshold row (study.py), chosen by the model's spec; the header says which."""
    return threshold_row(pytestconfig, STUDY)


@pytest.fixture(scope="session")
def prompts(claims_settings) -> list[str]:
    """One prompt a line: ``--claims-data {name}=PATH``, else prompts.txt beside this file."""
    path = Path(claims_settings.data_path(STUDY.name, str(HERE / "prompts.txt"))).expanduser()
    text = path.read_text(encoding="utf-8")
    evidence.register_dataset(STUDY.name, path=str(path),
                              content_hash="sha256:" + hashlib.sha256(text.encode()).hexdigest())
    return [line.strip() for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def top_tokens(model, prompts) -> tuple[int, int]:
    """The two tokens the model finds likeliest next, on average over the prompts."""
    mean = next_token_logits(model, prompts).mean(0)
    first, second = torch.topk(mean, 2).indices.tolist()
    return first, second
'''

_TEST = '''"""Findings about the {name} study's model, one claim a test. Replace them with your own.

Each claim computes its evidence with the harness, states it with ``expect(...)``, and the
plugin reports it: ``pytest {name}`` runs them, ``-k`` a slice.
"""

from __future__ import annotations

import pytest

from harness import Direction, expect, logit_diff, random_direction, scorer, stats, sweep, sweep_directions, symmetric

N_CONTROLS = 8                          # norm-matched random directions; the strongest is the control
ALPHAS = symmetric(0.25, steps=11)


@pytest.mark.claim("Adding alpha x (W_U[A] - W_U[B]) to the residual after the last block moves logit(A) - "
                   "logit(B) with a positive slope, above the strongest of 8 norm-matched random directions",
                   source="{name}: the unembedding reads the final residual")
def test_unembedding_direction_moves_the_logit_difference(model, prompts, top_tokens, thresholds, claim_seed):
    a, b = top_tokens
    # the residual stream after the last block, before the final norm: the edit is divided by each
    # prompt's residual RMS there, so its effect on the logits differs from prompt to prompt
    site = model.site(model.main_stack, model.sites.stack(model.main_stack).n_layers, "block_out")
    unembed = model.module.get_output_embeddings().weight.detach().float()
    direction = Direction((unembed[a] - unembed[b]).cpu(), str(site), "unembedding difference")
    score = scorer(logit_diff, a, b)
    slope = sweep(model, prompts, at=site, direction=direction, alphas=ALPHAS, score=score).slope(near=0.25)
    draws = [random_direction(direction, seed=claim_seed + i) for i in range(N_CONTROLS)]
    curves = sweep_directions(model, prompts, at=site, directions=draws, alphas=ALPHAS, score=score)
    strongest = stats.strongest_of([c.slope(near=0.25) for c in curves], what="random directions")
    expect(slope).ci_excludes(0).positive()
    expect(slope).exceeds(strongest, factor=thresholds.min_factor)
'''

_PROMPTS = """The capital of France is
Once upon a time there was a
def add(a, b):
    return
The quick brown fox jumps over the
In 1969 the first person to walk on the moon was
Water boils at a temperature of
My favourite colour is
The opposite of hot is
She opened the door and saw
Two plus two equals
The sun rises in the
A group of crows is called a
The best way to learn a language is
He put the milk back in the
import numpy as
The meeting was moved to
The train to London leaves at
A triangle has three
The doctor told the patient to
Paris is a city in
The cat sat on the
It was raining, so she took her
The largest planet in the solar system is
for i in range(
The children ran into the
Coffee is made from roasted
He wrote a letter to his
The password must contain at least
Bees make honey from
The museum opens every day at
When the bell rang, the students
"""


def write_study(name: str, *, model: str, parent: Path | str = ".") -> Path:
    """Write a new study in ``parent/name/`` and return its folder.

    Example::

        write_study("animal", model="/models/my-gpt2")   # then: pytest animal

    `name` must be a Python identifier (the folder is a package and the study's name on the
    command line); `model` is the spec its model fixture loads by default (a directory, a hub id,
    ``fixture:NAME``) and the name of its one threshold row. Raises `ScaffoldError` for a bad
    name or model, or when ``parent/name`` already exists (nothing is overwritten).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise ScaffoldError(f"`name` must be a Python identifier (the study's folder is a package), got {name!r}; "
                            "e.g. claims init animal --model SPEC")
    if not isinstance(model, str) or not model.strip():
        raise ScaffoldError(f"`--model` must be a model spec (a directory, a hub id or fixture:NAME), got {model!r}")
    folder = Path(parent) / name
    if folder.exists():
        raise ScaffoldError(f"{folder} already exists; claims init never overwrites: choose another name or "
                            "remove the folder")
    files = {
        "__init__.py": f'"""The {name} study (interp-claims)."""\n',
        "study.py": _STUDY.format(name=name, model=model),
        "conftest.py": _CONFTEST.format(name=name),
        "prompts.txt": _PROMPTS,
        f"test_{name}.py": _TEST.format(name=name),
    }
    tmp = folder.with_name(f".{name}.claims-init.tmp")
    if tmp.exists():
        raise ScaffoldError(f"{tmp} is left from an interrupted claims init; remove it and run again")
    tmp.mkdir(parents=True)
    try:
        for filename, text in files.items():
            (tmp / filename).write_text(text, encoding="utf-8")
        tmp.rename(folder)   # all files or none
    except BaseException:
        for f in tmp.glob("*"):
            f.unlink()
        tmp.rmdir()
        raise
    return folder
