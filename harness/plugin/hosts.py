"""Claims across hosts: every pytest-xdist gateway that is not this process's own copy of the
repository is checked before its worker starts.

``pytest claims/ --tx ssh=HOST//python=PY//chdir=REPO --tx ... --dist loadgroup`` runs the
claims on other machines through execnet. Before xdist opens its gateways,
`pytest_xdist_setupnodes` runs a short stdlib-only probe on each host, with the gateway's own
ssh command line, python, ``chdir`` and ``env:`` settings, that reports the harness and fixtures
the worker there would import (`source_versions`):

- a host that cannot be reached (ssh fails, the python or the ``chdir`` folder is missing, no
  harness there) is one error line naming the host and the reason; its gateway is dropped and
  the other hosts run every claim (the session then fails, and the summary names the host);
  when no host is left the run stops with a usage error listing each;
- a host whose harness (version and a digest of its sources), fixtures (a digest per family),
  python or numeric packages (torch, transformers, numpy, scipy, accelerate, sae-lens) differ
  from this machine's is refused at start: a usage error naming the host and both versions,
  before any claim runs.

xdist, left alone, copies pytest itself into each remote ``chdir`` (its deprecated rsync) and
stops with ``ValueError: arg claims/ not relative to an rsync root`` on any path argument; unless
``--rsyncdir`` or the ``rsyncdirs`` ini option asks for a copy, the plugin turns that copy off
(the repository must already be on each host) and passes path arguments relative to the
rootdir, which is where each remote worker runs (its ``chdir``).
"""

from __future__ import annotations

import concurrent.futures
import inspect
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

PROBE_TIMEOUT_S = 120.0
# the packages whose version changes a claim's numbers: compared across hosts
NUMERIC_PACKAGES = ("torch", "transformers", "numpy", "scipy", "accelerate", "sae-lens")


def source_versions(harness_dir: str, fixtures_dir: str | None) -> dict:
    """The harness at `harness_dir` and the fixture recipes at `fixtures_dir` as versions:
    ``{"harness": "VERSION+src.DIGEST", "fixtures": {FAMILY: DIGEST, ...}, "packages": {NAME: VERSION}}``.

    DIGEST is the first 16 hex digits of a sha256 over the relative path and bytes of every file:
    the harness's ``*.py`` sources; each fixture family's folder (recipe, generators, shipped
    weights and data; ``__pycache__`` left out); ``(shared)`` for the package's own top-level
    ``*.py``. ``fixtures`` is {} where the folder does not exist. Standard library only: the
    same source runs on each host (`probe_program`). ``packages``: the python (major.minor) and
    the installed version of each of `NUMERIC_PACKAGES` (``absent`` where not installed), read
    from package metadata without importing them."""
    import hashlib
    import importlib.metadata
    import os
    import re
    import sys

    def digest(root: str, names: list[str]) -> str:
        h = hashlib.sha256()
        for name in sorted(names):
            with open(os.path.join(root, name), "rb") as fh:
                h.update(name.replace(os.sep, "/").encode() + b"\0" + fh.read() + b"\0")
        return h.hexdigest()[:16]

    def files_under(root: str, keep: Callable[[str], bool]) -> list[str]:
        out = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            out += [os.path.relpath(os.path.join(folder, f), root) for f in files if keep(f)]
        return out

    init = os.path.join(harness_dir, "__init__.py")
    with open(init, encoding="utf-8") as fh:
        found = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", fh.read(), re.M)
    version = found.group(1) if found else "unknown"
    harness = f"{version}+src.{digest(harness_dir, files_under(harness_dir, lambda f: f.endswith('.py')))}"
    fixtures: dict[str, str] = {}
    if fixtures_dir and os.path.isdir(fixtures_dir):
        shared = [f for f in os.listdir(fixtures_dir) if f.endswith(".py")]
        fixtures["(shared)"] = digest(fixtures_dir, shared)
        for family in sorted(os.listdir(fixtures_dir)):
            folder = os.path.join(fixtures_dir, family)
            if os.path.isdir(folder) and family != "__pycache__" and not family.startswith("."):
                fixtures[family] = digest(folder, files_under(folder, lambda f: not f.endswith(".pyc")))
    packages = {"python": "%d.%d" % sys.version_info[:2]}
    for name in NUMERIC_PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = "absent"
    return {"harness": harness, "fixtures": fixtures, "packages": packages}


def local_versions() -> dict:
    """This process's `source_versions`: the harness it imported and its fixture recipes
    (``$CLAIMS_FIXTURES_DIR``, else ``fixtures/`` beside the harness, as
    `harness.models.fixtures.fixtures_dir` finds them)."""
    import harness

    harness_dir = Path(harness.__file__).resolve().parent
    env = os.environ.get("CLAIMS_FIXTURES_DIR")
    fixtures = Path(env).expanduser() if env else harness_dir.parent / "fixtures"
    return source_versions(str(harness_dir), str(fixtures))


