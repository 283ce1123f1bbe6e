"""Sweep pieces that need no SSH server: the remote command's quoting, and how each probe
outcome and connection error is reported."""

from __future__ import annotations

import shlex
import socket
import subprocess

import paramiko

from preflight.cluster import remote_probe
from preflight.cluster.connect import classify
from preflight.cluster.hosts import Host
from preflight.cluster.ssh_config import Endpoint
from preflight.cluster.sweep import SweepOptions, _interpret, _ProbeRun

ENDPOINT = Endpoint("gpu01", "10.0.0.1", 22, "ml")


class _Conn:
    endpoint = ENDPOINT


def _run(status: int | None, stderr: str, stdout: bytes = b"", timed_out: bool = False) -> _ProbeRun:
    return _ProbeRun(stdout, stderr, status, 0.001, 0.0, timed_out)


def test_remote_command_quotes_every_value():
    hostile = remote_probe.Interpreter(python="/opt/my env/bin/python; rm -rf /", conda="x'; reboot; '")
    command = remote_probe.remote_command(hostile)
    outer = shlex.split(command)
    assert outer[:2] == ["/bin/sh", "-c"] and len(outer) == 3
    inner = shlex.split(outer[2])
    assert "/opt/my env/bin/python; rm -rf /" in inner  # one word, never split or run
    assert "x'; reboot; '" in inner


def test_bootstrap_runs_the_probe_from_stdin_locally():
    command = remote_probe.remote_command(remote_probe.Interpreter(python="/usr/bin/python3"))
    done = subprocess.run(command, shell=True, input=remote_probe.payload(["localhost"]), capture_output=True)
    assert done.returncode == 0, done.stderr
    assert remote_probe.probe_pid(done.stderr.decode()) is not None
    assert b'"schema_version": 1' in done.stdout


def test_python_too_old_is_reported_with_its_version():
    result = _interpret(
        Host("gpu01"), _Conn(), _run(97, "preflight-probe: python-too-old 3.6.9\n"), SweepOptions(), 0.1, 0.1
    )
    assert result.failure is not None and result.failure.check_id == "probe.python_too_old"
    assert "3.6.9" in result.failure.message


def test_probe_crash_shows_its_stderr_tail():
    stderr = "preflight-probe: pid 42\nTraceback (most recent call last):\nMemoryError\n"
    result = _interpret(Host("gpu01"), _Conn(), _run(1, stderr), SweepOptions(), 0.1, 0.1)
    assert result.failure is not None and result.failure.check_id == "probe.crashed"
    assert "MemoryError" in result.failure.message and "pid 42" not in result.failure.message


def test_garbage_output_is_a_crash_not_a_traceback():
    result = _interpret(Host("gpu01"), _Conn(), _run(0, "preflight-probe: pid 7\n", b"{not json"), SweepOptions(), 0, 0)
    assert result.failure is not None and result.failure.check_id == "probe.crashed"


def test_connection_errors_are_told_apart():
    assert classify(socket.gaierror(-2, "Name or service not known"), ENDPOINT, 5).kind == "unresolved"
    assert classify(TimeoutError(), ENDPOINT, 5).kind == "timeout"
    refused = paramiko.ssh_exception.NoValidConnectionsError({("10.0.0.1", 22): ConnectionRefusedError(111, "x")})
    assert classify(refused, ENDPOINT, 5).kind == "refused"
    assert classify(paramiko.AuthenticationException("no"), ENDPOINT, 5).kind == "auth"
    assert classify(paramiko.SSHException("Error reading SSH protocol banner"), ENDPOINT, 5).kind == "banner"


def test_every_probe_module_is_shipped():
    from pathlib import Path

    from preflight.probe import PROBE_MODULES

    folder = Path(__file__).resolve().parents[1] / "preflight" / "probe"
    on_disk = {p.stem for p in folder.glob("*.py")} - {"__main__"}
    assert set(PROBE_MODULES) == on_disk, "add new probe modules to PROBE_MODULES (they travel to the nodes)"
