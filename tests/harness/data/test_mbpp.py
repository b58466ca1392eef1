"""MBPP data: the reader on both schemas (synthetic and real files), the standard split, the
standard prompt, code extraction from completions, radon complexity and the seeded stratified
selection."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from harness.data import (
    COMPLEXITY_EDGES, FEWSHOT_IDS, MBPP_SPLITS, MbppProblem, by_complexity, complexity, extract_code,
    mbpp_fewshot, mbpp_prompt, mbpp_split, mbpp_split_of, read_mbpp, stratified_sample,
)
from harness.errors import DataError
from tests._support.paths import ROOT

MBPP = ROOT.parent / "shared" / "data" / "mbpp"
real = pytest.mark.skipif(not (MBPP / "mbpp.jsonl").is_file(),
                          reason=f"the MBPP release is not at {MBPP} (copy mbpp.jsonl and sanitized-mbpp.json "
                                 "from google-research/google-research mbpp/ there)")


def full_row(task_id: int, **changes) -> dict:
    row = {"text": f"Write a function to add {task_id}.", "code": f"def add(x):\r\n    return x + {task_id}",
           "task_id": task_id, "test_setup_code": "", "test_list": [f"assert add(1) == {1 + task_id}"],
           "challenge_test_list": []}
    return {**row, **changes}


def sanitized_row(task_id: int, **changes) -> dict:
    row = {"source_file": "Benchmark Questions Verification V2.ipynb", "task_id": task_id,
           "prompt": "Write a function to take a square root.", "code": "def root(x):\n    return math.sqrt(x)",
           "test_imports": ["import math"], "test_list": ["assert root(4) == 2"]}
    return {**row, **changes}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- reading


def test_a_jsonl_file_reads_in_task_id_order_with_line_endings_normalised(tmp_path):
    rows = [full_row(12), full_row(3, test_setup_code="x = 1\r\ny = 2", challenge_test_list=["assert add(0) == 3"])]
    problems = read_mbpp(write_jsonl(tmp_path / "mbpp.jsonl", rows))
    assert [p.task_id for p in problems] == [3, 12]
    assert problems[0] == MbppProblem(3, "Write a function to add 3.", "def add(x):\n    return x + 3",
                                      ("assert add(1) == 4",), setup="x = 1\ny = 2",
                                      challenge_tests=("assert add(0) == 3",))
    assert problems[0].program() == ("def add(x):\n    return x + 3\n\nx = 1\ny = 2\n", ("assert add(1) == 4",), "")
    assert problems[0].program("def add(x): return x + 3\n\n") == ("def add(x): return x + 3\n\nx = 1\ny = 2\n",
                                                                      ("assert add(1) == 4",), "")
    assert problems[1].program("pass") == ("pass", ("assert add(1) == 13",), "")
    assert problems[0].split == "prompt"
    assert problems[1].split == "test" and not problems[1].sanitized


def test_the_sanitized_schema_reads_prompt_as_text_and_keeps_test_imports(tmp_path):
    path = tmp_path / "sanitized-mbpp.json"
    path.write_text(json.dumps([sanitized_row(7), sanitized_row(2, test_imports=[])]), encoding="utf-8")
    problems = read_mbpp(path)
    assert [p.task_id for p in problems] == [2, 7]
    assert problems[1].text == "Write a function to take a square root." and problems[1].sanitized
    assert problems[1].test_imports == ("import math",)
    assert problems[1].program() == ("def root(x):\n    return math.sqrt(x)", ("assert root(4) == 2",), "import math")
    assert problems[0].program()[2] == "" and problems[0].challenge_tests == ()
    assert read_mbpp(tmp_path, sanitized=True) == problems


@pytest.mark.parametrize("content, words", [
    ("", ["empty"]),
    ("\n  \n", ["empty"]),
    ('{"task_id": 1,\n', ["line 1", "not a JSON object"]),
    ("[]", ["no problems"]),
    ("[1, 2]", ["array item 0", "not an object"]),
    ('[{"task_id": 1, "prompt": "p", "code": "x", "test_list": [], "test_imports": []}', ["not valid JSON", "line 1"]),
])
def test_unreadable_files_are_named_errors(tmp_path, content, words):
    path = tmp_path / "mbpp.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_mbpp(path)
    assert str(path) in str(err.value)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("bad, words", [
    ({"test_list": []}, ["line 2", "task_id 5", "'test_list' is empty"]),
    ({"test_list": "assert add(1) == 6"}, ["line 2", "'test_list' must be a list of strings"]),
    ({"test_list": ["assert True", 3]}, ["line 2", "'test_list' must be a list of strings"]),
    ({"text": None}, ["line 2", "task_id 5", "'text' must be a string"]),
    ({"code": "  \r\n"}, ["line 2", "'code' is empty"]),
    ({"task_id": "5"}, ["line 2", "'task_id' must be a positive integer"]),
    ({"task_id": True}, ["line 2", "'task_id' must be a positive integer"]),
    ({"task_id": 0}, ["line 2", "'task_id' must be a positive integer"]),
    ({"task_id": 1}, ["line 2", "task_id 1 appears twice"]),
    ({"challenge_test_list": None}, ["line 2", "'challenge_test_list'"]),
])
def test_a_malformed_row_names_its_file_line_and_field(tmp_path, bad, words):
    path = write_jsonl(tmp_path / "mbpp.jsonl", [full_row(1), {**full_row(5), **bad}])
    with pytest.raises(DataError) as err:
        read_mbpp(path)
    assert str(path) in str(err.value)
    for word in words:
        assert word in str(err.value), str(err.value)


@pytest.mark.parametrize("missing", ["task_id", "text", "code", "test_list", "test_setup_code", "challenge_test_list"])
def test_a_row_missing_a_field_names_it(tmp_path, missing):
    row = full_row(4)
    del row[missing]
    path = tmp_path / "mbpp.jsonl"
    path.write_text("\n" + json.dumps(full_row(1)) + "\n\n" + json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"line 4.* has no field '{missing}'"):
        read_mbpp(path)


def test_a_sanitized_row_missing_test_imports_or_with_the_other_schema_is_named(tmp_path):
    row = sanitized_row(3)
    del row["test_imports"]
    path = tmp_path / "s.json"
    path.write_text(json.dumps([sanitized_row(2), row]), encoding="utf-8")
    with pytest.raises(DataError, match=r"array item 1 \(task_id 3\) has no field 'test_imports'"):
        read_mbpp(path)
    path.write_text(json.dumps([sanitized_row(2), full_row(3)]), encoding="utf-8")
    with pytest.raises(DataError, match=r"array item 1 \(task_id 3\) has no field 'prompt'"):
        read_mbpp(path)


def test_a_missing_path_or_folder_file_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_mbpp(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="mbpp.jsonl' does not exist"):
        read_mbpp(tmp_path)
    with pytest.raises(DataError, match="sanitized-mbpp.json' does not exist"):
        read_mbpp(tmp_path, sanitized=True)


@real
def test_the_real_files_read_completely_with_the_standard_split_sizes():
    problems = read_mbpp(MBPP)
    assert len(problems) == 974 and [p.task_id for p in problems] == list(range(1, 975))
    assert {name: len(mbpp_split(problems, name)) for name in MBPP_SPLITS} == \
        {"prompt": 10, "test": 500, "validation": 90, "train": 374}
    assert all(len(p.tests) == 3 and "\r" not in p.code for p in problems)
    assert [p.task_id for p in problems if p.setup] == [367, 927]
    assert sum(bool(p.challenge_tests) for p in problems) == 11
    sanitized = read_mbpp(MBPP, sanitized=True)
    assert len(sanitized) == 427 and all(p.sanitized for p in sanitized)
    assert {name: len(mbpp_split(sanitized, name)) for name in MBPP_SPLITS} == \
        {"prompt": 7, "test": 257, "validation": 43, "train": 120}
    assert sum(bool(p.test_imports) for p in sanitized) == 13
    assert read_mbpp(MBPP / "mbpp.jsonl") == problems


# --------------------------------------------------------------------------- splits and prompts


@pytest.mark.parametrize("task_id, name", [(1, "prompt"), (10, "prompt"), (11, "test"), (510, "test"),
                                           (511, "validation"), (600, "validation"), (601, "train"), (974, "train")])
def test_the_split_of_a_task_id_follows_the_standard_boundaries(task_id, name):
    assert mbpp_split_of(task_id) == name


@pytest.mark.parametrize("bad", [0, 975, -3, "11", True, 11.0])
def test_a_task_id_outside_mbpp_has_no_split(bad):
    with pytest.raises(DataError, match="task_id"):
        mbpp_split_of(bad)


def test_an_unknown_split_name_is_an_error():
    with pytest.raises(DataError, match="one of"):
        mbpp_split([], "dev")


def test_the_prompt_is_the_papers_few_shot_format():
    shot = MbppProblem(2, "Find the similar elements.", "def sim(a, b):\n    return set(a) & set(b)  \n",
                       ("assert sim((1,), (1,)) == {1}", "assert sim((), ()) == set()"))
    task = MbppProblem(11, "Remove a character.", "def rm(s, c): ...", ("assert rm('ab', 'a') == 'b'",))
    head = "You are an expert Python programmer, and here is your task: "
    assert mbpp_prompt(task) == (head + "Remove a character. Your code should pass these tests:\n\n"
                                 "assert rm('ab', 'a') == 'b'\n[BEGIN]\n")
    assert mbpp_prompt(task, [shot]) == (
        head + "Find the similar elements. Your code should pass these tests:\n\n"
        "assert sim((1,), (1,)) == {1}\nassert sim((), ()) == set()\n[BEGIN]\n"
        "def sim(a, b):\n    return set(a) & set(b)\n[DONE]\n\n" + mbpp_prompt(task))
    with pytest.raises(DataError, match="the problem itself"):
        mbpp_prompt(shot, [shot])


@real
def test_the_standard_shots_are_tasks_2_3_4():
    problems = read_mbpp(MBPP)
    shots = mbpp_fewshot(problems)
    assert [s.task_id for s in shots] == list(FEWSHOT_IDS) == [2, 3, 4]
    prompt = mbpp_prompt(problems[10], shots)
    assert prompt.count("[BEGIN]\n") == 4 and prompt.count("\n[DONE]\n\n") == 3 and prompt.endswith("[BEGIN]\n")
    with pytest.raises(DataError, match=r"lacks the shot task ids \[2, 3\]"):
        mbpp_fewshot(problems[3:])


# --------------------------------------------------------------------------- extraction


COMPLETION_AFTER_BEGIN = """import re
def remove_Occ(s,ch):
    for i in range(len(s)):
        if (s[i] == ch):
            s = s[0 : i] + s[i + 1:]
            break
    return s
