"""The child's script: read the job, block the network, run setup, program and each test in turn.

Run as ``python -I bootstrap.py JOB_PATH EVENT_FD`` in the scratch directory, with the resource
limits already set by the supervisor. It reads the job (JSON: code, setup, tests, compare, nonce),
deletes the job file, and reports on EVENT_FD one line per event, each prefixed with the run's
nonce so that nothing the program prints can pass for one, and carrying the pid, so that a forked
copy of the bootstrap (a program's ``os.fork()`` child that returns into the tests) does not count:

    start; phase (setup | code | test i); syntax_error; failed (test i, its text); error (type,
    message, phase); memory (phase); done -- written only after the last test ran.

Each line also starts with a newline, so that a partial line the program wrote to EVENT_FD cannot
swallow the event that follows it.

The program runs with ``__name__ == "__program__"`` (an ``if __name__ == "__main__":`` block of
generated code does not run) and the tests in the same namespace, after it. The child can import
whatever the interpreter's environment (the virtualenv) provides.

What the program cannot change about how its tests are run, judged and reported: everything the
loop and the reports use is bound before the program runs, as locals of `main` (``exec``,
``eval``, the exception classes, ``os.write``, ``os._exit``, ``os.getpid``, the C JSON string
encoder, the original stdout and stderr), so a program that rebinds or deletes builtins
(``builtins.exec = ...``, ``builtins.AssertionError = ...``), patches ``os``, ``sys`` or ``json``
(``sys.exit``, ``os._exit``, ``sys.stdout``, ``json.dumps``) or the ``__main__`` module (this
script) changes nothing here. Each test runs with a fresh copy of the builtins as they were
before the program ran (the program's own functions keep the builtins they were defined with),
and before each test and each report the trace and profile hooks are removed and the recursion
limit restored. Not contained: a program that reads this script's frames or memory (``sys._getframe``,
``gc``, ``ctypes``) to find the nonce and forge a report, or that closes or replaces EVENT_FD (that
silences the child: its run is ``crashed``, never ``passed``).

``compare="strict"`` (``harness.execution.run``): a test of the form ``assert RESULT == EXPECTED``
(optionally ``, message``) is evaluated in parts; it passes only when the result has the
expected's type, deeply (see `_strict_comparer`), and equals it. Other tests run as given.

``done`` is the one proof that every test ran: a program that calls ``sys.exit(0)`` is reported
as an ``error`` (SystemExit), one that calls ``os._exit(0)`` or dies of a signal leaves no
``done`` and is judged by the supervisor. After the terminal event the script flushes the
program's output and leaves with ``os._exit`` (no atexit handlers, no waiting for the program's
threads); the event goes first, so the program's stream objects cannot change it.

Network: ``socket.socket`` refuses AF_INET/AF_INET6, and ``create_connection`` / ``getaddrinfo``
/ ``gethostbyname`` raise. This stops accidents in Python code only; ``_socket`` used directly,
C extensions and subprocesses (``curl``) still reach the network. Stdlib only, never imports
``harness``.
"""

import json
import os
import sys

_MESSAGE_LIMIT = 4000
# The exit status of a child whose event pipe was closed or replaced by the program.
CHANNEL_LOST = 125


def _block_network():
    import socket

    real = socket.socket

    def refuse(*_args, **_kwargs):
        raise PermissionError("network access is disabled for generated code")

    class GuardedSocket(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self.family in (socket.AF_INET, socket.AF_INET6):
                self.close()
                refuse()

    socket.socket = GuardedSocket
    for name in ("create_connection", "create_server", "getaddrinfo", "gethostbyname",
                 "gethostbyname_ex", "gethostbyaddr"):
        setattr(socket, name, refuse)


def _strict_plans(tests):
    """Per test: ``(result, expected, message)`` code objects (message None when absent) for a
    test that is one ``assert RESULT == EXPECTED[, message]`` statement, else None."""
    import ast

    plans = []
    for i, test in enumerate(tests):
        body = ast.parse(test, f"<test {i}>").body
        node = body[0] if len(body) == 1 else None
        if (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)
                and len(node.test.ops) == 1 and isinstance(node.test.ops[0], ast.Eq)):
            parts = (node.test.left, node.test.comparators[0], node.msg)
            plans.append(tuple(None if part is None else compile(ast.Expression(part), f"<test {i}>", "eval")
                               for part in parts))
        else:
            plans.append(None)
    return plans


