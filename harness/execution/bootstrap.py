"""The child's script: read the job, block the network, run setup, program and each test in turn.

Run as ``python -I bootstrap.py JOB_PATH EVENT_FD`` in the scratch directory, with the resource
limits already set by the supervisor. It reads the job (JSON: code, setup, tests, nonce), deletes
the job file, and reports on EVENT_FD one line per event, each prefixed with the run's nonce so
that nothing the program prints can pass for one, and carrying the pid, so that a forked copy of
the bootstrap (a program's ``os.fork()`` child that returns into the tests) does not count:

    start; phase (setup | code | test i); syntax_error; failed (test i, its text); error (type,
    message, phase); memory (phase); done -- written only after the last test ran.

The program runs with ``__name__ == "__program__"`` (an ``if __name__ == "__main__":`` block of
generated code does not run) and the tests in the same namespace, after it. The child can import
whatever the interpreter's environment (the virtualenv) provides.

``done`` is the one proof that every test ran: a program that calls ``sys.exit(0)`` is reported
as an ``error`` (SystemExit), one that calls ``os._exit(0)`` or dies of a signal leaves no
``done`` and is judged by the supervisor. After the terminal event the script leaves with
``os._exit`` (no atexit handlers, no waiting for the program's threads).

Network: ``socket.socket`` refuses AF_INET/AF_INET6, and ``create_connection`` / ``getaddrinfo``
/ ``gethostbyname`` raise. This stops accidents in Python code only; ``_socket`` used directly,
C extensions and subprocesses (``curl``) still reach the network. Stdlib only, never imports
``harness``.
"""

import json
import os
import sys

_MESSAGE_LIMIT = 4000


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


def main():
    job_path, fd = sys.argv[1], int(sys.argv[2])
    with open(job_path, encoding="utf-8") as fh:
        job = json.load(fh)
    os.unlink(job_path)
    prefix = job["nonce"] + " "
    write, dumps, exit_now, getpid = os.write, json.dumps, os._exit, os.getpid

    def emit(event, **fields):
        fields["e"], fields["pid"] = event, getpid()
        write(fd, (prefix + dumps(fields) + "\n").encode("utf-8", "replace"))

    def flush():
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except BaseException:
                pass

    def finish(event, **fields):
        flush()
        emit(event, **fields)
        exit_now(0)

    def short(text):
        text = str(text)
        return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT] + "...[truncated]"

    memory_lines = {}
    for phase in ["setup", "code"] + [f"test {i}" for i in range(len(job["tests"]))]:
        event = {"e": "memory", "phase": phase, "pid": getpid()}
        memory_lines[phase] = (prefix + dumps(event) + "\n").encode()
    _block_network()
    emit("start")
    try:
        program = compile(job["code"], "<program>", "exec")
    except BaseException as exc:  # SyntaxError, ValueError (NUL bytes), RecursionError
        line = getattr(exc, "lineno", None)
        finish("syntax_error", type=type(exc).__name__, msg=short(exc), lineno=line)
    steps = [("setup", compile(job["setup"], "<setup>", "exec"), None), ("code", program, None)]
    for i, test in enumerate(job["tests"]):
        steps.append((f"test {i}", compile(test, f"<test {i}>", "exec"), test))
    namespace = {"__name__": "__program__", "__builtins__": __builtins__}
    del job
    for phase, step, test in steps:
        emit("phase", phase=phase)
        try:
            exec(step, namespace)
        except MemoryError:
            namespace.clear()
            flush()
            write(fd, memory_lines[phase])
            exit_now(0)
        except AssertionError as exc:
            if test is None:
                finish("error", phase=phase, type="AssertionError", msg=short(exc))
            finish("failed", phase=phase, test=short(test), msg=short(exc))
        except BaseException as exc:
            try:
                text = short(exc)
            except BaseException:
                text = "<str() of the exception failed>"
            finish("error", phase=phase, type=type(exc).__name__, msg=text)
    finish("done")


if __name__ == "__main__":
    main()
