"""Fixtures of the code-generation steering study: model, SAE, problems, baseline, features, grids.

Defaults: `fixture:codegen` (a 4-block Gemma-2 trained by `fixtures/codegen/recipe.py`) with the SAE
shipped beside it (``sae/``), on the shipped splits in `fixtures/codegen/data/` (``selection``
chooses the features, ``tuning`` the coefficients, ``test`` is measured). The real setting::

    --claims-model codegen=google/gemma-2-2b
    --claims-sae codegen=gemma-scope-2b-pt-res-canonical/layer_12/width_16k/canonical
    --claims-data codegen=/data/mbpp.jsonl

reads MBPP's standard splits instead: ``train`` (601-974) chooses the features, ``validation``
(511-600) the coefficients, ``test`` (11-510) is measured, with the 3-shot prompt of tasks 2-4.
A row's ``n_problems`` keeps the first n problems of each split. A model that ships no SAE
(``gguf:smollm2-135m-instruct``, ``gguf:gemma-3-270m``) is measured on its unsteered baseline
alone: every claim on the SAE or on steering ends in the error that asks for ``--claims-sae``.

Everything is computed once per session, each grid in one batched `generate` call, and at the end
of the session written beside the report under ``codegen/``: ``baseline.json`` (the unsteered run's
status and code per test problem), ``selected_coefficients.json``, ``flips.json`` (every condition's
pass rate and both flip rates), ``grid_<split>.png`` and ``examples/``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import DataError, evidence, load_study_model
from harness.atomic import write_text_atomic
from harness.data import (COMPLEXITY_EDGES, by_complexity, complexity, content_hash, mbpp_fewshot, mbpp_split,
                          read_mbpp)
from harness.models.fixtures import fixtures_dir, resolve
from harness.saes import feature_direction, load_sae, sae_site

from claims.codegen import measure
from claims.codegen.measure import Condition
from claims.codegen.settings import (CONTROLS, DEFAULT_MODEL, FEATURES, FLIP_BAND, GRID, N_RANDOM_FEATURES, SEED,
                                     Thresholds)
from harness.plugin import threshold_row

N_TUNING = 100        # tuning problems the coefficient grid runs on (stratified by complexity)
N_TEST_GRID = 60      # test problems the whole grid runs on, controls included (divergence, the plot)
SPLITS = ("selection", "tuning", "test")
MBPP_SPLITS = {"selection": "train", "tuning": "validation", "test": "test"}


@pytest.fixture(scope="session")
def codegen(claims_settings):
    return load_study_model("codegen", claims_settings.model_spec("codegen", DEFAULT_MODEL))


@pytest.fixture(scope="session")
def thresholds(pytestconfig) -> Thresholds:
    """The run's THRESHOLDS row (claims/codegen/settings.py), from the model's spec."""
    return threshold_row(pytestconfig, "codegen")


_PASS_AN_SAE = "pass one with --claims-sae codegen=FOLDER (sae-lens format) or codegen=RELEASE/SAE_ID"


def _default_sae(spec: str) -> str:
    """The SAE shipped beside a fixture model or a model folder (``sae/``). Raises `DataError`
    for a model without one (a hub id or a GGUF model ships none): the claims on the SAE and on
    steering cannot run; the baseline claims need no SAE."""
    if spec.startswith("fixture:"):
        folder = resolve(spec[len("fixture:"):]) / "sae"
    elif Path(spec).expanduser().is_dir():
        folder = Path(spec).expanduser() / "sae"
    else:
        raise DataError(f"model {spec!r} has no SAE: only a fixture or a model folder carries one (in sae/); "
                        f"{_PASS_AN_SAE}")
    if not (folder / "cfg.json").is_file():
        raise DataError(f"model {spec!r} has no SAE beside it ({folder}); {_PASS_AN_SAE}")
    return str(folder)


@pytest.fixture(scope="session")
def sae(codegen, claims_settings):
    """The SAE the study steers with; its site must exist on the model with the model's width."""
    spec = claims_settings.sae_spec("codegen") or _default_sae(codegen.spec)
    loaded = load_sae(spec)
    sae_site(codegen, loaded)   # raises for an SAE of another site or width
    digest = hashlib.sha256(loaded.W_dec.detach().float().cpu().numpy().tobytes()).hexdigest()
    evidence.register_dataset("codegen-sae", path=spec, content_hash=f"sha256:{digest}")
    return loaded


