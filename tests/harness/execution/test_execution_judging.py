"""harness.execution: a program cannot change how its tests are run, judged or reported, and the
strict comparison mode.

Each fault came from trying the executor with inputs from public bug reports: a program that
rebinds ``builtins.exec`` passed tests it fails; ``builtins.AssertionError = ZeroDivisionError``
turned a failure into an error; a program that ignored SIGXCPU was ``crashed``, not ``timeout``;
a profile hook could rewrite the verdict; an object whose ``__eq__`` is always True passes
``assert f(x) == y`` (still so by default: ``compare="strict"`` is the remedy).
"""

import signal
import textwrap

import pytest

from harness.errors import DataError
from harness.execution import COMPARE_MODES, run_many, run_tests
from harness.execution.bootstrap import CHANNEL_LOST
from harness.execution.result import classify
from tests._support.leftovers import no_leftovers  # noqa: F401 (autouse: no process outlives a test)

WRONG = "def add(a, b):\n    return a - b\n"
RIGHT = "def add(a, b):\n    return a + b\n"
TESTS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]


def run(code, tests=TESTS, **kwargs):
    kwargs.setdefault("timeout_s", 5)
    return run_tests(code, tests, **kwargs)


# --- 1. the program cannot change how its tests run, are judged or reported ----------------

def test_rebinding_builtins_exec_does_not_make_a_wrong_program_pass():
    """The reported input: the child looked ``exec`` up in builtins after the program ran."""
    code = "import builtins\nbuiltins.exec = lambda *a, **k: None\n" + WRONG
    result = run(code)
    assert not result.passed
    assert result.status == "failed" and result.failed_test == TESTS[0] and result.tests_run == 0


def test_rebinding_assertion_error_still_reports_a_failure():
    """The reported input: a failing assert was reported as an ``error``."""
    code = "import builtins\nbuiltins.AssertionError = ZeroDivisionError\n" + WRONG
    result = run(code)
    assert result.status == "failed" and result.failed_test == TESTS[0]
    assert result.error_type == "AssertionError"


PATCHES = [
    "builtins.exec = lambda *a, **k: None",
    "builtins.eval = lambda *a, **k: 0",
    "del builtins.exec, builtins.compile, builtins.eval",
    "builtins.AssertionError = ZeroDivisionError",
    "builtins.MemoryError = AssertionError",
    "builtins.BaseException = KeyError",
    "builtins.len = lambda x: 0",
    "builtins.str = lambda *a: 'done'",
    "builtins.type = lambda *a: int",
    "builtins.repr = builtins.print = builtins.getattr = builtins.isinstance = None",
    "os.write = lambda fd, data: len(data)",
    "os._exit = lambda code: None",
    "os.getpid = lambda: 1",
    "sys.exit = lambda *a: None",
    "json.dumps = lambda *a, **k: '{\"e\": \"done\"}'",
    "import json.encoder; json.encoder.encode_basestring_ascii = lambda s: '\"done\"'",
    "import _json; _json.encode_basestring_ascii = lambda s: '\"done\"'",
    "import __main__; __main__.os = __main__.sys = __main__.json = None",
    "import __main__; __main__._MESSAGE_LIMIT = 0; __main__.CHANNEL_LOST = 0",
    "sys.stdout = sys.stderr = None",
    "sys.setrecursionlimit(30)",
    "import gc; gc.disable()",
]


@pytest.mark.parametrize("patch", PATCHES)
def test_a_patched_builtin_or_module_changes_no_verdict(patch):
    """Each patch runs at the program's top level: a wrong program still fails its first test and
    a right one still passes both."""
    header = f"import builtins, json, os, sys\n{patch}\n"
    wrong = run(header + WRONG)
    assert wrong.status == "failed" and wrong.failed_test == TESTS[0], wrong.detail
    right = run(header + RIGHT)
    assert right.passed and right.tests_run == 2, right.detail