def probe_program(chdir: str | None, env: dict[str, str]) -> str:
    """Python source, run by a host's interpreter, that applies the gateway's `chdir` and `env`
    as execnet does, finds the harness the xdist worker there would import (its working folder
    first on ``sys.path``) and prints one JSON line: `source_versions` plus ``cwd``, or
    ``{"error": ...}``."""
    return "\n".join([
        "from __future__ import annotations",
        "import importlib.util, json, os, sys",
        f"NUMERIC_PACKAGES = {NUMERIC_PACKAGES!r}",
        inspect.getsource(source_versions),
        f"chdir, env = {chdir!r}, {dict(env)!r}",
        "os.environ.update(env)",
        "try:",
        "    if chdir:",
        "        os.chdir(chdir)",
        "    sys.path.insert(0, os.getcwd())",
        "    spec = importlib.util.find_spec('harness')",
        "    if spec is None or not spec.submodule_search_locations:",
        "        out = {'error': 'no harness importable from ' + os.getcwd() + ' with ' + sys.executable"
        " + '; put the repository there (chdir=) and install its environment'}",
        "    else:",
        "        hdir = os.path.realpath(list(spec.submodule_search_locations)[0])",
        "        fdir = os.path.expanduser(os.environ.get('CLAIMS_FIXTURES_DIR') or os.path.join(os.path.dirname(hdir), 'fixtures'))",
        "        out = dict(source_versions(hdir, fdir), cwd=os.getcwd())",
        "except OSError as exc:",
        "    out = {'error': f'{type(exc).__name__}: {exc}'}",
        "print('CLAIMS-PROBE ' + json.dumps(out))",
    ]) + "\n"


def probe_command(spec: Any) -> list[str] | None:
    """The command that runs `probe_program` (read from stdin) where the worker of execnet
    gateway `spec` will run: its ssh command line (execnet's own, ``ssh_config=`` included) or
    its local ``python=``; None for other kinds (socket, vagrant, via a proxy), which are not
    probed."""
    if spec.via or spec.socket or spec.vagrant_ssh:
        return None
    reader = "import sys; exec(sys.stdin.read())"
    if spec.ssh:
        from execnet.gateway_io import ssh_args

        args = ssh_args(spec)
        return args[:-1] + [f'{spec.python or "python"} -c "{reader}"']
    if spec.popen:
        python = shlex.split(spec.python) if spec.python else [sys.executable]
        return [*python, "-c", reader]
    return None


def host_label(spec: Any) -> str:
    """How a gateway is named in messages: its ssh destination (``ssh=``) or the whole spec."""
    return f"ssh={spec.ssh}" if spec.ssh else str(spec)


@dataclass(frozen=True)
class Probe:
    """What one host answered: its versions, or why it could not be reached."""

    spec: Any
    versions: dict | None = None
    error: str | None = None