@pytest.fixture(scope="session")
def site(codegen, sae) -> str:
    return str(sae_site(codegen, sae))


def first_problems(splits: dict[str, list], n: int | None) -> dict[str, list]:
    """Each split's first `n` problems, in the split's own (task-id) order; all of them for None.

    Example::

        first_problems({"test": problems}, 60)["test"]   # tasks 11-70 of MBPP's test split

    Raises `DataError` for an `n` (the row's ``n_problems``) that is not None or an integer of at
    least 10."""
    if n is None:
        return dict(splits)
    if isinstance(n, bool) or not isinstance(n, int) or n < 10:
        raise DataError(f"`n_problems` of the codegen threshold row must be None (every problem) or an integer "
                        f"of at least 10, got {n!r}; the study needs 10 problems in each split")
    return {name: list(split[:n]) for name, split in splits.items()}


@pytest.fixture(scope="session")
def problems(claims_settings, thresholds) -> dict:
    """``{"selection", "tuning", "test": [MbppProblem]}`` and ``"shots"`` (the prompt split's);
    each split cut to its first ``thresholds.n_problems`` problems (task-id order) when the row
    sets it. Raises `DataError` for a bad ``n_problems`` and for a split of fewer than 10."""
    n = thresholds.n_problems
    path = Path(claims_settings.data_path("codegen", str(fixtures_dir() / "codegen" / "data"))).expanduser()
    if path.is_dir() and (path / "selection.jsonl").is_file():
        out = {name: read_mbpp(path / f"{name}.jsonl") for name in SPLITS}
        prompt_file = path / "prompt.jsonl"
        out["shots"] = mbpp_fewshot(read_mbpp(prompt_file)) if prompt_file.is_file() else []
    else:
        every = read_mbpp(path)
        out = {name: mbpp_split(every, MBPP_SPLITS[name]) for name in SPLITS}
        out["shots"] = mbpp_fewshot(every)
    out.update(first_problems({name: out[name] for name in SPLITS}, n))
    for name in SPLITS:
        if len(out[name]) < 10:
            raise DataError(f"{path}: split {name!r} has {len(out[name])} problems; the study needs at least 10")
    cut = "" if n is None else f" (the first {n} problems of each split)"
    evidence.register_dataset("codegen", path=f"{path}{cut}", content_hash=content_hash(
        {name: [(p.task_id, p.text, p.code, p.tests) for p in out[name]] for name in SPLITS}))
    return out


@pytest.fixture(scope="session")
def prompts(problems, thresholds) -> dict:
    """Per split: (prompts, offsets of each problem's own block)."""
    shots = problems["shots"][: thresholds.shots]
    if len(shots) < thresholds.shots:
        raise DataError(f"the prompt needs {thresholds.shots} shots but the data has {len(shots)} (tasks 2-4)")
    return {name: measure.prompts_of(problems[name], shots) for name in SPLITS}


@pytest.fixture(scope="session")
def executor():
    return measure.Executor(workers=2)


def stratum(problem) -> str:
    """The complexity stratum of a problem's reference code, e.g. ``cc4-5`` (COMPLEXITY_EDGES)."""
    c = complexity(problem.code)
    edges = list(COMPLEXITY_EDGES)
    for lo, hi in zip(edges, edges[1:]):
        if lo <= c < hi:
            return f"cc{lo:g}" if hi - lo == 1 else (f"cc{lo:g}+" if math.isinf(hi) else f"cc{lo:g}-{hi - 1:g}")
    raise DataError(f"complexity {c} of task {problem.task_id} is outside {edges}")


def _unsteered(codegen, problems, texts, thresholds, executor) -> measure.Outcomes:
    """The unsteered greedy run of `problems` (prompts `texts`), executed; it steers nothing, so
    it needs no site and no SAE."""
    return measure.steer(codegen, problems, texts, [Condition(None)], directions={}, site=None, scale=1.0,
                         max_new_tokens=thresholds.max_new_tokens, executor=executor)[Condition(None)]


