"""What the code-generation study writes beside the report (``<report>/codegen/``).

    rates(baseline, run, seed=)    pass rate, both flip rates, syntax-error rate (Wilson) and similarity (bootstrap)
    write_grid(grid, folder, ...)  grid_test.png (every rate against the coefficient, per direction, CI bands),
                                   flips_grid.json and examples/coef<C>.md
    write_flips(baseline, runs, folder)   flips.json: both flip directions of every held-out condition
    write_baseline(problems, baseline, folder)   baseline.json: the unsteered run's status and code per problem
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness import DataError, divergence, stats
from harness.atomic import write_text_atomic
from harness.reports.plots import plot_panels

from claims.codegen import measure
from claims.codegen.measure import Condition, Outcomes
from claims.codegen.settings import CONTROLS, FEATURES, GRID

PANELS = ("pass rate", "fixed (fail -> pass)", "broken (pass -> fail)", "similarity to baseline", "syntax errors")


def rates(baseline: Outcomes, run: Outcomes, *, similarity: np.ndarray | None = None, seed: int = 0,
          n_resamples: int = 999) -> dict:
    """The `PANELS` of one condition against the baseline, as Estimates over its n problems: the
    rates are Wilson intervals over all n problems, the similarity (`similarity`, per problem; left
    out when None) a bootstrap mean."""
    f = measure.flips(baseline, run)
    n = len(run.statuses)
    out = {
        "pass rate": stats.proportion(int(run.passed.sum()), n),
        "fixed (fail -> pass)": stats.proportion(int(f["fixed"].sum()), n),
        "broken (pass -> fail)": stats.proportion(int(f["broken"].sum()), n),
        "syntax errors": stats.proportion(int(run.syntax_error.sum()), n),
    }
    if similarity is not None:
        out["similarity to baseline"] = _mean(similarity, seed, n_resamples)
    return {p: out[p] for p in PANELS if p in out}


def similarity_to_baseline(baseline: Outcomes, run: Outcomes) -> dict[str, np.ndarray]:
    """``{"char", "token"}``: ``[n]`` similarity (difflib) of each steered generation to the
    baseline generation of the same prompt, over characters of the generated text and over the
    generated token ids."""
    d = divergence(list(baseline.texts), list(run.texts), baseline_tokens=[list(t) for t in baseline.tokens],
                   steered_tokens=[list(t) for t in run.tokens])
    return {"char": d.char_similarity, "token": d.token_similarity}


def _mean(values: np.ndarray, seed: int, n_resamples: int):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # constant similarity (1.0) is degenerate, not an error
        return stats.bootstrap_mean(values, seed=seed, n_resamples=n_resamples, method="percentile")


def _row(est) -> dict:
    return {"value": round(est.value, 4), "ci": [round(est.ci_low, 4), round(est.ci_high, 4)], "n": est.n}


def write_grid(grid: dict, folder: Path, *, codegen, scale: dict) -> None:
    """The test grid's plot, its numbers and example generations per coefficient."""
    runs = grid["runs"]
    base = runs[Condition(None)]
    names = [*FEATURES, *CONTROLS]
    table = {name: [rates(base, runs[Condition(name, float(c))], similarity=grid["similarity"][Condition(name, float(c))]["char"])
                    for c in GRID] for name in names}
    unit = ("coefficient (unit decoder row)" if scale["reference_norm"] is None
            else f"coefficient (% of residual norm {scale['residual_norm']:.3g})")
    plot_panels({panel: {name: [r[panel] for r in table[name]] for name in names} for panel in PANELS},
                GRID, folder / "grid_test.png", log_x=True, xlabel=unit,
                title=f"steering at every position, {len(grid['problems'])} test problems, 95% CIs")
    numbers = {name: {f"coef{c}": {panel: _row(r[panel]) for panel in PANELS} for c, r in zip(GRID, table[name])}
               for name in names}
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "flips_grid.json", json.dumps(
        {"split": f"test, {len(grid['problems'])} problems", "baseline_pass_rate": round(float(base.passed.mean()), 4),
         "conditions": numbers}, indent=1) + "\n")
    _write_examples(grid, folder / "examples")


def _write_examples(grid: dict, folder: Path, per_coefficient: int = 3) -> None:
    """``coef<C>.md``: for the first problems of the grid, the baseline code and each direction's
    code at coefficient C, with their execution status."""
    runs = grid["runs"]
    base = runs[Condition(None)]
    folder.mkdir(parents=True, exist_ok=True)
    for c in GRID:
        lines = [f"# Steering coefficient {c}: example generations (test split)", ""]
        for k, problem in enumerate(grid["problems"][:per_coefficient]):
            lines += [f"## task {problem.task_id}: {problem.text}", "", f"baseline ({base.statuses[k]}):", "",
                      "```python", base.codes[k] or "# (no code)", "```", ""]
            for name in (*FEATURES, *CONTROLS):
                run = runs[Condition(name, float(c))]
                lines += [f"{name} ({run.statuses[k]}):", "", "```python", run.codes[k] or "# (no code)", "```", ""]
        write_text_atomic(folder / f"coef{c}.md", "\n".join(lines))


def write_flips(baseline: Outcomes, runs: dict, folder: Path) -> None:
    """``flips.json``: every held-out condition's pass rate and both flip rates (Wilson), always both."""
    out = {}
    for cond, run in sorted(runs.items(), key=lambda kv: (kv[0].direction, kv[0].coefficient)):
        r = rates(baseline, run)
        out[f"{cond.direction}-coef{cond.coefficient:g}"] = {p: _row(e) for p, e in r.items()}
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "flips.json", json.dumps(
        {"split": f"test, {len(baseline.statuses)} problems", "baseline_pass_rate": round(float(baseline.passed.mean()), 4),
         "conditions": out}, indent=1) + "\n")


def write_baseline(problems, baseline: Outcomes, folder: Path) -> None:
    """``baseline.json``: the unsteered greedy run of the test split, its pass rate, how many
    problems end in each execution status, and each problem's task id, status and extracted code
    (written for every model, with or without an SAE)."""
    if len(problems) != len(baseline.statuses):
        raise DataError(f"`problems` has {len(problems)} problems but `baseline` {len(baseline.statuses)} runs; "
                         "give the problems the baseline ran on")
    counts = {s: baseline.statuses.count(s) for s in sorted(set(baseline.statuses))}
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "baseline.json", json.dumps(
        {"split": f"test, {len(problems)} problems", "pass_rate": round(float(baseline.passed.mean()), 4),
         "statuses": counts,
         "problems": [{"task_id": p.task_id, "status": s, "code": c}
                      for p, s, c in zip(problems, baseline.statuses, baseline.codes)]}, indent=1) + "\n")