def test_tests_see_the_builtins_as_they_were_but_the_program_keeps_its_own():
    code = textwrap.dedent("""
        import builtins
        builtins.sorted = lambda xs: [1, 2, 3]
        builtins.len = lambda xs: 42
        def f():
            return [3, 1]
        def n():
            return len([])
    """)
    lied = run(code, ["assert sorted(f()) == [1, 2, 3]"])
    assert lied.status == "failed"
    kept = run(code, ["assert n() == 42", "assert len([]) == 0", "assert sorted([2, 1]) == [1, 2]"])
    assert kept.passed, kept.detail


# A hook that rewrites what it can of every frame of the bootstrap it is handed.
HOOK = textwrap.dedent("""
    import sys
    def hook(frame, event, arg):
        if frame.f_code.co_filename.endswith("bootstrap.py"):
            found = frame.f_locals
            for name, value in {"event": "done", "why": None, "equal": True, "present": True,
                                "stack": [], "test": None, "plan": None}.items():
                if name in found:
                    found[name] = value
        return hook
    def install():
        sys.setprofile(hook)
        sys.settrace(hook)
""")


@pytest.mark.parametrize("where, tests, status", [
    ("add = lambda a, b: (install(), a - b)[1]", ["assert add(1, 2) == 3"], "failed"),
    ("install()\n" + WRONG, ["assert add(1, 2) == 3"], "failed"),
    ("class Boom(Exception):\n    def __str__(self):\n        install()\n        return 'boom'\n"
     "def add(a, b):\n    raise Boom()", ["assert add(1, 2) == 3"], "error"),
    ("class Out:\n    def write(self, s):\n        return len(s)\n    def flush(self):\n        install()\n"
     "sys.stdout = Out()\n" + WRONG, ["assert add(1, 2) == 3"], "failed"),
    ("class V:\n    def __eq__(self, other):\n        install()\n        return False\n"
     "def add(a, b):\n    return V()", ["assert add(1, 2) == V()"], "failed"),
])
@pytest.mark.parametrize("compare", COMPARE_MODES)
def test_trace_and_profile_hooks_cannot_rewrite_the_verdict(where, tests, status, compare):
    """Such a hook once turned a failure into a pass (it rewrote ``finish``'s event to done)."""
    result = run(HOOK + where, tests, compare=compare)
    assert result.status == status, result.detail


def test_a_stream_that_leaves_on_flush_cannot_change_the_verdict():
    code = "import os, sys\nclass Out:\n    def write(self, s):\n        return len(s)\n" \
           "    def flush(self):\n        os._exit(3)\nsys.stdout = Out()\n"
    assert run(code + WRONG).status == "failed"
    assert run(code + RIGHT).passed


def test_a_partial_line_on_the_event_pipe_swallows_no_event():
    """Garbage without a newline written to every descriptor once ran into the next event."""
    code = "import os\nfor fd in range(3, 30):\n    try:\n        os.write(fd, b'garbage')\n" \
           "    except OSError:\n        pass\n"
    assert run(code + WRONG).status == "failed"
    assert run(code + RIGHT).passed


def test_closing_the_event_pipe_is_crashed_never_passed():
    result = run("import os\nos.closerange(3, 4096)\n" + RIGHT)
    assert result.status == "crashed" and result.exit_code == CHANNEL_LOST
    assert "closed or replaced its event pipe" in result.detail and result.tests_run == 0


# --- 2. death by the CPU limit is a timeout, whatever the program did with SIGXCPU ---------

def test_a_loop_that_ignores_sigxcpu_is_a_timeout():
    """The reported input: SIGKILL from the hard RLIMIT_CPU was ``crashed``."""
    code = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n"
    result = run(code, ["assert True"], timeout_s=10, cpu_s=1)
    assert result.status == "timeout" and result.signal == signal.SIGKILL
    assert "CPU-time limit of 1 s" in result.detail and "handled or ignored SIGXCPU" in result.detail


