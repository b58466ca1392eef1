"""Claims across hosts, for real: an OpenSSH server on a loopback port, two ssh gateways into it.

The test starts Debian's ``sshd`` (package ``openssh-server``; `.ci/run` installs it) on a free
port of 127.0.0.1 with a host key and a client key made for the test, its own ``sshd_config`` and
``ssh_config`` (host aliases ``claims-a``, ``claims-b``; ``claims-dead`` is a port nothing
listens on), and stops it afterwards. Through it, ``pytest claims/planted --tx ssh=... --tx
ssh=... --dist loadgroup`` must write the serial run's report; a host that cannot be reached is
named and the other runs every claim; a host with another harness or fixtures is refused at start.
Skipped, with the reason, where sshd or the ssh client is missing (``CLAIMS_REQUIRE_SSHD=1``, as
`.ci/run` sets where it installed the server, turns the skip into a failure).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.plugin.hosts import mismatch, source_versions

REPO = Path(__file__).resolve().parents[3]
STUDY = "claims/planted"
# what a worker reached by ssh would not inherit from this process's environment
FORWARDED = ("CLAIMS_CACHE_DIR", "CLAIMS_FIXTURES_DIR", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def _missing(reason: str) -> None:
    if os.environ.get("CLAIMS_REQUIRE_SSHD") == "1":
        pytest.fail(f"CLAIMS_REQUIRE_SSHD=1 but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A running sshd on a free loopback port that accepts the test's key; yields the path of
    an ``ssh_config`` naming the hosts ``claims-a``, ``claims-b`` (it) and ``claims-dead``."""
    server = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/bin/sshd") if os.path.exists(p)), None)
    if server is None:
        _missing("no sshd: install Debian's openssh-server (`apt-get install openssh-server`; .ci/run does)")
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            _missing(f"no {tool}: install Debian's openssh-client")
    d = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # sshd's privilege-separation folder
    port, dead = _free_port(), _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nAuthorizedKeysFile {d / 'client_key.pub'}\n"
        f"PidFile {d / 'sshd.pid'}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nLogLevel VERBOSE\n")
    user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    common = (f"  HostName 127.0.0.1\n  User {user}\n  IdentityFile {d / 'client_key'}\n  IdentitiesOnly yes\n"
              "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  BatchMode yes\n"
              "  ConnectTimeout 10\n")
    (d / "ssh_config").write_text(f"Host claims-a claims-b\n  Port {port}\n{common}Host claims-dead\n  Port {dead}\n{common}")
    started = subprocess.run([server, "-f", str(d / "sshd_config"), "-E", str(d / "sshd.log")],
                             capture_output=True, text=True)
    if started.returncode != 0:
        _missing(f"sshd did not start: {started.stderr.strip() or (d / 'sshd.log').read_text()[-500:]}")
    try:
        deadline = time.monotonic() + 15
        while not _listening(port):
            if time.monotonic() > deadline:
                pytest.fail(f"sshd is not listening on 127.0.0.1:{port} after 15 s: {(d / 'sshd.log').read_text()[-800:]}")
            time.sleep(0.05)
        yield d / "ssh_config"
    finally:
        pidfile = d / "sshd.pid"
        if pidfile.exists():
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGTERM)   # the listener; each login's own sshd ends with its session
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)


def _tx(config: Path, host: str, chdir: Path = REPO) -> str:
    env = "".join(f"//env:{k}={os.environ[k]}" for k in FORWARDED if k in os.environ)
    return f"ssh={host}//ssh_config={config}//python={sys.executable}//chdir={chdir}{env}"


