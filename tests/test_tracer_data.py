"""The tracer study's data: a seeded generator of straight-line programs over a few variables,
their word-level tokens, counterfactual pairs and JSONL splits (fixtures/tracer/data.py).

Determinism (same seed, same rows; the CLI in a child with another hash seed writes the same
bytes), every value in 0..19, `run` agreeing with Python evaluating each step (the oracle, used
only here), the token round trip with one token per number, the pair invariants (equal token
lengths, the divergence index the first differing token, different answers, `check_pair`
passing) over many seeds, every error of `check_pair`, the `correct` predicate and the error
when too few pairs can be formed, split disjointness and balance, and the write/read round trip
(into tmp_path only)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fixtures.tracer import data   # the generator, the module the recipe and the study use

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "fixtures" / "tracer" / "data.py"

EXAMPLE = "a=3;b=a+4;a=b*2;c=a-b;c?"


def oracle(program: str) -> tuple[list[int], int]:
    """Each step's value and the answer, by Python evaluating each step's expression (split on
    ``;`` and ``=`` by string operations, independently of the generator's parser)."""
    *steps, query = program.split(";")
    assert query.endswith("?")
    env: dict[str, int] = {}
    vals = []
    for step in steps:
        target, expr = step.split("=")
        env[target] = eval(expr, {"__builtins__": {}}, dict(env))   # the oracle: digits, a-d and + - * only
        vals.append(env[target])
    return vals, env[query[:-1]]


@pytest.fixture(scope="module")
def all_splits():
    return data.splits()


@pytest.fixture(scope="module")
def rows(all_splits):
    return all_splits["selection"]


# --------------------------------------------------------------------------- programs


def test_the_example_parses_runs_and_tokenizes():
    steps = data.parse(EXAMPLE)
    assert steps[0] == data.Step("a", "3") and steps[2] == data.Step("a", "b", "*", "2")
    assert data.run(EXAMPLE) == 7 == oracle(EXAMPLE)[1]
    assert data.values(EXAMPLE) == [3, 7, 14, 7]
    assert data.query_of(EXAMPLE) == "c"
    assert data.make_row(EXAMPLE) == {"program": EXAMPLE, "answer": 7, "n_steps": 4, "query": "c",
                                      "reads": [[], ["a"], ["b"], ["a", "b"]]}
    assert data.tokens(EXAMPLE)[:9] == ["a", "=", "3", ";", "b", "=", "a", "+", "4"]
    assert len(data.tokens(EXAMPLE)) == 24


def test_the_generator_is_deterministic_and_the_seed_matters():
    assert data.programs(7, 300) == data.programs(7, 300)
    assert data.programs(7, 300) != data.programs(8, 300)
    assert data.program(random.Random(3), 6) == data.program(random.Random(3), 6)


def test_rows_are_in_range_and_agree_with_the_oracle(rows):
    for row in rows:
        vals, answer = oracle(row["program"])
        assert all(0 <= v <= data.MAX_VALUE for v in vals), row
        assert row["answer"] == answer == data.run(row["program"])
        assert data.values(row["program"]) == vals
        assert row["n_steps"] == len(vals) == len(data.parse(row["program"])) and row["n_steps"] in data.LENGTHS
        assert row["program"].endswith(row["query"] + "?")
        assert row["reads"] == [s.reads() for s in data.parse(row["program"])]
        assigned: set[str] = set()
        for step, reads in zip(data.parse(row["program"]), row["reads"]):
            assert set(reads) <= assigned, row    # a variable is read only after it is assigned
            assigned.add(step.target)
        assert " " not in row["program"]
    # the answers are spread over the range, not crowded on a few values
    counts = Counter(r["answer"] for r in rows)
    assert len(counts) == data.MAX_VALUE + 1 and max(counts.values()) < 0.1 * len(rows)
    assert {s.op for r in rows for s in data.parse(r["program"])} == {None, *data.OPS}


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_steps=st.sampled_from(data.LENGTHS))
def test_run_agrees_with_the_oracle_and_tokens_round_trip(seed, n_steps):
    program = data.program(random.Random(seed), n_steps)
    vals, answer = oracle(program)
    assert data.run(program) == answer and data.values(program) == vals
    assert all(0 <= v <= data.MAX_VALUE for v in vals)
    toks = data.tokens(program)
    assert data.detokenize(toks) == program and all(t in data.TOKENS for t in toks)
    assert len(toks) == 4 * n_steps + 2 + 2 * sum(s.op is not None for s in data.parse(program))


