"""MBPP (Mostly Basic Python Problems): the reader, the standard split and the standard prompt.

    read_mbpp(path)                  the problems of ``mbpp.jsonl`` or ``sanitized-mbpp.json`` (or their folder)
    MbppProblem                      one problem: task_id, text, code, tests, setup, challenge_tests, test_imports
    MbppProblem.program(code=)       (program, tests, setup) for harness.execution.run_tests / run_many
    mbpp_split_of(task_id)           "prompt", "test", "validation" or "train" (the standard split by task id)
    mbpp_split(problems, name)       the problems of one split, in task-id order
    MBPP_SPLITS                      {name: (first, last task id)}: prompt 1-10, test 11-510, validation
                                     511-600, train 601-974
    mbpp_prompt(problem, shots=)     the standard few-shot prompt; FEWSHOT_IDS = (2, 3, 4) are its usual shots
    mbpp_fewshot(problems)           those three shots, picked from read problems

Generated code is cut out of a completion by `harness.data.programs.extract_code`, and its
cyclomatic complexity is `harness.data.programs.complexity`.

Source: Austin et al., "Program Synthesis with Large Language Models", arXiv:2108.07732 (2021),
https://github.com/google-research/google-research/tree/master/mbpp, released under CC-BY-4.0.
``mbpp.jsonl`` has 974 problems (keys task_id, text, code, test_list, test_setup_code,
challenge_test_list); ``sanitized-mbpp.json`` has the 427 hand-verified ones (keys source_file,
task_id, prompt, code, test_imports, test_list). Both read into `MbppProblem`; code and setup
have their line endings normalised to ``\\n`` (upstream uses CRLF, and four solutions end in a
lone CR), exactly as Python reads source. Malformed input is a `DataError` naming the file, the
line (or array item) and the field. Everything is plain Python (no torch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness.errors import DataError

__all__ = [
    "MbppProblem", "read_mbpp", "mbpp_split_of", "mbpp_split", "MBPP_SPLITS", "mbpp_prompt", "mbpp_fewshot",
    "FEWSHOT_IDS", "PROMPT_TEMPLATE", "BEGIN", "DONE",
]

MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}
FEWSHOT_IDS = (2, 3, 4)
# The prompt of the MBPP paper, as the upstream README (mbpp/README.md, "Evaluation Details") gives
# it: "You are an expert Python programmer, and here is your task: {prompt} Your code should pass
# these tests:\n\n{tests}\n[BEGIN]\n{code}\n[DONE]", three shots with task ids 2, 3, 4. EleutherAI's
# lm-evaluation-harness (lm_eval/tasks/mbpp/mbpp.yaml) writes it the same way, tests one per line,
# shots joined by a blank line, generation stopped at "[DONE]".
PROMPT_TEMPLATE = ("You are an expert Python programmer, and here is your task: {text} "
                   "Your code should pass these tests:\n\n{tests}\n")
BEGIN = "[BEGIN]\n"
DONE = "[DONE]"
FULL_FILE, SANITIZED_FILE = "mbpp.jsonl", "sanitized-mbpp.json"
_FULL_KEYS = ("task_id", "text", "code", "test_list", "test_setup_code", "challenge_test_list")
_SANITIZED_KEYS = ("task_id", "prompt", "code", "test_list", "test_imports")


@dataclass(frozen=True)
class MbppProblem:
    """One MBPP problem, from either file.

    ``text`` is the task description (``text`` in mbpp.jsonl, ``prompt`` in the sanitized file);
    ``code`` the reference solution; ``tests`` the ``assert`` lines of ``test_list``; ``setup``
    the ``test_setup_code`` that defines objects the tests use (non-empty in tasks 367 and 927);
    ``challenge_tests`` the harder held-out asserts (mbpp.jsonl only, 11 problems);
    ``test_imports`` the imports the tests need (sanitized file only, e.g. ``import math``);
    ``sanitized`` says which file the row came from. `program` gives what to execute.
    """

    task_id: int
    text: str
    code: str
    tests: tuple[str, ...]
    setup: str = ""
    challenge_tests: tuple[str, ...] = ()
    test_imports: tuple[str, ...] = ()
    sanitized: bool = False

    def program(self, code: str | None = None) -> tuple[str, tuple[str, ...], str]:
        """``(program, tests, setup)`` to run ``code`` (default: the reference) against the tests.

        Example::

            run_many([p.program() for p in problems], workers=2)      # harness.execution
            program, tests, setup = p.program(extract_code(completion))
            run_tests(program, tests, setup=setup)

        ``setup`` (run first) is the test imports; the program is the code followed by
        ``test_setup_code``, because that code builds objects from classes the solution defines
        (tasks 367 and 927 build trees of the solution's ``Node``), so it runs after the code and
        before the tests, as in the original evaluation: code, setup, tests.
        """
        code = self.code if code is None else code
        program = f"{code.rstrip()}\n\n{self.setup}\n" if self.setup else code
        return program, self.tests, "\n".join(self.test_imports)

    @property
    def split(self) -> str:
        """The standard split the problem belongs to (see `mbpp_split_of`)."""
        return mbpp_split_of(self.task_id)


# --------------------------------------------------------------------------- reading


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _field(record: dict, key: str, kind: type, where: str) -> Any:
    if key not in record:
        raise DataError(f"{where} has no field {key!r} (it has {sorted(record)[:8]}); every MBPP row needs it")
    value = record[key]
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataError(f"{where}: field 'task_id' must be a positive integer, got {value!r}")
    elif kind is str:
        if not isinstance(value, str):
            raise DataError(f"{where}: field {key!r} must be a string, got {type(value).__name__} {value!r:.60}")
    elif not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise DataError(f"{where}: field {key!r} must be a list of strings, got {value!r:.80}")
    return value


def _problem(record: Any, where: str, sanitized: bool) -> MbppProblem:
    if not isinstance(record, dict):
        raise DataError(f"{where} is a JSON {type(record).__name__}, not an object with the fields "
                        f"{list(_SANITIZED_KEYS if sanitized else _FULL_KEYS)}")
    task_id = _field(record, "task_id", int, where)
    where = f"{where} (task_id {task_id})"
    text = _field(record, "prompt" if sanitized else "text", str, where)
    code = _field(record, "code", str, where)
    tests = _field(record, "test_list", list, where)
    if not tests:
        raise DataError(f"{where}: field 'test_list' is empty; a problem without tests cannot be checked")
    if not code.strip():
        raise DataError(f"{where}: field 'code' is empty; every problem has a reference solution")
    if sanitized:
        return MbppProblem(task_id, text, _lines(code), tuple(tests),
                           test_imports=tuple(_field(record, "test_imports", list, where)), sanitized=True)
    return MbppProblem(task_id, text, _lines(code), tuple(tests),
                       setup=_lines(_field(record, "test_setup_code", str, where)),
                       challenge_tests=tuple(_field(record, "challenge_test_list", list, where)))


def _records(path: Path) -> Iterable[tuple[Any, str]]:
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"MBPP file {str(path)!r} is not UTF-8 ({err})") from None
    if not content.strip():
        raise DataError(f"MBPP file {str(path)!r} is empty; expected {FULL_FILE} (one JSON object a line) "
                        f"or {SANITIZED_FILE} (a JSON array)")
    if content.lstrip().startswith("["):
        try:
            items = json.loads(content)
        except json.JSONDecodeError as err:
            raise DataError(f"MBPP file {str(path)!r} is not valid JSON at line {err.lineno}, column "
                            f"{err.colno}: {err.msg}") from None
        return [(item, f"{str(path)!r}, array item {i}") for i, item in enumerate(items)]
    out = []
    for n, line in enumerate(content.splitlines(), start=1):
        if line.strip():
            try:
                out.append((json.loads(line), f"{str(path)!r}, line {n}"))
            except json.JSONDecodeError as err:
                raise DataError(f"{str(path)!r}, line {n} is not a JSON object ({err.msg} at column "
                                f"{err.colno}); {FULL_FILE} holds one JSON object a line") from None
    return out


def read_mbpp(path: str | Path, *, sanitized: bool = False) -> list[MbppProblem]:
    """Every problem of an MBPP file, in task-id order.

    Example::

        problems = read_mbpp("/work/shared/data/mbpp")                   # mbpp.jsonl: 974 problems
        problems = read_mbpp("/work/shared/data/mbpp", sanitized=True)   # sanitized-mbpp.json: 427

    ``path`` is ``mbpp.jsonl`` (JSON lines), ``sanitized-mbpp.json`` (a JSON array), or the folder
    holding them (``sanitized`` picks the file). Which schema a file has is read from its first
    row (``text`` or ``prompt``). Raises `DataError` for a missing or empty file, a line that is
    not JSON, a row missing a field or with a field of the wrong type, a row with no tests, and
    a task id that appears twice.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / (SANITIZED_FILE if sanitized else FULL_FILE)
    if not path.is_file():
        raise DataError(f"MBPP file {str(path)!r} does not exist; pass {FULL_FILE}, {SANITIZED_FILE} or "
                        "their folder (the google-research/google-research mbpp/ release)")
    records = list(_records(path))
    if not records:
        raise DataError(f"MBPP file {str(path)!r} holds no problems")
    first = records[0][0]
    schema = isinstance(first, dict) and "prompt" in first and "text" not in first
    problems: dict[int, MbppProblem] = {}
    for record, where in records:
        problem = _problem(record, where, schema)
        if problem.task_id in problems:
            raise DataError(f"{where}: task_id {problem.task_id} appears twice in {str(path)!r}; "
                            "each problem has one row")
        problems[problem.task_id] = problem
    return [problems[t] for t in sorted(problems)]


# --------------------------------------------------------------------------- splits


def mbpp_split_of(task_id: int) -> str:
    """The standard split of a task id: ``"prompt"`` (1-10), ``"test"`` (11-510),
    ``"validation"`` (511-600) or ``"train"`` (601-974).

    The upstream README evaluates on 11-510 and prompts with 1-10 (the rest is for training);
    the Hugging Face dataset ``google-research-datasets/mbpp`` cuts the rest into validation
    (511-600) and train (601-974), the split every reference harness loads.

    Example::

        mbpp_split_of(11)   # 'test'
    """
    if isinstance(task_id, bool) or not isinstance(task_id, int):
        raise DataError(f"`task_id` must be an integer, got {task_id!r}")
    for name, (first, last) in MBPP_SPLITS.items():
        if first <= task_id <= last:
            return name
    raise DataError(f"`task_id` {task_id} is outside MBPP's task ids 1-974; it has no standard split")


def mbpp_split(problems: Iterable[MbppProblem], name: str) -> list[MbppProblem]:
    """The problems of split ``name`` (a key of `MBPP_SPLITS`), in task-id order.

    Example::

        test = mbpp_split(read_mbpp(folder), "test")     # 500 problems, task ids 11-510
    """
    if name not in MBPP_SPLITS:
        raise DataError(f"`name` must be one of {list(MBPP_SPLITS)}, got {name!r}")
    return sorted((p for p in problems if mbpp_split_of(p.task_id) == name), key=lambda p: p.task_id)


# --------------------------------------------------------------------------- prompts


def _header(problem: MbppProblem) -> str:
    return PROMPT_TEMPLATE.format(text=problem.text, tests="\n".join(problem.tests)) + BEGIN


def mbpp_prompt(problem: MbppProblem, shots: Sequence[MbppProblem] = ()) -> str:
    """The standard MBPP prompt for ``problem``, after the solved ``shots``.

    Example::

        mbpp_prompt(p, shots=mbpp_fewshot(problems))
        # 'You are an expert Python programmer, and here is your task: Write a function to find
        #  the similar elements ... Your code should pass these tests:\\n\\nassert ...\\n[BEGIN]\\n
        #  def similar_elements(...) ...\\n[DONE]\\n\\n ... You are an expert ... [BEGIN]\\n'

    Each block is `PROMPT_TEMPLATE` (the task, then every test on its own line) and ``[BEGIN]``;
    a shot's block goes on with its reference code and ``\\n[DONE]`` and is followed by a blank
    line (upstream README; lm-evaluation-harness, mbpp.yaml). Generation stops at ``[DONE]``
    (`harness.data.programs.extract_code` cuts there). Raises `DataError` if a shot is the problem.
    """
    for shot in shots:
        if shot.task_id == problem.task_id:
            raise DataError(f"`shots` contains the problem itself (task_id {problem.task_id}); "
                            "shots come from the prompt split (FEWSHOT_IDS)")
    blocks = [_header(s) + s.code.rstrip() + "\n" + DONE for s in shots]
    return "\n\n".join([*blocks, _header(problem)])


def mbpp_fewshot(problems: Iterable[MbppProblem], ids: Sequence[int] = FEWSHOT_IDS) -> list[MbppProblem]:
    """The shots of the standard 3-shot prompt (task ids 2, 3, 4 of the prompt split), in that order.

    Example::

        shots = mbpp_fewshot(read_mbpp(folder))
    """
    by_id = {p.task_id: p for p in problems}
    missing = [t for t in ids if t not in by_id]
    if missing:
        raise DataError(f"`problems` lacks the shot task ids {missing}; read the full mbpp.jsonl (the "
                        "sanitized file lacks tasks 1, 5 and 10) or pass other `ids`")
    return [by_id[t] for t in ids]
