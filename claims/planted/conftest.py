"""Fixtures of the planted study: the model (default `fixture:planted`), its directions, prompts.

Point the study at another checkpoint with ``--claims-model planted=SPEC`` (a fixture name,
a directory holding ``directions.safetensors`` and ``plant.json`` beside the weights) and at
other prompts with ``--claims-data planted=PATH`` (one prompt per line).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from harness import evidence, load_directions, load_study_model
from harness.models.fixtures import resolve

from claims.planted.settings import DEFAULT_MODEL, THRESHOLDS, Thresholds  # noqa: F401 (THRESHOLDS: re-exported)
from harness.plugin import threshold_row

N_PROMPTS = 160
PROMPT_SEED = 20261121


@pytest.fixture(scope="session")
def planted(claims_settings):
    return load_study_model("planted", claims_settings.model_spec("planted", DEFAULT_MODEL))


@pytest.fixture(scope="session")
def thresholds(pytestconfig) -> Thresholds:
    """The run's THRESHOLDS row (claims/planted/settings.py), from the model's spec."""
    return threshold_row(pytestconfig, "planted")


@pytest.fixture(scope="session")
def planted_directions(planted):
    spec = planted.spec
    folder = resolve(spec[len("fixture:"):]) if spec.startswith("fixture:") else Path(spec)
    return load_directions(Path(folder) / "directions.safetensors")


@pytest.fixture(scope="session")
def prompts(claims_settings) -> list[str]:
    path = claims_settings.data_path("planted", None)
    if path is not None:
        lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
        evidence.register_dataset("planted", path=str(path), content_hash=_sha(Path(path).read_bytes()))
        return lines
    rng = random.Random(PROMPT_SEED)
    letters = "cdefghijklmnopqrstuvwxyz  "
    rows = ["".join(rng.choice(letters) for _ in range(rng.randint(6, 30))).strip() or "x"
            for _ in range(N_PROMPTS)]
    evidence.register_dataset("planted", path=f"generated:seed={PROMPT_SEED},n={N_PROMPTS}",
                              content_hash=_sha("\n".join(rows).encode()))
    return rows


@pytest.fixture(scope="session")
def curves(planted, planted_directions, prompts):
    """Sweeps shared by the claims of one session, keyed by (site, direction name)."""
    from harness import logit_diff, scorer, sweep, symmetric

    cache: dict = {}

    def get(site: str, name: str, vector=None):
        key = (site, name)
        if key not in cache:
            direction = planted_directions[name].vector if vector is None else vector
            cache[key] = sweep(planted, prompts, at=site, direction=direction,
                               alphas=symmetric(0.25, steps=11), score=scorer(logit_diff, "A", "B"))
        return cache[key]

    return get


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()

