"""The supervisor of one run: a short-lived process that starts the child and leaves nothing behind.

Run as ``python -I supervisor.py`` by ``run_tests``, one supervisor per program, with the job as
JSON on stdin; it answers one JSON object on stdout. In order, it:

1. marks itself a child subreaper, so orphans of the run (double-fork + ``setsid`` included)
   reparent to it, and asks for SIGTERM when its parent thread dies (SIGTERM = clean up, exit);
2. makes a private work directory holding the job file and the ``scratch`` directory;
3. starts the child, ``python -I bootstrap.py``, with cwd ``scratch``, stdin ``/dev/null``, a
   small environment (HOME and TMPDIR are the scratch directory, no proxy variables), a new
   session, the resource limits of ``limits.plan_limits`` and a parent-death SIGKILL, all set in
   ``preexec_fn`` (safe here: the supervisor has one thread);
4. reads stdout, stderr and the event pipe as they come, keeping at most ``output_limit`` bytes of
   each stream and counting the rest, until the child exits or the wall clock runs out (then the
   child's process group is sent SIGKILL), then reads the child's own CPU time (``cpu_s``, from
   ``/proc`` before reaping it; ``result.classify`` tells death by the CPU limit from it);
5. SIGKILLs every remaining descendant and reaps it, drains the pipes, removes the work directory.

Stdlib only (``limits`` and ``procs`` are loaded by path): it never imports ``harness``.
"""

import importlib.util
import json
import os
import resource
import secrets
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_EVENT_LIMIT = 1 << 20


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_execution_{name}", os.path.join(_HERE, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


limits = _load("limits")
procs = _load("procs")


class _Stop(Exception):
    """Raised by the SIGTERM handler: stop watching, clean up, answer."""


def _on_term(signum, frame):
    raise _Stop()


def _remove_tree(path):
    def retry(func, target, _exc):
        try:
            os.chmod(os.path.dirname(target), stat.S_IRWXU)
            os.chmod(target, stat.S_IRWXU)
        except OSError:
            pass
        func(target)

    handler = {"onexc": retry} if sys.version_info >= (3, 12) else {"onerror": retry}
    try:
        shutil.rmtree(path, **handler)
    except OSError:
        pass
    return not os.path.exists(path)


class _Streams:
    """The child's stdout, stderr and event pipe, read incrementally with bounded buffers."""

    def __init__(self, fds, output_limit, prefix):
        self.open = dict(fds)  # fd -> name
        self.kept = {name: bytearray() for name in fds.values()}
        self.total = {name: 0 for name in fds.values()}
        self.limit = {name: (_EVENT_LIMIT if name == "events" else output_limit) for name in fds.values()}
        self.prefix, self.partial = prefix, b""

    def _keep_events(self, data):
        """Keep only complete lines that start with the nonce: garbage cannot crowd them out."""
        *lines, self.partial = (self.partial + data).split(b"\n")
        if len(self.partial) > _EVENT_LIMIT // 4:
            self.partial = b""
        for line in lines:
            if line.startswith(self.prefix) and len(self.kept["events"]) + len(line) < _EVENT_LIMIT:
                self.kept["events"] += line + b"\n"

    def pump(self, timeout, extra=()):
        """Read what is ready within ``timeout`` seconds; return the ready fds of ``extra``."""
        watched = list(self.open) + list(extra)
        if not watched:
            time.sleep(max(timeout, 0))
            return []
        ready, _, _ = select.select(watched, [], [], max(timeout, 0))
        for fd in ready:
            if fd not in self.open:
                continue
            data = os.read(fd, 1 << 16)
            name = self.open[fd]
            if not data:
                os.close(fd)
                del self.open[fd]
                continue
            self.total[name] += len(data)
            if name == "events":
                self._keep_events(data)
                continue
            room = self.limit[name] - len(self.kept[name])
            if room > 0:
                self.kept[name] += data[:room]
        return [fd for fd in ready if fd in extra]

    def drain(self, seconds):
        end = time.monotonic() + seconds
        while self.open and time.monotonic() < end:
            self.pump(end - time.monotonic())
        for fd in list(self.open):
            os.close(fd)
        self.open.clear()


def _events(raw, prefix, pid):
    """The events of ``raw`` lines that carry the nonce and come from the child itself."""
    found = []
    for line in bytes(raw).split(b"\n"):
        if line.startswith(prefix):
            try:
                event = json.loads(line[len(prefix):])
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("pid") == pid:
                found.append(event)
    return found