def test_a_sigxcpu_handler_that_raises_is_a_timeout_not_an_error():
    code = textwrap.dedent("""
        import signal
        def on_xcpu(*_):
            raise ValueError("out of CPU")
        signal.signal(signal.SIGXCPU, on_xcpu)
        while True:
            pass
    """)
    result = run(code, ["assert True"], timeout_s=10, cpu_s=1)
    assert result.status == "timeout" and result.signal is None
    assert "which the program handled or ignored, going on past the limit" in result.detail


def test_a_program_past_its_cpu_limit_does_not_pass_even_if_its_tests_do():
    code = textwrap.dedent("""
        import signal, time
        signal.signal(signal.SIGXCPU, signal.SIG_IGN)
        while time.process_time() < 1.3:
            pass
    """) + RIGHT
    result = run(code, timeout_s=10, cpu_s=1)
    assert result.status == "timeout" and not result.passed


def answer(**fields):
    base = {"returncode": 0, "events": [], "plan": {"RLIMIT_CPU": [1, 2]}, "cpu_s": 0.05}
    return {**base, **fields}


def events(*phases, final=None):
    found = [{"e": "start"}] + [{"e": "phase", "phase": p} for p in phases]
    return found + ([final] if final else [])


@pytest.mark.parametrize("returncode, cpu_s, status, words", [
    (-signal.SIGKILL, 1.99, "timeout", "SIGKILL at the hard limit"),
    (-signal.SIGKILL, 0.30, "crashed", "not the CPU limit"),
    (-signal.SIGXCPU, 1.00, "timeout", "(SIGXCPU; it used 1.00 s of CPU)"),
    (-signal.SIGXCPU, None, "timeout", "CPU-time limit (SIGXCPU)"),
    (-signal.SIGTERM, 1.50, "timeout", "SIGXCPU, then SIGTERM"),
    (-signal.SIGKILL, None, "crashed", "not the CPU limit"),
])
def test_classify_tells_the_cpu_limit_by_the_cpu_time_used(returncode, cpu_s, status, words):
    result = classify(answer(returncode=returncode, cpu_s=cpu_s, events=events("setup", "code")),
                      n_tests=1, timeout_s=10, memory_mb=512)
    assert result.status == status and words in result.detail, result.detail


# --- 3. a pass needs every phase, reported by the child itself -----------------------------

@pytest.mark.parametrize("phases, passed", [
    (("setup", "code", "test 0", "test 1"), True),
    (("setup", "code", "test 0"), False),
    (("setup", "code", "test 1", "test 0"), False),
    (("setup", "code", "test 0", "test 0", "test 1"), False),
    (("code", "test 0", "test 1"), False),
    ((), False),
])
def test_done_counts_only_after_every_phase_in_order(phases, passed):
    result = classify(answer(events=events(*phases, final={"e": "done"})), n_tests=2, timeout_s=3, memory_mb=512)
    assert result.passed is passed
    if not passed:
        assert result.status == "crashed" and "not to be trusted and is not a pass" in result.detail
        assert result.tests_run < 2
    else:
        assert result.tests_run == 2


@pytest.mark.parametrize("tests, status, tests_run", [
    (["assert add(1, 2) == 3", "os._exit(0)", "assert True"], "crashed", 1),
    (["assert add(1, 2) == 3", "assert True", "os._exit(0)"], "crashed", 2),
    (["assert add(1, 2) == 3", "sys.exit(0)", "assert True"], "error", 1),
    (["assert add(1, 2) == 3", "leave()", "assert True"], "crashed", 1),
])
def test_leaving_after_some_tests_is_not_passed(tests, status, tests_run):
    code = "import os, sys\ndef leave():\n    os.kill(os.getpid(), 9)\n" + RIGHT
    result = run(code, tests)
    assert (result.status, result.tests_run) == (status, tests_run), result.detail


def test_closing_stdout_and_stderr_neither_fakes_nor_prevents_a_verdict():
    code = "import os\nos.close(1)\nos.close(2)\n"
    right = run(code + RIGHT)
    assert right.passed and right.tests_run == 2
    wrong = run(code + WRONG)
    assert wrong.status == "failed" and wrong.tests_run == 0


# --- 4. equality: the default's limit and the strict mode ---------------------------------