def _pytest(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", STUDY, "-p", "no:cacheprovider", "-p", "no:randomly",
                           "-q", "--claims-threads", "1", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _comparable(report: dict) -> dict:
    """A report without what differs between any two runs: timings, memory, the command line."""
    report = json.loads(json.dumps(report))
    for key in ("command", "started", "duration_s"):
        report["run"].pop(key)
    for claim in report["claims"]:
        claim.pop("duration_s")
        claim.pop("memory", None)
    return report


def test_two_ssh_hosts_write_the_serial_runs_report_and_an_unreachable_host_is_named(sshd, tmp_path):
    serial = _pytest(f"--claims-report={tmp_path / 'serial'}")
    hosts = _pytest(f"--claims-report={tmp_path / 'hosts'}", "--tx", _tx(sshd, "claims-a"),
                    "--tx", _tx(sshd, "claims-b"), "--dist", "loadgroup", "-vv")
    assert hosts.returncode == serial.returncode, hosts.stdout[-3000:] + hosts.stderr[-2000:]
    logins = (sshd.parent / "sshd.log").read_text().count("Accepted publickey")
    assert logins >= 4, logins   # each host: the plugin's probe, then xdist's worker
    assert "scheduling tests via StudyGroups" in hosts.stdout   # the plugin's loadgroup
    ran_on = {line.split()[0] for line in hosts.stdout.splitlines()
              if line.startswith("[gw") and ("PASSED" in line or "XFAIL" in line or "FAILED" in line)}
    assert len(ran_on) == 1, ran_on   # one study: one worker runs it and loads its model once
    a = json.loads((tmp_path / "serial" / "report.json").read_text())
    b = json.loads((tmp_path / "hosts" / "report.json").read_text())
    assert len(a["claims"]) == 7
    assert _comparable(a) == _comparable(b)
    assert not list((tmp_path / "hosts").glob("*.tmp*"))
    assert not (REPO / "pytest").exists() and not (REPO / "_pytest").exists()   # xdist's rsync of pytest, turned off

    # claims-dead: a port nothing listens on; one error naming it, claims-a runs every claim
    subset = "slope_near_zero or null_direction"
    degraded = _pytest(f"--claims-report={tmp_path / 'degraded'}", "--tx", _tx(sshd, "claims-a"),
                       "--tx", _tx(sshd, "claims-dead"), "--dist", "loadgroup", "-k", subset)
    out = degraded.stdout + degraded.stderr
    assert degraded.returncode == 1, out[-3000:]
    assert out.count("ssh=claims-dead not reached") == 1, out[-3000:]
    assert "Connection refused" in out
    assert "ssh=claims-dead: not reached" in out and "its claims ran on the other hosts" in out
    degraded_report = json.loads((tmp_path / "degraded" / "report.json").read_text())
    assert [n for n in degraded_report["run"]["notes"] if n.startswith("ssh=claims-dead: not reached (")], \
        degraded_report["run"]["notes"]
    ran = _comparable(degraded_report)["claims"]
    assert len(ran) == 2
    assert ran == [c for c in _comparable(a)["claims"] if c["nodeid"] in {r["nodeid"] for r in ran}]


def test_a_host_with_another_harness_or_fixtures_is_refused_at_start(sshd, tmp_path):
    copy = tmp_path / "repo"
    for part in ("harness", "fixtures"):
        shutil.copytree(REPO / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "fixtures" / "planted" / "recipe.py", "a") as fh:
        fh.write("# edited on this host\n")
    with open(copy / "harness" / "__init__.py", "a") as fh:
        fh.write("# edited on this host\n")
    here = source_versions(str(REPO / "harness"), str(REPO / "fixtures"))
    there = source_versions(str(copy / "harness"), str(copy / "fixtures"))
    started = time.monotonic()
    run = _pytest(f"--claims-report={tmp_path / 'r'}", "--tx", _tx(sshd, "claims-a"),
                  "--tx", _tx(sshd, "claims-b", chdir=copy), "--dist", "loadgroup")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout[-2000:] + run.stderr[-2000:]
    assert "ssh=claims-b" in run.stderr and "ssh=claims-a" not in run.stderr.split("ssh=claims-b")[0]
    assert f"harness {here['harness']} here, {there['harness']} there" in run.stderr
    planted = f"fixtures/planted {here['fixtures']['planted']} here, {there['fixtures']['planted']} there"
    assert planted in run.stderr
    assert "fixtures/tracer" not in run.stderr   # only what differs
    assert not (tmp_path / "r" / "report.json").exists()
    assert time.monotonic() - started < 60   # refused before any worker loads a model


def test_d_with_dist_loadgroup_is_refused_since_d_means_dist_load(tmp_path):
    run = _pytest(f"--claims-report={tmp_path / 'r'}", "-n", "2", "-d", "--dist", "loadgroup")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout[-2000:] + run.stderr[-2000:]
    assert "-d means --dist=load and overrides --dist loadgroup; drop -d" in run.stderr


def test_hosts_whose_numeric_packages_differ_are_told_apart_but_not_by_a_local_build_label():
    here = source_versions(str(REPO / "harness"), str(REPO / "fixtures"))
    import torch
    import transformers

    assert here["packages"]["torch"] == torch.__version__
    assert here["packages"]["transformers"] == transformers.__version__
    there = json.loads(json.dumps(here))
    there["packages"]["torch"] = here["packages"]["torch"].split("+")[0] + "+cu130"   # a GPU build of the same release
    assert mismatch(here, there) == []
    there["packages"]["transformers"] = "4.57.1"
    there["packages"].pop("scipy")
    assert mismatch(here, there) == [
        f"scipy {here['packages']['scipy']} here, not reported there",
        f"transformers {here['packages']['transformers']} here, 4.57.1 there"]
