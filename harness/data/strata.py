"""Seeded selections stratified by a numeric value (e.g. MBPP problems by cyclomatic complexity).

    stratified_sample(rows, value=, key=, edges=, seed=, per_stratum= | n=)

Within each stratum rows are ranked by a blake2b hash of (seed, key), so a selection depends on
the seed and on the set of rows, not on their order (as `harness.measures.directions` ranks
rows). Plain Python (no torch).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Callable, Hashable, Sequence

from harness.errors import DataError

__all__ = ["stratified_sample"]


def _rank(seed: int, key: Hashable) -> bytes:
    h = hashlib.blake2b(digest_size=16, person=b"strata-sample")
    h.update(f"{seed}|{key!r}".encode())
    return h.digest()


def _allocate(sizes: list[int], n: int) -> list[int]:
    """Largest-remainder shares of ``n`` proportional to ``sizes`` (ties to the earlier stratum)."""
    total = sum(sizes)
    exact = [n * s / total for s in sizes]
    out = [math.floor(x) for x in exact]
    for i in sorted(range(len(sizes)), key=lambda i: (out[i] - exact[i], i))[: n - sum(out)]:
        out[i] += 1
    return out


def stratified_sample(rows: Sequence[Any], *, value: Callable[[Any], float], key: Callable[[Any], Hashable],
                      edges: Sequence[float], seed: int, per_stratum: int | None = None,
                      n: int | None = None) -> list[Any]:
    """A seeded selection of ``rows`` stratified by a numeric ``value``.

    Example::

        stratified_sample(problems, value=lambda p: complexity(p.code), key=lambda p: p.task_id,
                          edges=(1, 2, 4, math.inf), per_stratum=20, seed=0)

    Stratum ``i`` holds the rows with ``edges[i] <= value < edges[i + 1]``. Give exactly one of
    ``per_stratum`` (that many rows from every stratum) or ``n`` (n rows in all, shared in
    proportion to the strata's sizes by largest remainders). Within a stratum rows are ranked by
    a hash of (seed, ``key(row)``) and the first are taken; the result lists stratum by stratum,
    in rank order. Raises `DataError` for edges that do not increase, a value outside the edges,
    a key shared by two rows, a stratum smaller than ``per_stratum`` or ``n`` above the row count.
    """
    edges = list(edges)
    if len(edges) < 2 or any(not a < b for a, b in zip(edges, edges[1:])):
        raise DataError(f"`edges` must be two or more strictly increasing numbers, got {edges!r}")
    if (per_stratum is None) == (n is None):
        raise DataError("give exactly one of `per_stratum` (rows from each stratum) or `n` (rows in all)")
    count = per_stratum if n is None else n
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise DataError(f"`{'per_stratum' if n is None else 'n'}` must be a positive integer, got {count!r}")
    strata: list[list[tuple[bytes, str, Any]]] = [[] for _ in edges[:-1]]
    seen: set = set()
    for i, row in enumerate(rows):
        k, v = key(row), value(row)
        if k in seen:
            raise DataError(f"row {i} has the key {k!r} of an earlier row; keys must identify rows")
        seen.add(k)
        s = next((j for j in range(len(strata)) if edges[j] <= v < edges[j + 1]), None)
        if s is None:
            raise DataError(f"row {i} (key {k!r}) has value {v!r} outside `edges` [{edges[0]}, {edges[-1]}); "
                            "widen the edges (math.inf closes the last stratum)")
        strata[s].append((_rank(seed, k), repr(k), row))
    sizes = [len(s) for s in strata]
    if n is not None and n > len(seen):
        raise DataError(f"`n`={n} is more than the {len(seen)} rows given")
    want = [per_stratum] * len(strata) if n is None else _allocate(sizes, n)
    short = [f"[{edges[j]}, {edges[j + 1]}): {sizes[j]}" for j in range(len(strata)) if sizes[j] < want[j]]
    if short:
        raise DataError(f"`per_stratum`={per_stratum} but these strata have fewer rows: {'; '.join(short)}; "
                        f"lower `per_stratum` to {min(sizes)}, merge strata in `edges`, or pass `n`")
    return [row for s, k in zip(strata, want) for _, _, row in sorted(s, key=lambda t: t[:2])[:k]]
