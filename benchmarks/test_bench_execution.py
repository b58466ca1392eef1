"""Throughput of `harness.execution.run_many` on MBPP: problems per second, 1 worker against 2.

The first 100 problems of MBPP's test split (task ids 11-110), each reference solution run
against its 3 tests in a fresh supervised child. Each program pays for a supervisor and a fresh
``python -I`` child (most of the ~0.1-0.15 s a problem costs), so two workers on two cores should
run at least 1.2x as many problems per second as one (measured on the shared 2-core machine:
6.3-7.6 problems/s on 1 worker, 11.4-11.8 on 2, a 1.5-1.8x ratio, under a load average of ~8).

Run with ``pytest benchmarks/test_bench_execution.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.data import mbpp_split, read_mbpp
from harness.execution import run_many
from timing import best_of

MBPP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mbpp"
N_PROBLEMS = 100
MIN_RATIO = 1.2


@pytest.fixture(scope="module")
def programs():
    if not (MBPP / "mbpp.jsonl").is_file():
        pytest.skip(f"the MBPP release is not at {MBPP}")
    return [p.program() for p in mbpp_split(read_mbpp(MBPP), "test")[:N_PROBLEMS]]


def run_all(programs, workers: int) -> None:
    results = run_many(programs, workers=workers, timeout_s=30.0)
    failed = [r.detail for r in results if not r.passed]
    assert not failed, failed


def test_two_workers_run_more_problems_per_second_than_one(benchmark, programs):
    run_all(programs[:4], 1)  # warm the page cache for the interpreter and the harness
    t0 = time.perf_counter()
    run_all(programs, 1)
    one_s = time.perf_counter() - t0
    _, two_s = best_of(benchmark, lambda: run_all(programs, 2), rounds=2)
    rates = {1: len(programs) / one_s, 2: len(programs) / two_s}
    benchmark.extra_info.update(problems=len(programs), one_worker_per_s=rates[1], two_workers_per_s=rates[2],
                                ratio=rates[2] / rates[1])
    print(f"\n{len(programs)} MBPP problems: 1 worker {rates[1]:.1f}/s ({one_s:.1f} s), "
          f"2 workers {rates[2]:.1f}/s ({two_s:.1f} s), ratio {rates[2] / rates[1]:.2f}x")
    assert rates[2] / rates[1] >= MIN_RATIO, f"2 workers only {rates[2] / rates[1]:.2f}x as fast as 1"
