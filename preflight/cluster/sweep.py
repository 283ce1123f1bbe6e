"""The parallel sweep: connect to every node, run the probe there, and end every host with a result.

Each host gets one connection (kept open for later steps in the same run) and one probe run
with a hard timeout; a probe that overruns is killed on the node with its process group. A host
that fails at any stage yields a ``NodeFailure`` with the stage, the reason and the fix; one bad
host never stops the others, and Ctrl-C (``cancel``) ends every probe and connection cleanly.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

import paramiko

from preflight.cluster import remote_probe
from preflight.cluster.connect import ConnectError, Connection, ConnectOptions, connect
from preflight.cluster.hosts import Host
from preflight.errors import InputError
from preflight.facts import NodeFacts, SweepInfo, parse_facts
from preflight.net.address import is_address

READ_SLICE_S = 0.2
KILL_WAIT_S = 5.0


@dataclass(frozen=True)
class SweepOptions:
    connect: ConnectOptions = field(default_factory=ConnectOptions)
    interpreter: remote_probe.Interpreter = field(default_factory=remote_probe.Interpreter)
    command_timeout: float = 60.0
    parallel: int = 64
    keep_connections: bool = False  # later steps (network tests, benchmarks) reuse them
    resolve_also: tuple[str, ...] = ()  # more names every node looks up (the rendezvous address)


@dataclass(frozen=True)
class NodeFailure:
    """Why a node has no facts; ``check_id`` is ``ssh.*`` (reaching it) or ``probe.*`` (running there)."""

    check_id: str
    message: str
    remediation: str


@dataclass
class NodeResult:
    host: Host
    facts: NodeFacts | None = None
    failure: NodeFailure | None = None
    connection: Connection | None = None


class _Cancelled(Exception):
    """The user pressed Ctrl-C: stop this host's probe and connection."""


@dataclass
class _ProbeRun:
    stdout: bytes
    stderr: str
    exit_status: int | None
    rtt_s: float
    finished_at: float
    timed_out: bool


def _drain(chan: paramiko.Channel, out: bytearray, err: bytearray) -> None:
    while chan.recv_stderr_ready():
        err.extend(chan.recv_stderr(65536))
    while chan.recv_ready():
        data = chan.recv(65536)
        if not data:
            break
        out.extend(data)


def _kill_remote(conn: Connection, stderr: str) -> None:
    pid = remote_probe.probe_pid(stderr)
    transport = conn.client.get_transport()
    if pid is None or transport is None or not transport.is_active():
        return
    try:
        chan = transport.open_session(timeout=KILL_WAIT_S)
        chan.exec_command(remote_probe.kill_command(pid))
        chan.status_event.wait(KILL_WAIT_S)
        chan.close()
    except (paramiko.SSHException, OSError):
        return


@dataclass(frozen=True)
class _Shipment:
    """What every node receives: built once per sweep, not once per host."""

    command: str
    stdin: bytes


def _run_probe(conn: Connection, options: SweepOptions, shipment: _Shipment, cancel: threading.Event) -> _ProbeRun:
    transport = conn.client.get_transport()
    if transport is None or not transport.is_active():
        raise paramiko.SSHException("connection closed before the probe ran")
    opened = time.time()
    chan = transport.open_session(timeout=options.connect.connect_timeout)
    rtt = time.time() - opened  # one request/confirm exchange: a round trip
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + options.command_timeout
    try:
        chan.exec_command(shipment.command)
        # the remote side may exit before reading its input (a failed --env, no Python):
        # its exit status and stderr, read below, say why
        with contextlib.suppress(OSError, paramiko.SSHException):
            chan.sendall(shipment.stdin)
            chan.shutdown_write()
        while not chan.status_event.wait(READ_SLICE_S):
            _drain(chan, out, err)
            if cancel.is_set() or time.monotonic() > deadline:
                _drain(chan, out, err)
                _kill_remote(conn, err.decode("utf-8", "replace"))
                if cancel.is_set():
                    raise _Cancelled()
                return _ProbeRun(bytes(out), err.decode("utf-8", "replace"), None, rtt, time.time(), True)
        finished = time.time()
        eof_deadline = time.monotonic() + KILL_WAIT_S  # data still in flight after the exit status
        while time.monotonic() < eof_deadline:
            before = len(out) + len(err)
            _drain(chan, out, err)
            if chan.eof_received and len(out) + len(err) == before:
                break
            if len(out) + len(err) == before:
                time.sleep(0.005)
        return _ProbeRun(bytes(out), err.decode("utf-8", "replace"), chan.recv_exit_status(), rtt, finished, False)
    finally:
        chan.close()