def test_the_token_scheme():
    assert data.TOKENS[:4] == ("<pad>", "<eos>", "<bos>", "<unk>")
    assert len(set(data.TOKENS)) == len(data.TOKENS) == 4 + 4 + 20 + 6
    assert all(str(v) in data.TOKENS for v in range(20))
    for v in range(20):  # every number one token
        assert data.tokens(f"a={v};a?") == ["a", "=", str(v), ";", "a", "?"]
    assert data.tokens("d=19*a;d?")[2] == "19"
    for bad, what in [("a = 3;a?", "' '"), ("a=20;a?", "'20'"), ("a=05;a?", "'05'"), ("e=1;e?", "'e'")]:
        with pytest.raises(ValueError, match=what):
            data.tokens(bad)
    with pytest.raises(ValueError, match="strip special tokens"):
        data.detokenize(["<bos>", "a", "=", "1", ";", "a", "?"])


@pytest.mark.parametrize("program, match", [
    ("a=b+1;a?", "reads 'b' before it is assigned"),
    ("a=1;a=2;", "does not end with one query"),
    ("a=1;b?", "never assigned"),
    ("a=1+;a?", "is not VAR=EXPR"),
    ("a=1+2+3;a?", "is not VAR=EXPR"),
    ("a?", "no step"),
    ("a=1;a?a?", "does not end with one query"),
])
def test_parse_rejects_malformed_programs(program, match):
    with pytest.raises(ValueError, match=match):
        data.run(program)


def test_make_row_rejects_values_out_of_range():
    assert data.run("a=9*3;b=a-19;b?") == 8      # run itself is not range-checked
    with pytest.raises(ValueError, match=r"outside 0..19"):
        data.make_row("a=9*3;b=a-19;b?")
    with pytest.raises(ValueError, match="n_steps=11"):
        data.program(random.Random(0), 11)


# --------------------------------------------------------------------------- pairs


def _assert_pair(pair, length=None):
    a, b = pair["program_a"], pair["program_b"]
    ta, tb = data.tokens(a), data.tokens(b)
    assert len(ta) == len(tb)
    diff = [i for i, (x, y) in enumerate(zip(ta, tb)) if x != y]
    assert diff == [pair["divergence_index"]]          # one token differs, and it is the divergence
    i = pair["divergence_index"]
    assert (ta[i] in data.OPS) == (tb[i] in data.OPS) == (pair["kind"] == "operator")
    assert pair["ground_truth_a"] == oracle(a)[1] != pair["ground_truth_b"] == oracle(b)[1]
    assert all(0 <= v <= 19 for v in oracle(a)[0] + oracle(b)[0])
    sa, sb = data.parse(a), data.parse(b)
    k = pair["step"]
    assert sa[:k] == sb[:k] and sa[k + 1:] == sb[k + 1:] and sa[k] != sb[k]
    prefix = "".join(s.text() for s in sa[:k])
    assert a.startswith(prefix) and b.startswith(prefix)   # shared up to step k, the rest mirrored
    assert a.split(";")[k + 1:] == b.split(";")[k + 1:]
    data.check_pair(pair, length=length)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_pair_invariants(rows, seed):
    for pair in data.pairs(rows, 5, seed):
        _assert_pair(pair)


def test_pairs_are_deterministic_distinct_and_of_both_kinds(rows):
    got = data.pairs(rows, 400, 11)
    assert got == data.pairs(rows, 400, 11) and got != data.pairs(rows, 400, 12)
    assert len({(p["program_a"], p["program_b"]) for p in got}) == 400
    assert set(Counter(p["kind"] for p in got)) == {"operand", "operator"}
    assert len({p["step"] for p in got}) == 10
    for pair in got:
        _assert_pair(pair)


def test_a_length_callable_must_agree_too(rows):
    got = data.pairs(rows, 200, 5, length=len)         # a character-level tokenizer
    for pair in got:
        assert len(pair["program_a"]) == len(pair["program_b"])
        _assert_pair(pair, length=len)
    # without it, some operand changes alter the character length (3 -> 45: still one fixture token)
    assert any(len(p["program_a"]) != len(p["program_b"]) for p in data.pairs(rows, 200, 5))
    assert data.make_pair("a=3;b=a;b?", 0, random.Random(0)) is not None
    assert data.make_pair("a=3;b=a;b?", 0, random.Random(0), length=lambda p: int(p == "a=3;b=a;b?")) is None