ALWAYS_EQUAL = "class Yes:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n"


def test_by_default_an_object_equal_to_everything_passes_the_usual_assert():
    """The documented limit of the default mode (harness.execution.run's docstring)."""
    result = run(ALWAYS_EQUAL + "def f(x):\n    return Yes()\n", ["assert f(1) == 2"])
    assert result.passed


@pytest.mark.parametrize("returned, expected, reason", [
    ("Yes()", "2", "the result is a Yes where a int was expected"),
    ("[1, Yes()]", "[1, 2]", "the result[1] is a Yes where a int was expected"),
    ("(1, [2, Yes()])", "(1, [2, 3])", "the result[1][1] is a Yes where a int was expected"),
    ("{'a': Yes()}", "{'a': 1}", "the result['a'] is a Yes where a int was expected"),
    ("{Yes(): 1}", "{2: 1}", "has a key of type Yes; strict comparison takes only builtin scalars"),
    ("{Yes()}", "{2}", "holds an element of type Yes; strict comparison takes only builtin scalars"),
    ("[1, 2]", "(1, 2)", "the result is a list where a tuple was expected"),
    ("[1, 2, 3]", "[1, 2]", "the result has 3 items where 2 were expected"),
    ("{'a': 1}", "{'b': 1}", "the result lacks the key 'b'"),
    ("'3'", "3", "the result is a str where a int was expected"),
    ("[1, 2.5]", "[1, 2]", "the result[1] differs from the expected int"),
    ("{1, 2}", "{1, 3}", "the result differs from the expected set"),
    ("frozenset({1})", "{1}", "the result is a frozenset where a set was expected"),
    ("MyDict(a=2)", "{'a': 1}", "the result is a MyDict where a dict was expected"),
    ("collections.Counter(a=1)", "collections.Counter(a=1)", None),
    ("P(1, 2)", "(1, 2)", "the result is a P where a tuple was expected"),
    ("MyInt(3)", "3", "the result is a MyInt where a int was expected"),
])
def test_strict_fails_a_result_of_another_type_at_any_depth(returned, expected, reason):
    code = ALWAYS_EQUAL + textwrap.dedent(f"""
        import collections
        P = collections.namedtuple("P", "x y")
        class MyInt(int):
            def __eq__(self, other):
                return True
            __hash__ = int.__hash__
        class MyDict(dict):
            def __eq__(self, other):
                return True
        def f(x):
            return {returned}
    """)
    test = f"assert f(1) == {expected}"
    result = run(code, [test], compare="strict")
    if reason is None:  # a Counter expected: the expected's own __eq__ decides, and it is honest
        assert result.passed, result.detail
        return
    assert result.status == "failed" and result.failed_test == test
    assert result.error_message == f"strict comparison: {reason}" or reason in result.error_message, \
        result.error_message


def test_strict_takes_the_standard_librarys_dicts_for_a_dict_through_dicts_own_methods():
    """MBPP's reference solutions of tasks 40, 88, 653 and 902 return a Counter or a defaultdict
    for an expected dict literal; a program that patches those classes gains nothing."""
    code = textwrap.dedent("""
        import collections
        def counts():
            return collections.Counter("abb")
        def groups():
            d = collections.defaultdict(list)
            d["x"].append(1)
            return d
        def ordered():
            return collections.OrderedDict([("b", 1), ("a", 2)])
    """)
    tests = ["assert counts() == {'a': 1, 'b': 2}", "assert groups() == {'x': [1]}",
             "assert ordered() == {'a': 2, 'b': 1}"]
    assert run(code, tests, compare="strict").passed
    patched = textwrap.dedent("""
        import collections
        C = collections.Counter
        C.__len__ = lambda self: 1
        C.__iter__ = lambda self: iter(["a"])
        C.__contains__ = lambda self, key: True
        C.__getitem__ = lambda self, key: 1
        C.__eq__ = lambda self, other: True
        def counts():
            return collections.Counter(b=5)
    """)
    test = "assert counts() == {'a': 1}"
    assert run(patched, [test]).passed  # by default the patched Counter decides
    result = run(patched, [test], compare="strict")
    assert result.status == "failed"
    assert result.error_message == "strict comparison: the result lacks the key 'a'"


