"""MBPP's reference solutions run against their own tests through `harness.execution.run_many`.

Every solution of ``mbpp.jsonl`` must pass its ``test_list`` (with ``test_setup_code`` run after
the code, as `MbppProblem.program` arranges) except the ones named in `KNOWN_FAILURES`, whose
expected values depend on the CPython version that wrote them; every solution of
``sanitized-mbpp.json`` must pass (its tests were rewritten to not depend on such things).
Slow: about 100 s and 45 s on 2 workers of a shared 2-core machine.
"""

from __future__ import annotations


import pytest

from harness.data import read_mbpp
from harness.execution import run_many
from tests._support.paths import ROOT

MBPP = ROOT.parent / "shared" / "data" / "mbpp"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (MBPP / "mbpp.jsonl").is_file(),
                       reason=f"the MBPP release is not at {MBPP} (copy mbpp.jsonl and sanitized-mbpp.json "
                              "from google-research/google-research mbpp/ there)"),
]
TIMEOUT_S = 30.0  # generous: the slowest solution takes ~5 s of wall time on a loaded machine

# Found by running every solution (CPython 3.11, 64-bit Linux) and reading why each fails; the
# later upstream revision of mbpp.jsonl corrects all three (see SOURCE.md beside the data).
KNOWN_FAILURES = {
    341: "set iteration order: `tuple({12, 13, 14, 15, 16})` is (16, 12, 13, 14, 15) when the set's hash "
         "table has 8 slots, as a 5-element set literal gets here; the expected (12, ..., 16) needs the larger "
         "table the CPython that wrote the tests built. The solution `tuple(s)` never sorts",
    596: "object size of the build: the tests expect `sys.getsizeof` of a 6-tuple to be 104 and of a 4-tuple 88; "
         "64-bit CPython 3.11 gives 88 and 72 (a smaller object header than the build that wrote them)",
    642: "set order of tuples: `tuple(set(pair))` orders two tuples by their hashes, and CPython 3.8 replaced "
         "the tuple hash (xxHash-based), so the expected pairs' order is that of an older Python; "
         "the first test happens to agree, the second does not",
}


def test_every_reference_solution_passes_its_tests_except_the_named_build_dependent_ones():
    problems = read_mbpp(MBPP)
    assert len(problems) == 974
    results = run_many([p.program() for p in problems], workers=2, timeout_s=TIMEOUT_S)
    failing = {p.task_id: r for p, r in zip(problems, results) if not r.passed}
    unexpected = {t: f"{r.status}: {r.detail}" for t, r in failing.items() if t not in KNOWN_FAILURES}
    assert not unexpected, f"reference solutions that fail their own tests: {unexpected}"
    # A named one may pass on another build, but where it fails, it is a wrong value, not a crash.
    assert all(failing[t].status == "failed" for t in failing.keys() & KNOWN_FAILURES), \
        {t: failing[t].detail for t in failing.keys() & KNOWN_FAILURES}
    assert sum(r.passed for r in results) >= 974 - len(KNOWN_FAILURES)


def test_every_sanitized_solution_passes_its_tests_with_its_test_imports():
    problems = read_mbpp(MBPP, sanitized=True)
    assert len(problems) == 427
    results = run_many([p.program() for p in problems], workers=2, timeout_s=TIMEOUT_S)
    failing = {p.task_id: f"{r.status}: {r.detail}" for p, r in zip(problems, results) if not r.passed}
    assert not failing, f"sanitized solutions that fail their own tests: {failing}"
