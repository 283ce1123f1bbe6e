"""Test the network paths torch.distributed and NCCL will use, over the sweep's SSH connections.

Steps, each with its own timeout (the result says which one hung):
1. ``bind``: on the master, is the rendezvous port free (bound as torch's TCPStore binds it)?
2. ``listen``: a listener on the master's rendezvous port, and one per node on an ephemeral port
   (port 0, as NCCL's sockets take them) on the address NCCL would advertise there.
3. ``connect``: every other node connects to MASTER_ADDR:port (resolving the name itself), and
   each node to the next one's NCCL address in a ring (every pair with ``all_pairs``).
4. ``close``: every listener is stopped (its stdin closed), also on failure or Ctrl-C.
The results are facts (``NetworkTests``); ``checks/network.py`` judges them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import paramiko

from preflight.cluster.connect import Connection
from preflight.facts import NodeFacts
from preflight.net.agent import agent_command
from preflight.net.ifname import gloo_address, nccl_interface
from preflight.net.results import NetworkTests, PathResult


@dataclass(frozen=True)
class PathOptions:
    python: str = "python3"
    master_addr: str | None = None
    master_port: int = 29500
    all_pairs: bool = False
    step_timeout: float = 10.0
    connect_timeout: float = 3.0


class _StepTimeout(Exception):
    """A step did not finish within its timeout."""


def _exec(conn: Connection, args: dict, timeout: float, python: str) -> paramiko.Channel:
    transport = conn.client.get_transport()
    if transport is None or not transport.is_active():
        raise paramiko.SSHException("connection closed")
    chan = transport.open_session(timeout=timeout)
    chan.settimeout(timeout)
    chan.exec_command(agent_command(python, json.dumps(args)))
    return chan


def _read_line(chan: paramiko.Channel, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        if time.monotonic() > deadline:
            raise _StepTimeout()
        try:
            chunk = chan.recv(4096)
        except TimeoutError:
            raise _StepTimeout() from None
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace").split("\n", 1)[0]


def _run(conn: Connection, args: dict, timeout: float, python: str) -> list[dict]:
    chan = _exec(conn, args, timeout, python)
    try:
        chan.shutdown_write()
        if not chan.status_event.wait(timeout):
            raise _StepTimeout()
        out = b""
        while chan.recv_ready() or not chan.eof_received:
            chunk = chan.recv(65536)
            if not chunk:
                break
            out += chunk
        return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    finally:
        chan.close()


def _node_of_master(nodes: dict[str, NodeFacts], connections: dict[str, Connection], master_addr: str) -> str:
    for name, facts in nodes.items():
        if master_addr in (connections[name].endpoint.alias, connections[name].endpoint.hostname):
            return name
        if master_addr in (name, facts.identity.hostname, facts.identity.fqdn) or master_addr in facts.identity.addresses:
            return name
        if any(master_addr in i.addresses for i in facts.network.interfaces):
            return name
    return next(iter(nodes))


def run_network_tests(
    connections: dict[str, Connection],
    nodes: dict[str, NodeFacts],
    options: PathOptions,
    on_step: Callable[[str], None] = lambda step: None,
) -> NetworkTests:
    start = time.monotonic()
    order = list(nodes)
    env_master = next((f.network.env.get("MASTER_ADDR") for f in nodes.values() if f.network.env.get("MASTER_ADDR")), None)
    # the first node's name as the hosts file writes it (not the user@host:port entry)
    master_addr = options.master_addr or env_master or connections[order[0]].endpoint.alias
    master = _node_of_master(nodes, connections, master_addr)
    tests = NetworkTests(master, master_addr, options.master_port)
    for name, facts in nodes.items():
        chosen = nccl_interface(facts.network.interfaces, facts.network.env)
        if chosen:
            tests.advertised[name] = [chosen[0], chosen[1]]
        gloo = gloo_address(facts.network.interfaces, facts.network.env, facts.identity.addresses)
        if gloo:
            tests.gloo[name] = gloo
    listeners: dict[str, paramiko.Channel] = {}
    try:
        on_step("bind")
        try:
            (free,) = _run(connections[master], {"mode": "bind", "address": "0.0.0.0", "port": options.master_port},
                           options.step_timeout, options.python)
            tests.port_free = bool(free["free"])
            tests.port_message = free.get("message")
        except _StepTimeout:
            tests.hung.append(f"bind on {master}")
        on_step("listen")
        wanted = {}
        if tests.port_free:
            # on MASTER_ADDR as the master resolves it: a master whose own name resolves to
            # 127.0.1.1 listens on loopback, and the other nodes' connects show it
            wanted[(master, "rendezvous")] = {"mode": "listen", "address": master_addr, "port": options.master_port,
                                             "seconds": options.step_timeout * 4}
        for name, (_, address) in tests.advertised.items():
            wanted[(name, "nccl")] = {"mode": "listen", "address": address, "port": 0, "seconds": options.step_timeout * 4}
        ports: dict[tuple[str, str], int] = {}
        for (name, purpose), args in wanted.items():
            try:
                chan = _exec(connections[name], args, options.step_timeout, options.python)
                listeners[f"{name}/{purpose}"] = chan
                line = _read_line(chan, options.step_timeout)
                if line.startswith("LISTENING"):
                    ports[(name, purpose)] = int(line.split()[2])
            except _StepTimeout:
                tests.hung.append(f"listen on {name}")
        on_step("connect")
        plan: dict[str, list[tuple[str, str, str, int]]] = {n: [] for n in order}
        if (master, "rendezvous") in ports:
            for name in order:
                if name != master:
                    plan[name].append(("rendezvous", master, master_addr, options.master_port))
        ring = [n for n in order if (n, "nccl") in ports]
        pairs = (
            [(a, b) for a in ring for b in ring if a != b]
            if options.all_pairs
            else [(ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring))] if len(ring) > 1 else []
        )
        for a, b in pairs:
            plan[a].append(("nccl", b, tests.advertised[b][1], ports[(b, "nccl")]))

        def probe(name: str) -> list[PathResult]:
            targets = plan[name]
            if not targets:
                return []
            timeout = options.connect_timeout * len(targets) + options.step_timeout
            try:
                rows = _run(connections[name], {"mode": "connect", "targets": [[t[2], t[3]] for t in targets],
                                                "timeout": options.connect_timeout}, timeout, options.python)
            except _StepTimeout:
                tests.hung.append(f"connect from {name}")
                return [PathResult(p, name, t, a, port, "not-tested", None, "the connect step hung")
                        for p, t, a, port in targets]
            return [PathResult(p, name, t, a, port, row["status"], row.get("seconds"), row.get("message"))
                    for (p, t, a, port), row in zip(targets, rows)]

        with ThreadPoolExecutor(max_workers=max(1, min(32, len(order)))) as pool:
            for results in pool.map(probe, order):
                tests.paths.extend(results)
        tests.port_ranges = {name: f.system.port_range or "" for name, f in nodes.items()}
    finally:
        on_step("close")
        for chan in listeners.values():
            try:
                chan.shutdown_write()  # the agent exits when its stdin closes
            except (OSError, paramiko.SSHException):
                tests.hung.append("close")
            chan.close()
        tests.seconds = round(time.monotonic() - start, 3)
    return tests