def _strict_comparer(profile_off, trace_off, settle):
    """``compare(expected, result)``: None when ``result`` equals ``expected`` strictly, else why not.

    Strictly: at every level the result has exactly the expected's type, with two allowances:
    ``bool``, ``int`` and ``float`` may stand for each other (their comparison is the builtin one),
    and where a ``dict`` is expected the standard library's dicts ``collections.Counter``,
    ``defaultdict`` and ``OrderedDict`` may stand for it (compared through ``dict``'s own methods,
    so a patch to their class changes nothing; MBPP's reference solutions return them). Lists and
    tuples match item by item; dicts have the same keys, and every key of the result and every
    element of a result set or frozenset is a builtin scalar (or a tuple or frozenset of them), so
    the builtin hashing and equality decide (``1``, ``1.0`` and ``True`` are then one key, as in
    Python); scalars (numbers, ``str``, ``bytes``, ``None``) compare with the builtin ``==``; any
    other type compares with the expected value on the left, so its own ``__eq__`` decides.
    Items that are the same object are equal (as in Python's container comparison); cycles end.
    Everything it uses is bound when it is made (before the program runs). After each operation
    that may run the program's code (an ``__eq__``, ``__hash__`` or ``__bool__``) it calls
    ``profile_off`` and ``trace_off`` (see `main`: not Python functions) and then ``settle``.
    """
    type_, len_, id_, range_, repr_, bool_ = type, len, id, range, repr, bool
    name_of = type.__dict__["__name__"].__get__
    int_, float_, complex_, str_, bytes_, none = int, float, complex, str, bytes, type(None)
    list_, tuple_, dict_, set_, frozenset_ = list, tuple, dict, set, frozenset
    import collections

    dicts = (dict, collections.Counter, collections.defaultdict, collections.OrderedDict)
    dict_len, dict_keys, dict_has, dict_get = dict.__len__, dict.__iter__, dict.__contains__, dict.__getitem__

    def a_dict(kind):
        return kind is dicts[0] or kind is dicts[1] or kind is dicts[2] or kind is dicts[3]

    def number(kind):
        return kind is int_ or kind is float_ or kind is bool_

    def scalar(kind):
        return number(kind) or kind is str_ or kind is bytes_ or kind is none or kind is complex_

    def plain(value):
        stack = [value]
        while stack:
            item = stack.pop()
            kind = type_(item)
            if kind is tuple_ or kind is frozenset_:
                stack.extend(item)
            elif not scalar(kind):
                return False
        return True

    def where(path):
        parts = []
        while path is not None:
            path, label = path
            parts.append(label)
        parts.reverse()
        return "".join(parts)

    def compare(expected, result):
        stack, seen = [(expected, result, None, True)], set_()
        while stack:
            e, g, path, top = stack.pop()
            if e is g and not top:
                continue
            te, tg = type_(e), type_(g)
            if te is not tg and not (number(te) and number(tg)) and not (te is dict_ and a_dict(tg)):
                return f"the result{where(path)} is a {name_of(tg)} where a {name_of(te)} was expected"
            if te is list_ or te is tuple_ or te is dict_:
                key = (id_(e), id_(g))
                if key in seen:
                    continue
                seen.add(key)
                size = dict_len(g) if te is dict_ else len_(g)
                if len_(e) != size:
                    return f"the result{where(path)} has {size} items where {len_(e)} were expected"
                children = []
                if te is dict_:
                    for k in dict_keys(g):
                        if not plain(k):
                            return (f"the result{where(path)} has a key of type {name_of(type_(k))}; strict "
                                    f"comparison takes only builtin scalars (or tuples of them) as keys")
                    for k, v in e.items():
                        label = f"[{repr_(k)[:40]}]" if plain(k) else "[<key>]"
                        present = dict_has(g, k)
                        profile_off()
                        trace_off()
                        settle()
                        if not present:
                            return f"the result{where(path)} lacks the key {label[1:-1]}"
                        item = dict_get(g, k)
                        profile_off()
                        trace_off()
                        settle()
                        children.append((v, item, (path, label), False))
                else:
                    for i in range_(len_(e)):
                        children.append((e[i], g[i], (path, f"[{i}]"), False))
                children.reverse()
                stack.extend(children)
                continue
            if te is set_ or te is frozenset_:
                for x in g:
                    if not plain(x):
                        return (f"the result{where(path)} holds an element of type {name_of(type_(x))}; "
                                f"strict comparison takes only builtin scalars (or tuples of them) in sets")
            equal = bool_(e == g)
            profile_off()
            trace_off()
            settle()
            if not equal:
                return f"the result{where(path)} differs from the expected {name_of(te)}"
        return None

    return compare


