"""The codegen fixture's data: a seeded generator of short Python function tasks in MBPP's schema
(fixtures/codegen/data.py) and its shipped splits (fixtures/codegen/data/).

Determinism (same seed, same bytes, whatever the hash seed), the shipped files equal what the
generator writes and MANIFEST.json records the generator's sha256, `read_mbpp` reads them, the
solutions have one style and pass their own tests (in process here; through
`harness.execution.run_many` in the slow test), the complexity strata are each covered, and
no held-out problem is in the training set (the 20000 training problems are regenerated)."""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.data import by_complexity, complexity, extract_code, mbpp_fewshot, mbpp_prompt, read_mbpp
from harness.data.programs import COMPLEXITY_EDGES
from harness.execution import run_many

from fixtures.codegen import data   # the generator, the module the recipe uses

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "fixtures" / "codegen" / "data.py"
DATA = GENERATOR.parent / "data"
HELD_OUT = ("selection", "tuning", "test")
PER_STRATUM = 60          # problems of each complexity stratum in each held-out split
PER_CELL = 12             # of each family in each stratum



def _stratum(c: int) -> int:
    return next(i for i in range(len(COMPLEXITY_EDGES) - 1) if COMPLEXITY_EDGES[i] <= c < COMPLEXITY_EDGES[i + 1])


@pytest.fixture(scope="module")
def shipped():
    """The shipped splits as read by `read_mbpp`."""
    return {name: read_mbpp(DATA / f"{name}.jsonl") for name in data.SHIPPED}


@pytest.fixture(scope="module")
def held_out_meta():
    """The shipped splits regenerated with their metadata (family, complexity, key)."""
    return data.splits(data.SHIPPED, meta=True)


@pytest.fixture(scope="module")
def regenerated():
    """Every split of `SPLITS` with its metadata, train included (about 10 s)."""
    return data.splits(meta=True)


# --------------------------------------------------------------------------- the generator


def test_the_generator_is_seeded():
    a = "".join(map(data.row_to_jsonl, data.problems(5, 60)))
    assert a == "".join(map(data.row_to_jsonl, data.problems(5, 60)))
    assert a != "".join(map(data.row_to_jsonl, data.problems(6, 60)))