def _interpret(host: Host, conn: Connection, run: _ProbeRun, options: SweepOptions, connect_s: float, probe_s: float) -> NodeResult:
    interp = options.interpreter
    tail = remote_probe.stderr_tail(run.stderr)
    where = conn.endpoint.display
    result = NodeResult(host, connection=conn)
    if run.timed_out:
        result.failure = NodeFailure(
            "probe.timeout",
            f"{where}: the probe did not finish within {options.command_timeout:g} s and was killed"
            + (f" (last output: {tail})" if tail else ""),
            "look for a hung nvidia-smi or NVML call on the node (`timeout 10 nvidia-smi`), "
            "or raise --command-timeout",
        )
        return result
    if run.exit_status == remote_probe.EXIT_TOO_OLD:
        version = remote_probe.too_old_version(run.stderr) or "?"
        result.failure = NodeFailure(
            "probe.python_too_old",
            f"{where}: {interp.python} is Python {version}; the probe needs 3.8 or newer",
            "point --python at the training environment's interpreter (e.g. /opt/venv/bin/python)",
        )
        return result
    started = remote_probe.probe_pid(run.stderr) is not None
    if not started:
        missing = run.exit_status == remote_probe.EXIT_NOT_FOUND or "not found" in run.stderr
        if missing and not (interp.env or interp.conda):
            result.failure = NodeFailure(
                "probe.python_missing",
                f"{where}: {interp.python} not found on the node ({tail or 'exit 127'})",
                "give the training Python: --python /path/to/venv/bin/python, or --env / --conda to activate it",
            )
        else:
            result.failure = NodeFailure(
                "probe.env_failed",
                f"{where}: the environment set-up or interpreter failed before the probe started "
                f"(exit {run.exit_status}): {tail or 'no output'}",
                "run the --env / --conda activation by hand on the node in a non-interactive shell "
                "(/bin/sh: use `.` rather than `source`)",
            )
        return result
    if run.exit_status != 0:
        result.failure = NodeFailure(
            "probe.crashed",
            f"{where}: the probe exited {run.exit_status}: {tail or 'no output'}",
            "report this with the message; run `preflight node` on the node to see it locally",
        )
        return result
    try:
        data = json.loads(run.stdout.decode("utf-8"))
        facts = parse_facts(data, f"probe output from {host.name}")
    except (ValueError, InputError) as exc:
        result.failure = NodeFailure(
            "probe.crashed", f"{where}: the probe's output is not valid facts: {exc}", "report this as a preflight bug"
        )
        return result
    offset = None
    if facts.probe.clock_unix is not None:
        offset = facts.probe.clock_unix - (run.finished_at - run.rtt_s / 2)
    result.facts = replace(
        facts,
        sweep=SweepInfo(
            target=host.target,
            slots=host.slots,
            connect_s=round(connect_s, 4),
            probe_s=round(probe_s, 4),
            rtt_s=round(run.rtt_s, 6),
            clock_offset_s=None if offset is None else round(offset, 4),
        ),
    )
    return result


def sweep_host(
    host: Host,
    config: paramiko.SSHConfig,
    options: SweepOptions,
    shipment: _Shipment,
    cancel: threading.Event,
) -> NodeResult:
    """Connect and probe one host; always returns a result, never raises (except on cancel)."""
    start = time.monotonic()
    try:
        conn = connect(host, config, options.connect)
    except ConnectError as exc:
        f = exc.failure
        return NodeResult(host, failure=NodeFailure(f"ssh.{f.kind}", f.message, f.remediation))
    connect_s = time.monotonic() - start
    try:
        run = _run_probe(conn, options, shipment, cancel)
    except _Cancelled:
        conn.close()
        raise
    except (paramiko.SSHException, OSError, EOFError) as exc:
        conn.close()
        return NodeResult(
            host,
            failure=NodeFailure(
                "ssh.channel", f"{conn.endpoint.display}: the SSH session failed: {exc}", "retry; check sshd's MaxSessions"
            ),
        )
    result = _interpret(host, conn, run, options, connect_s, time.monotonic() - start - connect_s)
    if not options.keep_connections:
        # an idle paramiko transport still polls its socket in a thread: close as soon as done
        conn.close()
        result.connection = None
    return result


def sweep(
    hosts: list[Host],
    config: paramiko.SSHConfig,
    options: SweepOptions,
    on_done: Callable[[NodeResult], None] = lambda r: None,
) -> list[NodeResult]:
    """Sweep every host in parallel; results in hosts-file order. With ``keep_connections``
    the connections stay open for later steps: close them with ``close_all``."""
    wanted = [h.name for h in hosts] + list(options.resolve_also)
    names = sorted({n for n in wanted if not is_address(n)})  # an address needs no lookup
    shipment = _Shipment(remote_probe.remote_command(options.interpreter), remote_probe.payload(names))
    cancel = threading.Event()
    results: dict[int, NodeResult] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(options.parallel, len(hosts))), thread_name_prefix="sweep")
    futures: dict[Future, int] = {
        pool.submit(sweep_host, host, config, options, shipment, cancel): i for i, host in enumerate(hosts)
    }
    try:
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                results[futures[future]] = result
                on_done(result)
    except BaseException:
        cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        close_all(list(results.values()))
        raise
    pool.shutdown(wait=True)
    return [results[i] for i in range(len(hosts))]


def close_all(results: list[NodeResult]) -> None:
    for result in results:
        if result.connection is not None:
            result.connection.close()
            result.connection = None