def test_make_pair_edge_cases():
    rng = random.Random(0)
    assert data.make_pair("a=3;b=a;b?", 1, rng) is None          # nothing to change at a copy step
    assert data.make_pair("a=3;b=4;b?", 0, rng) is None          # step 0 does not reach the answer
    pair = data.make_pair("a=3;b=4;b?", 1, rng)
    assert pair["kind"] == "operand" and pair["divergence_index"] == 6 and pair["step"] == 1
    pair = data.make_pair("a=3;b=a+a;b?", 1, random.Random(1))
    assert pair["kind"] == "operator" and pair["program_b"] in ("a=3;b=a-a;b?", "a=3;b=a*a;b?")
    assert pair["ground_truth_a"] == 6 and pair["ground_truth_b"] in (0, 9)
    with pytest.raises(ValueError, match="k=2 is not a step"):
        data.make_pair("a=3;b=4;b?", 2, rng)
    with pytest.raises(ValueError, match="outside 0..19"):
        data.make_pair("a=15;a=a+a;a?", 0, rng)


def test_correct_predicate_is_asked_of_both_programs(rows):
    asked = []

    def even(program):
        asked.append(program)
        return data.run(program) % 2 == 0

    got = data.pairs(rows, 100, 3, correct=even)
    assert len(got) == 100
    for pair in got:
        assert pair["ground_truth_a"] % 2 == 0 and pair["ground_truth_b"] % 2 == 0
        _assert_pair(pair)
    assert len(asked) == len(set(asked))                # each program asked once


def test_too_few_pairs_is_an_error_that_counts(rows):
    with pytest.raises(ValueError, match=r"formed 0 of the 10 pairs .*`correct` accepted 0 of the \d+ programs"):
        data.pairs(rows, 10, 0, correct=lambda p: False)
    with pytest.raises(ValueError, match=r"formed 6 of the 50 pairs .*no `correct` predicate"):
        data.pairs(["a=1;b=a*a;b?"], 50, 0)   # 6 pairs exist: 1 -> 0, 2, 3, 4 and * -> +, -
    some = rows[:40]
    accept = {r["program"] for r in some[:20]}
    with pytest.raises(ValueError, match=r"accepted ([1-9]|1\d|20) of the \d+ programs"):
        data.pairs(some, 500, 0, correct=lambda p: p in accept)
    with pytest.raises(ValueError, match="rows is empty"):
        data.pairs([], 1, 0)


@pytest.fixture
def pair():
    return data.make_pair(EXAMPLE, 1, random.Random(0))


@pytest.mark.parametrize("change, match", [
    (lambda p: p.pop("ground_truth_b"), r"lacks the fields \['ground_truth_b'\]"),
    (lambda p: p.update(program_b="a=3;b=a+4;a=b*2;c=a;c?"), "program_a has 24 tokens and program_b 22"),
    (lambda p: p.update(program_b=p["program_a"]), "no divergence"),
    (lambda p: p.update(divergence_index=24), r"outside the program's tokens 0..23; set it to 8"),
    (lambda p: p.update(divergence_index=-1), r"outside the program's tokens"),
    (lambda p: p.update(divergence_index=7), "divergence_index is 7 but the first differing token is 8"),
    (lambda p: p.update(ground_truth_a=8), "ground_truth_a is 8 but run.program_a. gives 7"),
    (lambda p: p.update(ground_truth_b=p["ground_truth_b"] + 1), "ground_truth_b is .* set it to run's answer"),
    (lambda p: p.update(step=2), r"differ at steps \[1\].*step 2"),
    (lambda p: p.update(kind="operator"), "says one operator"),
])
def test_check_pair_names_each_defect(pair, change, match):
    data.check_pair(pair)
    change(pair)
    with pytest.raises(ValueError, match=match):
        data.check_pair(pair)


def test_check_pair_more_defects():
    base = {"step": 0, "kind": "operand", "divergence_index": 2}
    same_answer = {**base, "program_a": "a=3;b=4;b?", "program_b": "a=5;b=4;b?", "ground_truth_a": 4,
                   "ground_truth_b": 4}
    with pytest.raises(ValueError, match="both programs answer 4"):
        data.check_pair(same_answer)
    out_of_range = {**base, "program_a": "a=3;a=a*5;a?", "program_b": "a=13;a=a*5;a?", "ground_truth_a": 15,
                    "ground_truth_b": 65}
    with pytest.raises(ValueError, match="program_b has values .* outside"):
        data.check_pair(out_of_range)
    two_steps = {"step": 0, "kind": "operand", "divergence_index": 2, "program_a": "a=3;b=a+4;b?",
                 "program_b": "a=5;b=a-4;b?", "ground_truth_a": 7, "ground_truth_b": 1}
    with pytest.raises(ValueError, match=r"differ at steps \[0, 1\]"):
        data.check_pair(two_steps)
    pair = data.make_pair("a=3;b=a+1;b?", 0, random.Random(2), length=len)
    data.check_pair(pair, length=len)
    with pytest.raises(ValueError, match=r"under `length` program_a is \d+ long and program_b \d+"):
        data.check_pair(pair, length=lambda p: len(p) + (p == pair["program_b"]))