@pytest.fixture(scope="session")
def baseline(codegen, problems, prompts, thresholds, executor, claims_settings) -> measure.Outcomes:
    """The unsteered greedy run of the test split (a model without an SAE still reports it),
    written to ``codegen/baseline.json``."""
    from claims.codegen.artifacts import write_baseline

    out = _unsteered(codegen, problems["test"], prompts["test"][0], thresholds, executor)
    write_baseline(problems["test"], out, Path(claims_settings.report_dir) / "codegen")
    return out


@pytest.fixture(scope="session")
def selection_baseline(codegen, problems, prompts, thresholds, executor) -> measure.Outcomes:
    """The unsteered greedy run of the selection split (which problems it solves chooses the features)."""
    return _unsteered(codegen, problems["selection"], prompts["selection"][0], thresholds, executor)


@pytest.fixture(scope="session")
def feature_means(codegen, sae, prompts) -> dict:
    """Per split (selection, test): each feature's mean activation over each problem's block, [n, d_sae]."""
    return {name: measure.problem_feature_means(codegen, sae, *prompts[name]) for name in ("selection", "test")}


@pytest.fixture(scope="session")
def features(selection_baseline, request) -> dict:
    """The chosen features (selection split): ``correct`` (largest AUROC for solved vs failed) and
    ``incorrect`` (smallest), the AUROCs, the random features of the controls (oriented as on the
    selection split), and the alive features (nonzero on some selection problem). A baseline that
    solves all or none of the selection split ends here, before the SAE encodes any prompt."""
    solved = measure.solved_and_failed(selection_baseline.passed)
    means = request.getfixturevalue("feature_means")["selection"]
    auroc = measure.separation(means, solved)
    alive = np.flatnonzero(means.max(0) > 0)
    if alive.size < N_RANDOM_FEATURES + 2:
        raise DataError(f"only {alive.size} SAE features fire on the selection prompts; the study needs "
                        f"{N_RANDOM_FEATURES + 2} (the two chosen and {N_RANDOM_FEATURES} random controls)")
    chosen = {"correct": int(alive[np.argmax(auroc[alive])]), "incorrect": int(alive[np.argmin(auroc[alive])])}
    rest = np.setdiff1d(alive, list(chosen.values()))
    randoms = np.random.default_rng(SEED).choice(rest, size=N_RANDOM_FEATURES, replace=False)
    return {"chosen": chosen, "auroc": auroc, "alive": alive, "random": [int(f) for f in randoms],
            "random_sign": [1.0 if auroc[f] >= 0.5 else -1.0 for f in randoms]}


# Each steering control is CONTROL_DRAWS draws, each steering its share of the problems (a seeded
# balanced assignment by task id, `control_draws`), so its flip rate is a mean over draws and problems,
# not one draw's: random direction i is `measure.random_unit(d, SEED + i)`, random feature i the i-th of
# the seeded random features. Every problem still runs once per control (the cost of one draw).
CONTROL_DRAWS = 5


@pytest.fixture(scope="session")
def directions(codegen, sae, features) -> dict:
    """Unit steering directions: the chosen features' decoder rows ``[d_model]``; the controls'
    `CONTROL_DRAWS` draws ``[k, d_model]``: random directions (the norm-matched control) and random
    SAE features' decoder rows (the first k random features)."""
    row = lambda f: measure.unit(feature_direction(codegen, sae, f).vector)   # noqa: E731 (checks the index)
    out = {name: row(f) for name, f in features["chosen"].items()}
    out["random-direction"] = torch.stack([measure.random_unit(int(sae.cfg.d_in), SEED + i)
                                           for i in range(CONTROL_DRAWS)])
    out["random-feature"] = torch.stack([row(f) for f in features["random"][:CONTROL_DRAWS]])
    return out


@pytest.fixture(scope="session")
def control_draws(problems) -> dict[int, int]:
    """Which of a control's `CONTROL_DRAWS` draws steers each test problem: ``{task_id: draw}``."""
    return measure.balanced_draws([p.task_id for p in problems["test"]], CONTROL_DRAWS, seed=SEED)


