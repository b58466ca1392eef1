"""The code-generation study's coefficient grid against the source's loop, on the shipped fixture in the same run.

The source ("001") steers one prompt at a time: for each coefficient and each problem, greedy
generation under a hook that adds coefficient x the decoder row at every position, then the code
is run against the tests, one program after another. The study runs the same grid (2 features x
7 coefficients x 10 problems = 140 generations, the source's size, and the 10 unsteered
baselines) as one batched `generate` call (left-padded batches, key/value cache, one chained edit
per feature) and executes the distinct programs through the two-worker pool. The generated code
must agree row for row (greedy decoding of a padded batch may break a near-tie differently from
one prompt alone, so at least 95% of rows), and the target is at least 5x.

Run with ``pytest benchmarks/test_bench_codegen.py``.
"""

from __future__ import annotations

import time

import pytest
import torch

from harness import Add, generate, load_model
from harness.data import DONE, by_complexity, extract_code, read_mbpp
from harness.execution import run_tests
from harness.models.fixtures import fixtures_dir, resolve
from harness.saes import load_sae, sae_site

from claims.codegen import measure
from claims.codegen.measure import Condition
from claims.codegen.settings import GRID, THRESHOLDS
from timing import best_of

N_PROBLEMS = 10
MAX_NEW = THRESHOLDS["fixture:codegen"].max_new_tokens


@pytest.fixture(scope="module")
def setting():
    model = load_model("fixture:codegen")
    sae = load_sae(resolve("codegen") / "sae")
    problems = by_complexity(read_mbpp(fixtures_dir() / "codegen" / "data" / "tuning.jsonl"), seed=0, n=N_PROBLEMS)
    prompts, _ = measure.prompts_of(problems)
    site = str(sae_site(model, sae))
    w = sae.W_dec.detach().float()
    directions = {"a": measure.unit(w[0]), "b": measure.unit(w[1])}
    scale = measure.residual_norm(model, prompts, site) / THRESHOLDS["fixture:codegen"].reference_norm
    return model, problems, prompts, site, directions, scale


def source_loop(model, problems, prompts, site, directions, scale):
    """One prompt, one coefficient at a time; each program run alone."""
    codes, statuses = {}, {}
    for name, d in [(None, None), *directions.items()]:
        for c in ([0.0] if name is None else GRID):
            for p, text in zip(problems, prompts):
                plan = None if name is None else {site: Add(d, alpha=float(c) * scale)}
                g = generate(model, [text], interventions=plan, max_new_tokens=MAX_NEW, stop=[DONE], batch_size=1)[0]
                code = extract_code(g.text)
                codes[name, c, p.task_id] = code
                program, tests, setup = p.program(code)
                statuses[name, c, p.task_id] = run_tests(program, tests, setup=setup, compare="strict",
                                                         **measure.EXECUTION_LIMITS).status
    return codes, statuses


def test_the_batched_grid_is_faster_than_the_source_loop_and_agrees(benchmark, setting):
    torch.set_num_threads(2)
    model, problems, prompts, site, directions, scale = setting
    t0 = time.perf_counter()
    codes, statuses = source_loop(model, problems, prompts, site, directions, scale)
    loop_s = time.perf_counter() - t0
    conditions = [Condition(None)] + [Condition(n, float(c)) for n in directions for c in GRID]

    def grid():
        return measure.steer(model, problems, prompts, conditions, directions=directions, site=site, scale=scale,
                             max_new_tokens=MAX_NEW, executor=measure.Executor(workers=2))

    runs, grid_s = best_of(benchmark, grid, rounds=2)
    ratio = loop_s / grid_s
    same = [runs[c].codes[i] == codes[c.direction, c.coefficient, p.task_id]
            for c in conditions for i, p in enumerate(problems)]
    agree = sum(same) / len(same)
    status_agree = sum(runs[c].statuses[i] == statuses[c.direction, c.coefficient, p.task_id]
                       for c in conditions for i, p in enumerate(problems)) / len(same)
    benchmark.extra_info.update(loop_s=loop_s, grid_s=grid_s, ratio=ratio, rows=len(same), code_agreement=agree,
                                status_agreement=status_agree)
    print(f"\n{len(same)} generations + executions: source loop {loop_s:.1f} s, batched grid {grid_s:.1f} s, "
          f"ratio {ratio:.1f}x; identical code in {agree:.1%} of rows, same status in {status_agree:.1%}")
    assert agree >= 0.95, f"only {agree:.1%} of rows give the same code batched and alone"
    assert ratio >= 5.0, f"the batched grid is only {ratio:.1f}x faster than the source's loop"
