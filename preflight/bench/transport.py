"""How the controller starts a node's launcher and hears from it: a local process (``preflight
bench``) or an SSH channel on the sweep's connection (``preflight cluster --bench``).

Both run the same command line (the node's training Python, after its activation command), send
the same one-line payload on stdin and keep stdin open: closing it tells the launcher to kill its
ranks and exit. ``kill`` is the hard stop: the launcher's whole process group, by pid.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shlex
import signal
import subprocess
import threading
from importlib import resources
from typing import Protocol

from preflight.cluster.remote_probe import Interpreter, kill_command

_PID = re.compile(r"^preflight-bench: pid (\d+)$", re.M)
STDERR_KEEP = 4000


def remote_source(name: str) -> str:
    return (resources.files("preflight.bench.remote") / f"{name}.py").read_text(encoding="utf-8")


def launcher_script(interpreter: Interpreter) -> str:
    """``<activation> && exec <python> -c <launcher> preflight-bench-launcher``; every value we
    place in it is quoted."""
    run = (f"exec {shlex.quote(interpreter.python)} -c {shlex.quote(remote_source('launcher'))} "
           "preflight-bench-launcher")
    setup = interpreter.setup()
    return f"{setup} && {run}" if setup else run


def launcher_command(interpreter: Interpreter) -> str:
    """The launcher script as one ``/bin/sh -c`` command line for an SSH exec."""
    return f"/bin/sh -c {shlex.quote(launcher_script(interpreter))}"


class Launch(Protocol):
    node: str

    def start(self, payload: bytes, events: queue.Queue) -> None: ...
    def stderr_text(self) -> str: ...
    def kill(self) -> None: ...
    def close(self, wait_s: float) -> None: ...


def _split_lines(node: str, events: queue.Queue, buffer: bytearray, data: bytes) -> None:
    buffer.extend(data)
    while b"\n" in buffer:
        line, _, rest = bytes(buffer).partition(b"\n")
        buffer[:] = rest
        events.put((node, line.decode("utf-8", "replace")))


class LocalLaunch:
    """The launcher as a child process of preflight, in its own session."""

    def __init__(self, node: str, interpreter: Interpreter, prefix: tuple[str, ...] = ()) -> None:
        self.node = node
        self.interpreter = interpreter
        self.prefix = prefix  # e.g. ("ip", "netns", "exec", NS): run it inside a network namespace
        self.proc: subprocess.Popen | None = None
        self._stderr = bytearray()

    def start(self, payload: bytes, events: queue.Queue) -> None:
        self.proc = subprocess.Popen(
            [*self.prefix, "/bin/sh", "-c", launcher_script(self.interpreter)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(payload)
        self.proc.stdin.flush()

        def read_out() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            buffer = bytearray()
            for chunk in iter(lambda: self.proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
                _split_lines(self.node, events, buffer, chunk)
            events.put((self.node, None))

        def read_err() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for chunk in iter(lambda: self.proc.stderr.read1(65536), b""):  # type: ignore[union-attr]
                self._stderr.extend(chunk)
                del self._stderr[:-STDERR_KEEP]

        threading.Thread(target=read_out, daemon=True).start()
        threading.Thread(target=read_err, daemon=True).start()

    def stderr_text(self) -> str:
        return self._stderr.decode("utf-8", "replace")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # gone already
                os.killpg(self.proc.pid, signal.SIGKILL)

    def close(self, wait_s: float) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):  # the launcher already exited
            if self.proc.stdin:
                self.proc.stdin.close()
        try:
            self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait(5)


class SshLaunch:
    """The launcher on a node, over the connection the sweep opened."""

    def __init__(self, node: str, connection, interpreter: Interpreter) -> None:  # noqa: ANN001 - Connection
        self.node = node
        self.connection = connection
        self.interpreter = interpreter
        self.chan = None
        self._stderr = bytearray()

    def start(self, payload: bytes, events: queue.Queue) -> None:
        transport = self.connection.client.get_transport()
        if transport is None or not transport.is_active():
            raise OSError("the SSH connection is closed")
        chan = transport.open_session(timeout=10)
        chan.exec_command(launcher_command(self.interpreter))
        chan.sendall(payload)
        self.chan = chan

        def read() -> None:
            buffer = bytearray()
            while True:
                if chan.recv_stderr_ready():
                    self._stderr.extend(chan.recv_stderr(65536))
                    del self._stderr[:-STDERR_KEEP]
                    continue
                try:
                    chan.settimeout(0.2)
                    data = chan.recv(65536)
                except TimeoutError:
                    if chan.closed or (chan.exit_status_ready() and not chan.recv_ready()):
                        break
                    continue
                except OSError:
                    break
                if not data:
                    break
                _split_lines(self.node, events, buffer, data)
            while chan.recv_stderr_ready():
                self._stderr.extend(chan.recv_stderr(65536))
            events.put((self.node, None))

        threading.Thread(target=read, daemon=True).start()

    def stderr_text(self) -> str:
        return self._stderr.decode("utf-8", "replace")

    def _pid(self) -> int | None:
        match = _PID.search(self.stderr_text())
        return int(match.group(1)) if match else None

    def kill(self) -> None:
        pid = self._pid()
        if pid is None:
            return
        with contextlib.suppress(Exception):  # best effort: closing the launcher's channel also stops it
            transport = self.connection.client.get_transport()
            if transport is None or not transport.is_active():
                return
            chan = transport.open_session(timeout=10)
            chan.settimeout(10)
            chan.exec_command(f"/bin/sh -c {shlex.quote(kill_command(pid))}")
            chan.status_event.wait(10)
            chan.close()

    def close(self, wait_s: float) -> None:
        chan = self.chan
        if chan is None:
            return
        try:
            with contextlib.suppress(Exception):  # a dead connection: nothing left to close
                chan.shutdown_write()  # the launcher kills its ranks when stdin closes
                if not chan.status_event.wait(wait_s):
                    self.kill()
                    chan.status_event.wait(5)
        finally:
            chan.close()