def test_the_output_does_not_depend_on_the_hash_seed():
    """A child with another PYTHONHASHSEED prints the shipped test split byte for byte."""
    for hash_seed in ("0", "12345"):
        proc = subprocess.run([sys.executable, str(GENERATOR), "--print", "test"], capture_output=True,
                              env={**os.environ, "PYTHONHASHSEED": hash_seed}, timeout=300, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        assert proc.stdout == (DATA / "test.jsonl").read_bytes()


def test_the_shipped_files_are_what_the_generator_writes(tmp_path):
    written = data.write_splits(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in DATA.iterdir()), \
        "fixtures/codegen/data/ holds other files than the generator writes"
    for path in written:
        assert path.read_bytes() == (DATA / path.name).read_bytes(), \
            f"{path.name} differs from the generator's: run `python fixtures/codegen/data.py --write`"


def test_the_manifest_records_the_generator_and_the_files():
    manifest = json.loads((DATA / "MANIFEST.json").read_text())
    assert manifest["generator_sha256"] == hashlib.sha256(GENERATOR.read_bytes()).hexdigest(), \
        "fixtures/codegen/data.py changed since the data was written: rerun it with --write"
    assert manifest["generator_sha256"] == data.generator_sha256()
    assert list(manifest["splits"]) == list(data.SHIPPED)
    for name, entry in manifest["splits"].items():
        assert entry["sha256"] == hashlib.sha256((DATA / entry["file"]).read_bytes()).hexdigest()
        assert entry["rows"] == data.SPLITS[name].size


def test_the_shipped_data_is_small():
    total = sum(p.stat().st_size for p in DATA.iterdir())
    assert total < 3 * 2 ** 20, f"fixtures/codegen/data/ is {total} bytes"


def test_every_family_has_templates_at_every_complexity_with_many_distinct_problems():
    """Each family x complexity cell draws hundreds of distinct keys from the kinds the held-out
    splits use, so the ~40 problems they take from a cell leave the training set most of it."""
    import random

    for family in data.FAMILIES:
        for c in range(1, 7):
            fns, weights = data._templates_for(family, c, rare=False)
            assert fns, f"no template of family {family} at complexity {c}"
            rng = random.Random(c)
            keys, draws = set(), 0
            while draws < 400:
                fn = rng.choices(fns, weights)[0]
                d = fn(rng, c)
                if not data._is_rare(fn.__name__, d):
                    draws += 1
                    keys.add((fn.__name__, d.key))
            assert len(keys) >= 120, f"{family} at complexity {c}: only {len(keys)} distinct keys in 400 draws"


def test_problems_excludes_what_it_is_told_and_can_add_metadata():
    first = data.problems(3, 50, meta=True)
    assert {"family", "complexity", "template", "key"} <= set(first[0])
    again = data.problems(3, 50, exclude=first)
    assert not {(r["text"], r["code"]) for r in first} & {(r["text"], r["code"]) for r in again}
    assert not {r["text"] for r in first} & {r["text"] for r in again}
    assert [r["task_id"] for r in data.problems(3, 5, first_id=100)] == [100, 101, 102, 103, 104]
    assert {complexity(r["code"]) for r in data.problems(4, 20, strata=((3,),))} == {3}
    with pytest.raises(ValueError, match="unknown splits"):
        data.splits(["validation"])


def test_split_of_maps_task_ids_to_splits():
    assert data.split_of(1) == data.split_of(10) == "prompt"
    assert data.split_of(11) == "selection" and data.split_of(910) == "test"
    assert data.split_of(1001) == data.split_of(21000) == "train"
    with pytest.raises(ValueError):
        data.split_of(950)


# --------------------------------------------------------------------------- the shipped splits


def test_read_mbpp_reads_every_shipped_split(shipped):
    for name, problems in shipped.items():
        s = data.SPLITS[name]
        assert [p.task_id for p in problems] == list(range(s.first_id, s.first_id + s.size))
        for p in problems:
            assert len(p.tests) == 3 and p.setup == "" and p.challenge_tests == ()
            assert data.split_of(p.task_id) == name
    for name in data.SHIPPED:  # the file holds exactly MBPP's fields, in mbpp.jsonl's order
        assert all(list(r) == list(data.FIELDS) for r in data.read_rows(DATA / f"{name}.jsonl"))


_ASSERT = re.compile(r"^assert (\w+)\((.*)\) == (.+)$")


def test_problems_have_mbpp_texts_one_function_and_right_asserts(shipped):
    for problems in shipped.values():
        for p in problems:
            assert re.match(r"^Write a (python )?function (to|that) ", p.text) and p.text.endswith("."), p.text
            tree = ast.parse(p.code)
            assert len(tree.body) == 1 and isinstance(tree.body[0], ast.FunctionDef), p.code
            name = tree.body[0].name
            assert p.code.startswith(f"def {name}(") and not p.code.endswith("\n")
            for line in p.code.split("\n"):
                indent = len(line) - len(line.lstrip(" "))
                assert indent % 4 == 0 and "\t" not in line and line == line.rstrip(), repr(line)
            calls, expected = [], []
            for test in p.tests:
                m = _ASSERT.match(test)
                assert m and m.group(1) == name, test
                calls.append(m.group(2))
                expected.append(ast.literal_eval(m.group(3)))
            assert len(set(calls)) == 3, p.tests                 # three different inputs
            assert len({repr(x) for x in expected}) >= 2, p.tests  # a constant answer passes none
            # a completion that is the reference solution comes back whole from extract_code
            assert extract_code(p.code + "\n[DONE]\nYou are an expert") == p.code


def test_every_reference_solution_passes_its_tests_in_process(shipped):
    for problems in shipped.values():
        for p in problems:
            space: dict = {}
            exec(p.code, space)  # generated reference code
            for test in p.tests:
                exec(test, space)


@pytest.mark.slow
def test_every_reference_solution_passes_its_tests_through_run_many(shipped):
    problems = [p for name in data.SHIPPED for p in shipped[name]]
    results = run_many([p.program() for p in problems], workers=2, timeout_s=30.0)
    failing = {p.task_id: f"{r.status}: {r.detail}" for p, r in zip(problems, results) if not r.passed}
    assert not failing, failing


def test_each_held_out_split_covers_every_complexity_stratum(shipped, held_out_meta):
    for name in HELD_OUT:
        strata = Counter(_stratum(complexity(p.code)) for p in shipped[name])
        assert strata == {i: PER_STRATUM for i in range(len(COMPLEXITY_EDGES) - 1)}, (name, strata)
        exact = Counter(complexity(p.code) for p in shipped[name])
        assert exact[4] == exact[5] == PER_STRATUM // 2 and max(exact) == 6
        cells = Counter((r["family"], _stratum(r["complexity"])) for r in held_out_meta[name])
        assert set(cells.values()) == {PER_CELL} and len(cells) == len(data.FAMILIES) * 5, (name, cells)
        picked = by_complexity(shipped[name], per_stratum=50, seed=0)
        assert len(picked) == 250
    assert {complexity(p.code) for p in shipped["prompt"]} == {1, 2}


def test_the_standard_prompt_takes_its_shots_from_the_prompt_split(shipped):
    shots = mbpp_fewshot(shipped["prompt"])
    assert [s.task_id for s in shots] == [2, 3, 4]
    prompt = mbpp_prompt(shipped["test"][0], shots=shots)
    assert prompt.count("[BEGIN]") == 4 and prompt.endswith("[BEGIN]\n")


# --------------------------------------------------------------------------- training vs held out


def test_no_held_out_problem_is_in_the_training_set(regenerated):
    train = regenerated["train"]
    assert len(train) == data.SPLITS["train"].size
    assert [r["task_id"] for r in train] == list(range(1001, 1001 + len(train)))
    held = [r for name in data.SHIPPED for r in regenerated[name]]
    train_pairs = {(r["text"], r["code"]) for r in train}
    assert len(train_pairs) == len(train), "training problems repeat"
    assert not {(r["text"], r["code"]) for r in held} & train_pairs
    # stronger: no shared text, code or key (a held-out problem is a new combination, not a renaming)
    for field in ("text", "code", "key"):
        shared = {r[field] for r in held} & {r[field] for r in train}
        assert not shared, f"held-out and training problems share a {field}: {sorted(shared)[:3]}"
    for field in ("key", "text", "code"):
        values = [r[field] for r in held]
        assert len(set(values)) == len(values), f"held-out problems repeat a {field}"
    assert not [r["key"] for r in held if r["template"] in data.RARE_KINDS and
                ast.literal_eval(r["key"])[2][0] in data.RARE_KINDS[r["template"]]], "a kind of a few keys is held out"
    assert not {r["template"] for r in held} & {n for n, (*_, w) in data.TEMPLATES.items() if w < 1}
    strata = Counter(_stratum(r["complexity"]) for r in train)
    assert strata == {i: len(train) // 5 for i in range(5)}


def test_the_regenerated_held_out_splits_are_the_shipped_ones(regenerated):
    for name in data.SHIPPED:
        text = "".join(map(data.row_to_jsonl, regenerated[name]))
        assert text == (DATA / f"{name}.jsonl").read_text(encoding="utf-8")


def test_the_training_problems_cover_each_family_and_complexity(regenerated):
    cells = Counter((r["family"], r["complexity"]) for r in regenerated["train"])
    assert all(cells[(f, c)] >= 300 for f in data.FAMILIES for c in range(1, 7)), cells
    assert math.isclose(sum(cells.values()), data.SPLITS["train"].size)