@pytest.mark.parametrize("returned, expected", [
    ("3", "3.0"), ("3.0", "3"), ("True", "1"), ("1", "True"),
    ("(1, [2.0, {'a': (3, 'x')}])", "(1, [2, {'a': (3, 'x')}])"),
    ("{1: 'a', (2, 3): None}", "{(2, 3): None, 1: 'a'}"),
    ("{1, 'b', (2, frozenset({3}))}", "{'b', 1, (2, frozenset({3}))}"),
    ("b'xy'", "b'xy'"), ("None", "None"), ("1 + 2j", "1 + 2j"),
    ("Point(1, 2)", "Point(1, 2)"),
])
def test_strict_passes_equal_values_of_the_same_type_and_the_numeric_allowances(returned, expected):
    code = textwrap.dedent(f"""
        class Point:
            def __init__(self, x, y):
                self.x, self.y = x, y
            def __eq__(self, other):
                return type(other) is Point and (self.x, self.y) == (other.x, other.y)
        def f(x):
            return {returned}
    """)
    result = run(code, [f"assert f(1) == {expected}"], compare="strict")
    assert result.passed, result.detail


def test_strict_lets_the_expected_value_decide_not_the_result():
    """Same class on both sides: the result's lying ``__eq__`` decides by default, the
    expected's honest one in strict mode."""
    code = textwrap.dedent("""
        class V:
            def __init__(self, v, lie=False):
                self.v, self.lie = v, lie
            def __eq__(self, other):
                return self.lie or (type(other) is V and self.v == other.v)
        def f(x):
            return V(x, lie=True)
    """)
    tests = ["assert f(1) == V(2)"]
    assert run(code, tests).passed
    assert run(code, tests, compare="strict").status == "failed"


def test_strict_keeps_the_tests_message_and_runs_other_forms_as_given():
    code = ALWAYS_EQUAL + "def f(x):\n    return Yes()\ndef g(x):\n    return x\n"
    result = run(code, ["assert f(1) == 2, 'two'"], compare="strict")
    assert result.status == "failed"
    assert result.error_message == "two (strict comparison: the result is a Yes where a int was expected)"
    others = ["assert f(1)", "assert f(1) == 2 == 2", "x = f(1); assert x == 2", "assert not (f(1) != 2)",
              "assert g(1) == 1", "assert abs(g(1.0) - 1) < 1e-9"]
    for mode in COMPARE_MODES:
        assert run(code, others, compare=mode).passed


def test_strict_reports_errors_and_cycles_like_the_default():
    code = "def f(x):\n    a = [1]\n    a.append(a)\n    return a\ndef boom(x):\n    return 1 / 0\n"
    cyclic = run(code, ["b = [1]; b.append(b)", "assert f(1) == b"], compare="strict")
    assert cyclic.passed, cyclic.detail
    error = run(code, ["assert boom(1) == 1"], compare="strict")
    assert error.status == "error" and error.error_type == "ZeroDivisionError"


def test_strict_mode_in_a_pool_and_a_misspelt_mode_is_an_error():
    programs = [(ALWAYS_EQUAL + "def f(x):\n    return Yes()", ["assert f(1) == 2"]),
                (RIGHT, ["assert add(1, 2) == 3"])]
    assert [r.status for r in run_many(programs, compare="strict", timeout_s=5)] == ["failed", "passed"]
    assert [r.status for r in run_many(programs, timeout_s=5)] == ["passed", "passed"]
    for bad in ("strickt", "Strict", None, 1):
        with pytest.raises(DataError, match=r"compare must be one of \['default', 'strict'\], got " + repr(bad)):
            run_tests(RIGHT, ["assert True"], compare=bad)
        with pytest.raises(DataError, match=r"compare must be one of \['default', 'strict'\], got " + repr(bad)):
            run_many(programs, compare=bad)