@pytest.fixture(scope="session")
def scale(codegen, prompts, site, thresholds) -> dict:
    """How a coefficient becomes a vector norm: the site's mean residual norm over the tuning
    prompts and the factor ``norm / reference_norm`` (1 when the grid is taken as given)."""
    norm = measure.residual_norm(codegen, prompts["tuning"][0], site)
    factor = 1.0 if thresholds.reference_norm is None else norm / thresholds.reference_norm
    return {"residual_norm": norm, "reference_norm": thresholds.reference_norm, "factor": factor}


def _grid_conditions(names) -> list[Condition]:
    return [Condition(None)] + [Condition(n, float(c)) for n in names for c in GRID]


@pytest.fixture(scope="session")
def tuning_grid(codegen, problems, prompts, directions, site, scale, thresholds, executor) -> dict:
    """The source's grid for both chosen features on `N_TUNING` tuning problems (stratified by
    complexity): ``{"problems", "runs": {Condition: Outcomes}}``."""
    picked = by_complexity(problems["tuning"], seed=SEED, n=min(N_TUNING, len(problems["tuning"])))
    index = {p.task_id: i for i, p in enumerate(problems["tuning"])}
    texts = [prompts["tuning"][0][index[p.task_id]] for p in picked]
    runs = measure.steer(codegen, picked, texts, _grid_conditions(FEATURES), directions=directions, site=site,
                         scale=scale["factor"], max_new_tokens=thresholds.max_new_tokens, executor=executor)
    return {"problems": picked, "runs": runs}


@pytest.fixture(scope="session")
def selection(tuning_grid, thresholds, scale, features, claims_settings) -> dict:
    """The selection rule on the tuning grid, per feature: the grid's numbers and the coefficient
    the rule picks (None when none qualifies), written to ``codegen/selected_coefficients.json``."""
    base = tuning_grid["runs"][Condition(None)]
    out = {}
    for name in FEATURES:
        rows = []
        for c in GRID:
            run = tuning_grid["runs"][Condition(name, float(c))]
            f = measure.flips(base, run)
            n = len(run.statuses)
            rows.append({"coefficient": c, "vector_norm": round(c * scale["factor"], 6),
                         "flip_rate": round(float((f["fixed"] | f["broken"]).mean()), 4),
                         "fixed": int(f["fixed"].sum()), "broken": int(f["broken"].sum()),
                         "pass_rate": round(float(run.passed.mean()), 4),
                         "syntax_error_rate": round(float(run.syntax_error.mean()), 4), "n": n})
        picked = measure.select_coefficient(rows, band=FLIP_BAND, max_syntax=thresholds.max_syntax_error_rate)
        out[name] = {"feature": features["chosen"][name], "selected": None if picked is None else picked["coefficient"],
                     "grid": rows}
    report = {
        "rule": (f"the smallest coefficient whose flip rate (pass->fail plus fail->pass against the unsteered "
                 f"baseline) lies in [{FLIP_BAND[0]}, {FLIP_BAND[1]}] and whose syntax-error rate is below "
                 f"{thresholds.max_syntax_error_rate}"),
        "split": f"tuning, {len(tuning_grid['problems'])} problems stratified by complexity",
        "coefficient_unit": ("the source's coefficients, unit-norm decoder rows" if scale["reference_norm"] is None
                             else f"coefficient c adds c * {scale['residual_norm']:.4g} / {scale['reference_norm']:g} "
                                  "along the unit decoder row: c% of the site's mean residual norm "
                                  f"({scale['residual_norm']:.4g}) when the reference norm is 100"),
        "baseline_pass_rate": round(float(base.passed.mean()), 4),
        "features": out,
    }
    folder = Path(claims_settings.report_dir) / "codegen"
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "selected_coefficients.json", json.dumps(report, indent=1) + "\n")
    return out


