"""What the network path tests found: facts, kept apart from the SSH code that gathers them so
that judging them (``checks/network.py``) never imports paramiko."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PathResult:
    purpose: str  # "rendezvous" or "nccl"
    source: str
    target: str
    address: str
    port: int
    status: str  # ok, refused, timeout, unreachable, error, not-tested
    seconds: float | None = None
    message: str | None = None


@dataclass
class NetworkTests:
    master: str
    master_addr: str
    master_port: int
    port_free: bool | None = None
    port_message: str | None = None
    advertised: dict[str, list[str]] = field(default_factory=dict)  # node -> [interface, address] (NCCL)
    gloo: dict[str, str] = field(default_factory=dict)  # node -> the address gloo would use
    port_ranges: dict[str, str] = field(default_factory=dict)  # node -> ip_local_port_range
    paths: list[PathResult] = field(default_factory=list)
    hung: list[str] = field(default_factory=list)  # "step on node"
    seconds: float = 0.0