# --------------------------------------------------------------------------- splits and files


def test_splits_are_disjoint_distinct_and_balanced(all_splits):
    assert list(all_splits) == list(data.SPLITS)
    programs = {name: [r["program"] for r in rows] for name, rows in all_splits.items()}
    for name, progs in programs.items():
        assert len(progs) == data.SPLITS[name].size == len(set(progs))
        counts = Counter(r["n_steps"] for r in all_splits[name])
        assert set(counts) == set(data.LENGTHS) and max(counts.values()) - min(counts.values()) <= 1
    held_out = set(programs["selection"]) | set(programs["test"])
    assert len(held_out) == 4000
    assert not held_out & set(programs["train"])
    assert len({s.seed for s in data.SPLITS.values()}) == len(data.SPLITS)
    assert data.splits(["test"])["test"] == all_splits["test"]     # a split does not depend on what is asked
    with pytest.raises(ValueError, match=r"unknown splits \['dev'\]"):
        data.splits(["dev"])


def test_write_read_round_trip_and_the_cli(tmp_path, all_splits):
    here = tmp_path / "here"
    paths = data.write_splits(here, names=("selection", "test"))
    assert [p.name for p in paths] == ["selection.jsonl", "test.jsonl", "MANIFEST.json"]
    manifest = json.loads((here / "MANIFEST.json").read_text())
    assert manifest["generator_sha256"] == hashlib.sha256(GENERATOR.read_bytes()).hexdigest() == data.generator_sha256()
    for name in ("selection", "test"):
        entry = manifest["splits"][name]
        assert entry["sha256"] == hashlib.sha256((here / f"{name}.jsonl").read_bytes()).hexdigest()
        assert entry["rows"] == 2000 and sum(entry["n_steps"].values()) == 2000
        assert data.read_rows(here / f"{name}.jsonl") == all_splits[name]
    # the CLI in a child with another hash seed writes the same bytes
    env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(GENERATOR), "--print", "test"], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout
    assert out == (here / "test.jsonl").read_text()


@pytest.mark.parametrize("line, match", [
    ('{"program": "a=3;a?", "answer": 3, "n_steps": 1}', "expected an object with the fields"),
    ('[1, 2]', "expected an object with the fields"),
    ('{"program": "a=3;a?", "answer": "3", "n_steps": 1, "query": "a", "reads": [[]]}', "'answer' should be int"),
    ('{"program": "a=3;a?", "answer": 4, "n_steps": 1, "query": "a", "reads": [[]]}', "'answer' is 4 but the program"),
    ('{"program": "a=3;a=a*9;a?", "answer": 27, "n_steps": 2, "query": "a", "reads": [[], ["a"]]}', "outside"),
    ('{"program": "a=3;', "not a JSON object"),
])
def test_read_rows_rejects_bad_rows(tmp_path, line, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(data.row_to_jsonl(data.make_row(EXAMPLE)) + line + "\n")
    with pytest.raises(ValueError, match=f"bad.jsonl:2: .*{match}"):
        data.read_rows(path)
    with pytest.raises(FileNotFoundError, match="--write DIR"):
        data.read_rows(tmp_path / "missing.jsonl")


def test_control_pairs_whose_answers_agree(rows):
    """`agree=True` gives pairs that change a step without changing the answer (the control)."""
    got = data.pairs(rows, 40, 5, agree=True)
    assert len(got) == 40
    for pair in got:
        data.check_pair(pair, agree=True)
        assert pair["ground_truth_a"] == pair["ground_truth_b"] and pair["program_a"] != pair["program_b"]
        with pytest.raises(ValueError, match="both programs answer"):
            data.check_pair(pair)
    differ = data.pairs(rows, 5, 5)[0]
    with pytest.raises(ValueError, match="should agree"):
        data.check_pair(differ, agree=True)