@pytest.fixture(scope="session")
def test_grid(codegen, problems, prompts, directions, site, scale, thresholds, executor, baseline,
              control_draws, claims_settings) -> dict:
    """The whole grid, both features and both controls, on `N_TEST_GRID` test problems (stratified):
    ``{"problems", "rows" (their indices in the test split), "runs": {Condition: Outcomes},
    "similarity": {Condition: {"char", "token"}: [n] similarity to the baseline generation}}``."""
    picked = by_complexity(problems["test"], seed=SEED + 1, n=min(N_TEST_GRID, len(problems["test"])))
    index = {p.task_id: i for i, p in enumerate(problems["test"])}
    rows = [index[p.task_id] for p in picked]
    texts = [prompts["test"][0][i] for i in rows]
    runs = measure.steer(codegen, picked, texts, _grid_conditions(FEATURES + CONTROLS)[1:], directions=directions,
                         site=site, scale=scale["factor"], max_new_tokens=thresholds.max_new_tokens,
                         executor=executor, draw_of=[control_draws[p.task_id] for p in picked])
    runs[Condition(None)] = measure.Outcomes(*(tuple(getattr(baseline, f)[i] for i in rows)
                                                   for f in ("texts", "codes", "tokens", "statuses")))
    from claims.codegen.artifacts import similarity_to_baseline, write_grid

    grid = {"problems": picked, "rows": rows, "runs": runs,
            "similarity": {c: similarity_to_baseline(runs[Condition(None)], run) for c, run in runs.items()}}
    write_grid(grid, Path(claims_settings.report_dir) / "codegen", codegen=codegen, scale=scale)
    return grid


@pytest.fixture(scope="session")
def held_out(codegen, problems, prompts, directions, site, scale, thresholds, executor, baseline, test_grid,
             control_draws, claims_settings) -> dict:
    """Every test problem under each feature and both controls at the stated coefficients
    (`Thresholds.selected`): ``{Condition: Outcomes}`` in test-split order (grid rows reused)."""
    wanted = sorted({Condition(d, float(thresholds.selected[f])) for f in FEATURES for d in (f, *CONTROLS)},
                    key=lambda c: (c.direction, c.coefficient))
    in_grid = set(test_grid["rows"])
    rest = [i for i in range(len(problems["test"])) if i not in in_grid]
    runs = {}
    if rest:
        runs = measure.steer(codegen, [problems["test"][i] for i in rest], [prompts["test"][0][i] for i in rest],
                             wanted, directions=directions, site=site, scale=scale["factor"],
                             max_new_tokens=thresholds.max_new_tokens, executor=executor,
                             draw_of=[control_draws[problems["test"][i].task_id] for i in rest])
    out = {}
    for c in wanted:
        grid = test_grid["runs"][c] if c.coefficient in GRID else None
        merged = {}
        for k, i in enumerate(test_grid["rows"]):
            merged[i] = tuple(getattr(grid, f)[k] for f in ("texts", "codes", "tokens", "statuses")) if grid else None
        for k, i in enumerate(rest):
            merged[i] = tuple(getattr(runs[c], f)[k] for f in ("texts", "codes", "tokens", "statuses"))
        if any(v is None for v in merged.values()):
            raise DataError(f"coefficient {c.coefficient:g} is not in the grid {GRID}; state a grid coefficient")
        ordered = [merged[i] for i in range(len(problems["test"]))]
        out[c] = measure.Outcomes(*(tuple(row[j] for row in ordered) for j in range(4)))
    from claims.codegen.artifacts import write_flips

    write_flips(baseline, out, Path(claims_settings.report_dir) / "codegen")
    return out


def pytest_generate_tests(metafunc):
    """A claim at the selected coefficients takes ``steered`` = (feature, coefficient, control), so
    its id names them (``correct-coef30-vs-random-direction``) and ``-k coef30`` selects it; the
    coefficients are the model's row in THRESHOLDS (the rule must select them: test_grid.py)."""
    if "steered" in metafunc.fixturenames:
        from claims.codegen.settings import thresholds_at_collection

        row = thresholds_at_collection(metafunc.config)
        selected = row.selected if row is not None else {f: 0 for f in FEATURES}
        cases = [(f, selected[f], c) for f in FEATURES for c in CONTROLS]
        metafunc.parametrize("steered", cases, ids=[f"{f}-coef{s}-vs-{c}" for f, s, c in cases])