def probe(spec: Any, timeout_s: float = PROBE_TIMEOUT_S) -> Probe:
    """Run `probe_program` on the host of gateway `spec` (see `probe_command`); a `Probe` with
    the host's versions, or with the reason it failed (ssh's own message, a missing python or
    folder, no harness there, no answer within `timeout_s` seconds)."""
    command = probe_command(spec)
    if command is None:
        return Probe(spec)
    env = dict(os.environ)
    if spec.popen:
        env.update(spec.env)
    try:
        done = subprocess.run(command, input=probe_program(spec.chdir, spec.env), capture_output=True,
                              text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired:
        return Probe(spec, error=f"no answer within {timeout_s:.0f} s")
    except OSError as exc:
        return Probe(spec, error=f"{command[0]}: {exc}")
    for line in done.stdout.splitlines():
        if line.startswith("CLAIMS-PROBE "):
            answer = json.loads(line[len("CLAIMS-PROBE "):])
            if "error" in answer:
                return Probe(spec, error=answer["error"])
            return Probe(spec, versions=answer)
    said = " ".join(done.stderr.split())[-400:] or f"exit status {done.returncode}, no output"
    return Probe(spec, error=said)


def mismatch(here: dict, there: dict) -> list[str]:
    """What differs between two `source_versions` answers, one phrase each (empty: the same);
    package versions are compared without their local label (`_public`)."""
    out = []
    if here["harness"] != there["harness"]:
        out.append(f"harness {here['harness']} here, {there['harness']} there")
    a, b = here["fixtures"], there["fixtures"]
    for family in sorted(set(a) | set(b)):
        if a.get(family) != b.get(family):
            out.append(f"fixtures/{family} {a.get(family, 'absent')} here, {b.get(family, 'absent')} there")
    a, b = here.get("packages", {}), there.get("packages", {})
    for name in sorted(set(a) | set(b)):
        if _public(a.get(name)) != _public(b.get(name)):
            out.append(f"{name} {a.get(name, 'not reported')} here, {b.get(name, 'not reported')} there")
    return out


def _public(version: str | None) -> str | None:
    """A version without its local label (``2.13.0+cpu`` -> ``2.13.0``): a CUDA build of torch
    on a GPU host and a CPU build on the machine that starts the run are the same release."""
    return version.split("+", 1)[0] if version else version


def _needs_probe(spec: Any) -> bool:
    """A gateway that is not this process's own interpreter in this folder."""
    return not (spec.popen and not spec.chdir and not spec.python)


@dataclass
class _Unreachable:
    """The gateways dropped at start, for the scheduler (how many nodes to wait for) and the
    summary."""

    dropped: list[Probe]
    live: int

    @pytest.hookimpl(wrapper=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        sched = yield
        if sched is not None and hasattr(sched, "numnodes"):
            sched.numnodes = self.live   # xdist counts every --tx; it would wait for the dropped ones
        return sched

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from harness.resources import note

        for p in self.dropped:   # before the report is built: report.json names them too
            note(f"{host_label(p.spec)}: not reached ({p.error}); its claims ran on the other hosts")
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_sep("=", "claims: hosts not reached")
        for p in self.dropped:
            terminalreporter.write_line(
                f"{host_label(p.spec)}: not reached ({p.error}); its claims ran on the other hosts", red=True)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config: pytest.Config, specs: list[Any]) -> None:
    """Before xdist opens its gateways: probe each remote one (`probe`), drop those not reached
    (one error line per host; `pytest.UsageError` when none is left), refuse hosts whose harness
    or fixtures differ from this machine's (`pytest.UsageError` naming the host and both
    versions), and let path arguments reach remote workers (`_pass_paths_from_rootdir`)."""
    _refuse_distload_override(config)
    remote = [s for s in specs if _needs_probe(s)]
    if not remote:
        return
    _pass_paths_from_rootdir(config)
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(remote))) as pool:
        answers = list(pool.map(probe, remote))
    here = local_versions()
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    dropped = [a for a in answers if a.error is not None]
    for a in dropped:
        line = f"claims: {host_label(a.spec)} not reached: {a.error}"
        if terminal is not None:
            terminal.write_line(line, red=True)
        else:
            print(line, file=sys.stderr)
    if len(dropped) == len(specs):
        raise pytest.UsageError("no host could be reached:\n" + "\n".join(
            f"  {host_label(a.spec)}: {a.error}" for a in dropped))
    for a in answers:
        if a.versions is not None and (diff := mismatch(here, a.versions)):
            raise pytest.UsageError(
                f"{host_label(a.spec)} (chdir {a.versions.get('cwd')}) has another version of the harness, "
                f"fixtures or packages than this machine: {'; '.join(diff)}. Put the same commit, with the same "
                "fixtures, on every host (or point chdir= at such a checkout), with the same environment "
                "(install it from the same constraints file, or point python= at one)")
    if dropped:
        failed = {id(a.spec) for a in dropped}
        specs[:] = [s for s in specs if id(s) not in failed]
        config.pluginmanager.register(_Unreachable(dropped, live=len(specs)), "claims-unreachable-hosts")


def _refuse_distload_override(config: pytest.Config) -> None:
    """``-d`` is xdist's shortcut for ``--dist=load`` and silently wins over ``--dist loadgroup``
    (each worker would then load every study's model): a usage error naming both."""
    args = [str(a) for a in config.invocation_params.args]
    if "-d" not in args and "--distload" not in args:
        return
    asked = [a.split("=", 1)[1] for a in args if a.startswith("--dist=")]
    asked += [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--dist"]
    other = [mode for mode in asked if mode != "load"]
    if other:
        raise pytest.UsageError(
            f"-d means --dist=load and overrides --dist {other[-1]}; drop -d (--tx ... --dist {other[-1]} "
            "distributes on its own)")


def _pass_paths_from_rootdir(config: pytest.Config) -> None:
    """Unless rsync was asked for (``--rsyncdir``, ``rsyncdirs``): no copy of pytest into each
    remote ``chdir``, and each existing path argument passed relative to the rootdir (absolute
    where it lies outside), instead of xdist's rsync-relative form, which raises for relative
    paths."""
    if config.getoption("rsyncdir", None) or config.getini("rsyncdirs"):
        return
    dsession = config.pluginmanager.get_plugin("dsession")
    manager = getattr(dsession, "nodemanager", None)
    if manager is None:
        return
    from xdist import workermanage

    manager.roots = []
    original = workermanage.make_reltoroot
    workermanage.make_reltoroot = _relative_to(Path(config.rootpath), Path(config.invocation_params.dir))
    config.add_cleanup(lambda: setattr(workermanage, "make_reltoroot", original))


def _relative_to(rootdir: Path, invocation_dir: Path) -> Callable[[Any, list[str]], list[str]]:
    """xdist's ``make_reltoroot(roots, args)`` replaced: an argument naming an existing path
    (``PATH`` or ``PATH::TEST``) becomes that path relative to `rootdir`."""
    root = rootdir.resolve()

    def convert(roots: Any, args: list[str]) -> list[str]:
        out = []
        for arg in args:
            parts = arg.split("::")
            path = invocation_dir / parts[0]
            try:
                exists = bool(parts[0]) and path.exists()
            except OSError:
                exists = False
            if exists:
                resolved = path.resolve()
                parts[0] = str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(resolved)
            out.append("::".join(parts))
        return out

    return convert
