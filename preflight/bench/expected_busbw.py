"""What all-reduce bus bandwidth this cluster should reach, decided before the run (the ranks use
it to decide whether to look for a straggler) and stored with the results.

- One node with GPUs: the sourced figure for that GPU system (``compat_matrix/bench.toml``).
- Several nodes: also bounded by the slowest node's network: the sum of the active InfiniBand /
  RoCE ports NCCL would use there (``NCCL_IB_HCA``, else the fastest ports), or else the speed of
  the interface NCCL (or gloo) uses there. A ring
  all-reduce pushes every byte through each node's NICs, so busbw cannot exceed that rate.
- gloo on one node (loopback): no expectation.
"""

from __future__ import annotations

import re

from preflight.bench.results import Expectation
from preflight.facts import NodeFacts
from preflight.net.ifname import gloo_address, nccl_interface, nccl_matches, parse_nccl_ifname

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*Gb/sec")


def compute_ports(facts: NodeFacts) -> list[tuple[str, float]]:
    """(device, bytes/s) of the active InfiniBand/RoCE ports NCCL would use: those
    ``NCCL_IB_HCA`` selects when it is set, else the fastest ones (a node's slower ports are
    usually its storage or management network, which NCCL's topology search passes over)."""
    ports = []
    for port in facts.network.infiniband:
        match = _RATE.match(port.rate or "")
        if (port.state or "").upper().endswith("ACTIVE") and match:
            ports.append((port.device, float(match.group(1)) * 1e9 / 8))
    value = facts.network.env.get("NCCL_IB_HCA")
    if value:
        spec = parse_nccl_ifname(value)
        prefix = ("^" if spec.exclude else "") + ("=" if spec.exact else "")
        chosen = set(nccl_matches(prefix + ",".join(n.split(":")[0] for n in spec.names), [d for d, _ in ports]))
        return [p for p in ports if p[0] in chosen]
    fastest = max((rate for _, rate in ports), default=0.0)
    return [p for p in ports if p[1] == fastest]


def ib_rate_bps(facts: NodeFacts) -> float:
    """Bytes/s of the ports NCCL would use together (``rate`` like "400 Gb/sec (4X NDR)")."""
    return sum(rate for _, rate in compute_ports(facts))


def socket_interface(facts: NodeFacts, backend: str) -> tuple[str, int | None] | None:
    """(interface, speed Mb/s) the backend's sockets use on the node."""
    env = facts.network.env
    if backend == "nccl":
        chosen = nccl_interface(facts.network.interfaces, env)
        name = chosen[0] if chosen else None
    else:
        address = gloo_address(facts.network.interfaces, env, facts.identity.addresses)
        name = next((i.name for i in facts.network.interfaces if address and address in i.addresses), None)
    if name is None:
        return None
    iface = next((i for i in facts.network.interfaces if i.name == name), None)
    return (name, iface.speed_mbps if iface else None)


def node_network(facts: NodeFacts, backend: str) -> tuple[float, str] | None:
    """(bytes/s, description) of what the node can send to the other nodes."""
    if backend == "nccl":
        ib = ib_rate_bps(facts)
        if ib:
            ports = len(compute_ports(facts))
            return ib, f"{ports} active InfiniBand/RoCE port(s) on {facts.node}, {ib * 8 / 1e9:.0f} Gb/s together"
    chosen = socket_interface(facts, backend)
    if chosen is None or not chosen[1] or chosen[1] <= 0:
        return None
    name, mbps = chosen
    return mbps * 1e6 / 8, f"{name} on {facts.node} at {mbps} Mb/s (the interface {backend} uses there)"


def expected_busbw(nodes: list[NodeFacts], backend: str, largest_bytes: int) -> tuple[Expectation | None, str]:
    """The expectation for the whole-cluster all-reduce at ``largest_bytes`` (or None), and why
    there is none when there is none."""
    candidates: list[Expectation] = []
    missing = "gloo on one node: no sourced expectation" if backend != "nccl" else ""
    if backend == "nccl" and nodes:
        from preflight.bench.expectations import load_expectations

        first = nodes[0]
        gpus = first.gpu.devices
        if gpus and gpus[0].name:
            nvlink = any((d.nvlink_up or 0) > 0 for d in gpus)
            table = load_expectations(None)
            sourced = table.allreduce_busbw(gpus[0].name, len(gpus), nvlink, largest_bytes)
            if sourced is not None:
                candidates.append(Expectation(sourced.value, sourced.source, sourced.note))
            else:
                missing = table.why_no_allreduce(gpus[0].name, len(gpus), nvlink, largest_bytes)
    if len(nodes) > 1:
        links = [n for n in (node_network(f, backend) for f in nodes) if n is not None]
        if len(links) == len(nodes):
            value, description = min(links)
            candidates.append(Expectation(value, f"the slowest node's network: {description}",
                                          "a ring all-reduce sends every byte through each node's network"))
    if candidates:
        return min(candidates, key=lambda e: e.value), ""
    if len(nodes) > 1 and not missing:
        missing = "no link speed known for every node's network interface"
    return None, missing