[DONE]

You are an expert Python programmer, and here is your task: Write a function to sort a matrix."""

CHAT_ANSWER = """Sure! Here's a function that solves it:

```python
MOD = 10**9 + 7

def _helper(n):
    \"\"\"Count.
Example:
    >>> _helper(2)
\"\"\"
    return n % MOD


def count_ways(n):
    table = {
        0: 1,
}
    return table.get(n, _helper(n))

print(count_ways(3))
```

Example usage:

```python
assert count_ways(0) == 1
```
This runs in O(1)."""


@pytest.mark.parametrize("generation, expected", [
    (COMPLETION_AFTER_BEGIN, "import re\ndef remove_Occ(s,ch):\n    for i in range(len(s)):\n        if (s[i] == ch):\n"
                             "            s = s[0 : i] + s[i + 1:]\n            break\n    return s"),
    (CHAT_ANSWER, 'MOD = 10**9 + 7\n\ndef _helper(n):\n    """Count.\nExample:\n    >>> _helper(2)\n"""\n'
                  "    return n % MOD\n\n\ndef count_ways(n):\n    table = {\n        0: 1,\n}\n"
                  "    return table.get(n, _helper(n))"),
    ("def f(x):\r\n    return x * 2\r\n\r\nassert f(2) == 4\r\nassert f(0) == 0\r\n", "def f(x):\n    return x * 2"),
    ("The answer is:\ndef f(x):\n    return -x\n\nif __name__ == '__main__':\n    print(f(1))\n",
     "def f(x):\n    return -x"),
    ("def g(x):\n    return x\n\nresult = g(3)\nfrom math import pi\nprint(result)\n", "def g(x):\n    return x\n\nfrom math import pi"),
    ("  ```python\n  def h():\n      return 1\n  ```", "def h():\n    return 1"),
    ("```\ndef k():\n    return [\n        1,\n    ]\n", "def k():\n    return [\n        1,\n    ]"),
    ("I cannot solve this task.", "I cannot solve this task."),
])
def test_extraction_keeps_the_program_and_drops_prose_tests_and_calls(generation, expected):
    assert extract_code(generation) == expected


def test_extraction_stops_at_any_given_stop_sequence():
    text = "def f():\n    return 1\n\ndef g():\n    return 2"
    assert extract_code(text, stop=("[DONE]", "\n\n")) == "def f():\n    return 1"
    assert extract_code(text) == text
    assert extract_code("def f():\n    return 1  <|endoftext|> junk", stop=("<|endoftext|>",)) == \
        "def f():\n    return 1"
    with pytest.raises(DataError, match="single string"):
        extract_code(text, stop="[DONE]")
    with pytest.raises(DataError, match="string"):
        extract_code(None)


@real
def test_every_reference_solution_survives_extraction_unchanged():
    for p in read_mbpp(MBPP) + read_mbpp(MBPP, sanitized=True):
        assert extract_code(p.code) == "\n".join(line.rstrip() for line in p.code.split("\n")).strip("\n"), p.task_id


# --------------------------------------------------------------------------- complexity


def test_complexity_counts_module_level_decisions_that_cc_visit_skips():
    from radon.complexity import cc_visit

    code = "TABLE = [i for i in range(9) if i % 3]\n\ndef member(x):\n    return x in TABLE\n"
    assert [b.complexity for b in cc_visit(code)] == [1]
    assert complexity(code) == 3
    assert complexity("def f(x):\n    if x > 0:\n        return 1\n    elif x < 0:\n        return -1\n    return 0") == 3
    assert complexity("def f(a, b):\n    return a and b or a") == 3
    assert complexity("x = 1") == 1
    with pytest.raises(DataError, match="not valid Python"):
        complexity("def f(:\n")


@real
def test_complexity_of_the_reference_solutions():
    values = [complexity(p.code) for p in read_mbpp(MBPP)]
    assert min(values) == 1 and max(values) == 16 and values.count(1) == 268
    assert complexity(read_mbpp(MBPP)[0].code) == 7  # task 1: six for loops (two in comprehensions), + 1


# --------------------------------------------------------------------------- selection


def problems_with(values: list[int]) -> list[MbppProblem]:
    body = "    if x: x += 1\n"
    return [MbppProblem(100 + i, "t", "def f(x):\n" + body * (v - 1) + "    return x", ("assert True",))
            for i, v in enumerate(values)]


def test_the_selection_is_seeded_stratified_and_independent_of_input_order():
    pool = problems_with([1] * 10 + [2] * 8 + [3] * 6 + [4] * 5 + [7] * 4)
    picked = by_complexity(pool, per_stratum=3, seed=0)
    assert [complexity(p.code) for p in picked] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 7, 7, 7]
    shuffled = pool[:]
    random.Random(1).shuffle(shuffled)
    assert by_complexity(shuffled, per_stratum=3, seed=0) == picked
    assert by_complexity(pool, per_stratum=3, seed=0) == picked
    others = [by_complexity(pool, per_stratum=3, seed=s) for s in range(1, 6)]
    assert any(o != picked for o in others)
    assert by_complexity(pool, per_stratum=1, seed=0) == [picked[i] for i in (0, 3, 6, 9, 12)]


def test_proportional_selection_shares_n_by_stratum_size():
    rows = list(range(100))
    picked = stratified_sample(rows, value=lambda r: r, key=lambda r: r, edges=(0, 50, 80, math.inf), n=10, seed=3)
    assert [sum(lo <= r < hi for r in picked) for lo, hi in ((0, 50), (50, 80), (80, 100))] == [5, 3, 2]
    assert stratified_sample(rows[::-1], value=lambda r: r, key=lambda r: r, edges=(0, 50, 80, math.inf),
                             n=10, seed=3) == picked


@pytest.mark.parametrize("kwargs, match", [
    ({"edges": (1, 1, 5), "per_stratum": 1}, "strictly increasing"),
    ({"edges": (1,), "per_stratum": 1}, "strictly increasing"),
    ({"edges": (1, 3, math.inf)}, "exactly one"),
    ({"edges": (1, 3, math.inf), "per_stratum": 1, "n": 2}, "exactly one"),
    ({"edges": (1, 3, math.inf), "per_stratum": 0}, "positive integer"),
    ({"edges": (1, 3, math.inf), "per_stratum": 3}, r"fewer rows: \[3, inf\): 1"),
    ({"edges": (2, 3, math.inf), "per_stratum": 1}, "outside `edges`"),
    ({"edges": (1, 3, math.inf), "n": 9}, "more than the 4 rows"),
])
def test_bad_selections_are_named_errors(kwargs, match):
    with pytest.raises(DataError, match=match):
        by_complexity(problems_with([1, 1, 2, 4]), seed=0, **kwargs)


def test_duplicate_keys_are_an_error():
    with pytest.raises(DataError, match="key 101 of an earlier row"):
        stratified_sample([1, 2], value=lambda r: 1, key=lambda r: 101, edges=COMPLEXITY_EDGES, per_stratum=1, seed=0)


@real
def test_the_default_strata_over_the_test_split():
    test = mbpp_split(read_mbpp(MBPP), "test")
    picked = by_complexity(test, per_stratum=40, seed=0)
    assert len(picked) == 200 and len({p.task_id for p in picked}) == 200
    assert by_complexity(test[::-1], per_stratum=40, seed=0) == picked