def _spawn(job, plan, work, nonce, ev_write):
    """Write the job file and start the child (see the module docstring, step 3)."""
    scratch = os.path.join(work, "scratch")
    os.mkdir(scratch)
    job_path = os.path.join(work, "job.json")
    with open(os.open(job_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as fh:
        json.dump({"nonce": nonce, "code": job["code"], "setup": job["setup"], "tests": job["tests"],
                   "compare": job.get("compare", "default")}, fh)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch,
           "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}

    def in_child():
        procs.set_parent_death_signal(signal.SIGKILL)
        limits.apply_limits(plan)

    return subprocess.Popen(
        [sys.executable, "-I", os.path.join(_HERE, "bootstrap.py"), job_path, str(ev_write)],
        cwd=scratch, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, pass_fds=(ev_write,), start_new_session=True,
        preexec_fn=in_child, close_fds=True)


def _exited(pid, *, block):
    """True once the child ``pid`` has exited, leaving it unreaped (a zombie whose ``/proc`` entry
    still holds its CPU time); with ``block``, wait for that."""
    flags = os.WEXITED | os.WNOWAIT | (0 if block else os.WNOHANG)
    try:
        return os.waitid(os.P_PID, pid, flags) is not None or block
    except ChildProcessError:
        return True


def _close(*fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def supervise(job):
    """Run one job (see the module docstring) and return the answer as a dict."""
    nonce = secrets.token_hex(16)
    plan = limits.plan_limits(memory_mb=job["memory_mb"], cpu_s=job["cpu_s"],
                              file_size_mb=job["file_size_mb"], open_files=job["open_files"],
                              processes=job["processes"])
    answer = {"returncode": None, "wall_killed": False, "stopped": False, "plan": plan, "cpu_s": None}
    child = streams = work = None
    ev_read, ev_write = os.pipe()
    start = time.monotonic()
    try:
        work = tempfile.mkdtemp(prefix="interp-exec-")
        start = time.monotonic()
        child = _spawn(job, plan, work, nonce, ev_write)
        _close(ev_write)
        streams = _Streams({child.stdout.fileno(): "stdout", child.stderr.fileno(): "stderr",
                            ev_read: "events"}, job["output_limit"], (nonce + " ").encode())
        try:
            exited = [os.pidfd_open(child.pid)]
        except (AttributeError, OSError):
            exited = []
        deadline = start + job["timeout_s"]
        while not _exited(child.pid, block=False):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                answer["wall_killed"] = True
                os.killpg(child.pid, signal.SIGKILL)
                _exited(child.pid, block=True)
                break
            streams.pump(remaining if exited else min(remaining, 0.05), extra=exited)
        _close(*exited)
        answer["cpu_s"] = procs.cpu_seconds(child.pid)  # still a zombie: its own CPU time, not its children's
        child.wait()
    except _Stop:
        answer["stopped"] = True
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        answer["duration_s"] = time.monotonic() - start
        if child is not None and child.poll() is None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except OSError:
                pass
            child.wait()
        answer["descendants_killed"] = procs.kill_descendants()
        if streams is not None:
            streams.drain(2.0)
        else:
            _close(ev_read, ev_write)
        answer["scratch_removed"] = work is None or _remove_tree(work)
    answer["returncode"] = child.returncode if child is not None else None
    answer["events"] = _events(streams.kept["events"], (nonce + " ").encode(), child.pid) if streams else []
    for name in ("stdout", "stderr"):
        answer[name] = bytes(streams.kept[name]).decode("utf-8", "replace") if streams else ""
        answer[name + "_bytes"] = streams.total[name] if streams else 0
        answer[name + "_kept"] = len(streams.kept[name]) if streams else 0
    answer["supervisor_peak_rss_kb"] = _peak_rss_kb()
    return answer


def _peak_rss_kb():
    """This process's own peak resident set (VmHWM, kB). Not ``ru_maxrss``: Linux carries that
    across ``execve``, so it would report the peak of whatever process forked the supervisor."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main():
    parent = os.getppid()
    signal.signal(signal.SIGTERM, _on_term)
    procs.set_subreaper()
    procs.set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        sys.exit(1)
    job = json.loads(sys.stdin.buffer.read())
    sys.stdout.write(json.dumps(supervise(job)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