def main():
    job_path, fd = sys.argv[1], int(sys.argv[2])
    with open(job_path, encoding="utf-8") as fh:
        job = json.load(fh)
    os.unlink(job_path)
    # From here to the first step, everything the loop and the reports use is bound as a local,
    # before the program can change it (see the module docstring). The program's trace and
    # profile hooks are handed the frame of each Python function called (and of the caller of each
    # builtin function) while they are set, and may rewrite its variables; so after every call
    # that may run the program's code, the first thing done is to remove them through
    # `functools.partial` objects, which call `sys.setprofile` and `sys.settrace` without a
    # Python frame and without the "c_call" event a builtin function called directly would give.
    import _json
    import builtins
    import functools
    import gc

    partial = functools.partial
    profile_off, trace_off = partial(sys.setprofile, None), partial(sys.settrace, None)
    run_code, evaluate = partial(exec), partial(eval)
    prefix = "\n" + job["nonce"] + " "
    channel_lost, message_limit = CHANNEL_LOST, _MESSAGE_LIMIT
    write, exit_now, getpid = os.write, os._exit, os.getpid
    assertion_error, memory_error, base_exception = AssertionError, MemoryError, BaseException
    str_, exact_str, type_, len_, int_ = str, str.__str__, type, len, int
    name_of = type.__dict__["__name__"].__get__
    encode = _json.encode_basestring_ascii
    set_limit, recursion_limit = sys.setrecursionlimit, sys.getrecursionlimit()
    gc_enable, gc_disable, gc_enabled = gc.enable, gc.disable, gc.isenabled
    sys_module, getattr_ = sys, getattr
    originals = [(type(s).flush, s) for s in (sys.stdout, sys.stderr) if s is not None]
    originals_by_name = {"stdout": sys.stdout, "stderr": sys.stderr}
    pristine = dict(builtins.__dict__)
    collecting, held = [True], [False]  # whether the program wants the collector; whether it is held off

    # The nested functions below are called only while no hook is set: a hook handed one of their
    # frames could rewrite the variables they share with this one.
    def settle():
        """After the program's code (hooks already removed): no collection (no finalizer of the
        program runs inside the reports), the recursion limit as it was."""
        if not held[0]:
            collecting[0], held[0] = gc_enabled(), True
            gc_disable()
        set_limit(recursion_limit)

    def resume():
        """Before the program's code: the collector as the program left it."""
        held[0] = False
        if collecting[0]:
            gc_enable()

    def send(data):
        try:
            while data:
                data = data[write(fd, data):]
        except base_exception:
            exit_now(channel_lost)

    def line_of(event, fields):
        parts = ['"e": ' + encode(event), '"pid": ' + str_(getpid())]
        for key, value in fields.items():
            if value is None:
                text = "null"
            elif type_(value) is int_:
                text = str_(value)
            else:
                text = encode(value)
            parts.append(encode(key) + ": " + text)
        return prefix + "{" + ", ".join(parts) + "}\n"

    def emit(event, **fields):
        send(line_of(event, fields).encode("ascii"))

    def flush():
        for method, stream in originals:
            try:
                method(stream)
            except base_exception:
                pass
        for name in ("stdout", "stderr"):
            try:
                stream = getattr_(sys_module, name)
                if stream is not originals_by_name.get(name):
                    stream.flush()  # the program's stream object: after the verdict was sent
            except base_exception:
                pass
            profile_off()
            trace_off()

    def finish(event, **fields):
        emit(event, **fields)
        flush()
        exit_now(0)

    def short(obj):
        try:
            text = str_(obj)
        except base_exception:
            text = None
        profile_off()
        trace_off()
        settle()
        if text is None:
            return "<str() of the exception failed>"
        text = exact_str(text)
        return text if len_(text) <= message_limit else text[:message_limit] + "...[truncated]"

    memory_lines = {}
    for phase in ["setup", "code"] + [f"test {i}" for i in range(len(job["tests"]))]:
        memory_lines[phase] = line_of("memory", {"phase": phase}).encode("ascii")  # nothing to build then
    _block_network()
    emit("start")
    try:
        program = compile(job["code"], "<program>", "exec")
    except BaseException as exc:  # SyntaxError, ValueError (NUL bytes), RecursionError
        line = getattr(exc, "lineno", None)
        finish("syntax_error", type=type(exc).__name__, msg=short(exc), lineno=line if type(line) is int else None)
    strict = _strict_plans(job["tests"]) if job.get("compare") == "strict" else [None] * len(job["tests"])
    same = _strict_comparer(profile_off, trace_off, settle)
    steps = [("setup", compile(job["setup"], "<setup>", "exec"), None, None), ("code", program, None, None)]
    for i, test in enumerate(job["tests"]):
        steps.append((f"test {i}", compile(test, f"<test {i}>", "exec"), test, strict[i]))
    namespace = {"__name__": "__program__", "__builtins__": builtins}
    del job
    for phase, step, test, plan in steps:
        if test is not None:
            namespace["__builtins__"] = pristine.copy()
            profile_off()  # a finalizer of the replaced builtins may have run
            trace_off()
        emit("phase", phase=phase)
        try:
            resume()
            if plan is None:
                run_code(step, namespace)
                profile_off()
                trace_off()
                settle()
            else:
                result = evaluate(plan[0], namespace)
                profile_off()
                trace_off()
                settle()
                resume()
                expected = evaluate(plan[1], namespace)
                profile_off()
                trace_off()
                settle()
                why = same(expected, result)
                if why is not None:
                    why = "strict comparison: " + why
                    if plan[2] is not None:
                        resume()
                        message = evaluate(plan[2], namespace)
                        profile_off()
                        trace_off()
                        settle()
                        why = short(message) + " (" + why + ")"
                    raise assertion_error(why)
        except memory_error:
            profile_off()
            trace_off()
            namespace.clear()
            profile_off()
            trace_off()
            send(memory_lines[phase])
            flush()
            exit_now(0)
        except assertion_error as exc:
            profile_off()
            trace_off()
            settle()
            if test is None:
                finish("error", phase=phase, type="AssertionError", msg=short(exc))
            finish("failed", phase=phase, test=short(test), msg=short(exc))
        except base_exception as exc:
            profile_off()
            trace_off()
            settle()
            try:
                kind = exact_str(name_of(type_(exc)))
            except base_exception:
                kind = "BaseException"
            finish("error", phase=phase, type=kind, msg=short(exc))
    profile_off()
    trace_off()
    finish("done")


if __name__ == "__main__":
    main()
