"""NodeFacts: what the probe collected on one machine, as typed dataclasses with versioned JSON.

The probe (``preflight.probe``) runs on any Python 3.8+ and emits plain JSON; this module is the
judging side's typed view of that JSON. ``load_facts`` turns a decoded document into dataclasses
and rejects anything that does not match, naming the JSON path of the first problem. The JSON
Schema shipped with the package (``facts.schema.json``) is generated from these same classes by
``preflight.facts_schema``, so the two cannot drift apart.

Conventions:
- A field that could not be read is ``None`` and its reason is in the section's ``unavailable``
  map under the field's name (a whole source that failed, such as NVML, has its own key).
- Sizes are bytes, temperatures degrees Celsius, power watts, link speeds Mb/s.
- A ulimit of ``None`` means unlimited.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preflight.errors import InputError
from preflight.typed_json import DecodeError, decode, encode

SCHEMA_VERSION = 1


@dataclass
class ProbeInfo:
    """Which probe ran, where and how long it took."""

    version: str
    python_executable: str
    python_version: str
    collected_at: str
    duration_s: float
    clock_unix: float | None = None


@dataclass
class ContainerHints:
    dockerenv: bool
    kubernetes: bool
    cgroup_runtime: str | None
    hints: list[str] = field(default_factory=list)


@dataclass
class Identity:
    hostname: str
    fqdn: str | None
    addresses: list[str]
    boot_id_sha256: str | None
    machine_id_sha256: str | None
    container: ContainerHints
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass
class MemoryInfo:
    total_bytes: int | None
    available_bytes: int | None
    swap_total_bytes: int | None
    swap_free_bytes: int | None
    cgroup_limit_bytes: int | None


@dataclass
class SharedMemory:
    path: str
    size_bytes: int | None
    free_bytes: int | None
    mode: str | None
    writable: bool | None


@dataclass
class DiskSpace:
    purpose: str
    path: str
    free_bytes: int | None
    total_bytes: int | None


@dataclass
class ResourceLimit:
    """A ulimit; ``None`` is unlimited."""

    soft: int | None
    hard: int | None


@dataclass
class SystemInfo:
    os_name: str | None
    kernel: str | None
    arch: str | None
    cpu_model: str | None
    cpu_logical_cores: int | None
    cpu_physical_cores: int | None
    memory: MemoryInfo
    shm: SharedMemory | None
    disks: list[DiskSpace]
    ulimits: dict[str, ResourceLimit]
    kernel_modules: dict[str, bool]
    unavailable: dict[str, str] = field(default_factory=dict)
    port_range: str | None = None  # /proc/sys/net/ipv4/ip_local_port_range, "32768-60999"


@dataclass
class GpuProcess:
    pid: int
    name: str | None
    used_bytes: int | None


@dataclass
class GpuDevice:
    index: int
    name: str | None
    uuid: str | None
    pci_bus_id: str | None
    memory_total_bytes: int | None
    memory_used_bytes: int | None
    memory_free_bytes: int | None
    compute_capability: str | None
    ecc_enabled: bool | None
    ecc_uncorrected_volatile: int | None
    retired_pages: int | None
    retired_pages_pending: bool | None
    row_remap_pending: bool | None
    row_remap_failed: bool | None
    temperature_c: int | None
    power_limit_w: float | None
    utilization_percent: int | None
    throttle_reasons: list[str] | None
    persistence_mode: bool | None
    mig_enabled: bool | None
    pcie_gen_current: int | None
    pcie_gen_max: int | None
    pcie_width_current: int | None
    pcie_width_max: int | None
    processes: list[GpuProcess] | None
    nvlink_up: int | None
    nvlink_down: int | None
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass
class GpuInfo:
    """GPUs as NVML (or nvidia-smi) sees them; ``source`` is None when nothing answered."""

    source: str | None
    driver_version: str | None
    cuda_driver_version: str | None
    nvml_version: str | None
    devices: list[GpuDevice]
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass
class ExtensionBuild:
    """What a compiled torch extension's installed files say about the torch it was built for.

    ``cxx11_abi`` is read from the C++ symbols its library imports from torch's c10 (None when
    they do not tell); ``wheel_torch``/``wheel_cxx11_abi`` from the release wheel's file name
    (``+cu123torch2.4cxx11abiFALSE``) when it was installed from a URL (``wheel_url``, from the
    dist-info's ``direct_url.json``): the installed metadata itself does not record them.
    """

    library: str | None
    cxx11_abi: bool | None
    wheel_url: str | None = None
    wheel_torch: str | None = None
    wheel_cxx11_abi: bool | None = None


@dataclass
class PythonEnv:
    executable: str
    version: str
    implementation: str
    virtualenv: str | None
    conda_env: str | None
    packages: dict[str, str]
    torch_cuda: str | None
    torch_git_version: str | None
    unavailable: dict[str, str] = field(default_factory=dict)
    nvcc_version: str | None = None
    torch_cxx11_abi: bool | None = None  # from the symbols of torch/lib/libc10.so
    flash_attn_build: ExtensionBuild | None = None


@dataclass
class NetInterface:
    name: str
    up: bool
    addresses: list[str]
    mtu: int | None
    speed_mbps: int | None
    kind: str | None


@dataclass
class IbPort:
    device: str
    port: int
    state: str | None
    phys_state: str | None
    rate: str | None
    link_layer: str | None


@dataclass
class NetworkEnv:
    interfaces: list[NetInterface]
    default_route_interface: str | None
    infiniband: list[IbPort]
    env: dict[str, str]
    unavailable: dict[str, str] = field(default_factory=dict)
    master_addr_addresses: list[str] | None = None
    resolved: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class SweepInfo:
    """What the controller saw of a node it reached over SSH (absent for a local run).

    ``clock_offset_s`` is the node's clock minus the controller's, measured at the middle of the
    probe's round trip; it is uncertain by ``rtt_s / 2``.
    """

    target: str
    slots: int | None
    connect_s: float | None
    probe_s: float | None
    rtt_s: float | None
    clock_offset_s: float | None


@dataclass
class NodeFacts:
    """Everything collected on one node. ``note`` records where a fixture came from."""

    schema_version: int
    probe: ProbeInfo
    identity: Identity
    system: SystemInfo
    gpu: GpuInfo
    python: PythonEnv
    network: NetworkEnv
    note: str | None = None
    sweep: SweepInfo | None = None

    @property
    def node(self) -> str:
        """The node's name as the user wrote it in the hosts file, else its hostname."""
        return self.sweep.target if self.sweep is not None else self.identity.hostname


def parse_facts(data: object, source: str) -> NodeFacts:
    """Typed facts from a decoded JSON document; ``InputError`` naming ``source`` if it is not one."""
    if not isinstance(data, dict) or "schema_version" not in data:
        raise InputError("not a preflight facts file (no schema_version)", source=source)
    version = data["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError(f"schema_version must be an integer, got {version!r}", source=source)
    if version > SCHEMA_VERSION:
        raise InputError(
            f"facts use schema version {version}, this preflight reads up to {SCHEMA_VERSION}; "
            "upgrade preflight to judge them",
            source=source,
        )
    if version < 1:
        raise InputError(f"unknown schema_version {version}", source=source)
    try:
        return decode(NodeFacts, data)
    except DecodeError as exc:
        raise InputError(f"invalid facts at {exc}", source=source) from None


def load_facts(path: str | Path) -> NodeFacts:
    """Read and validate a facts file written by ``--save-facts`` (or by a remote probe)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such file", source=source) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a facts JSON file", source=source) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", source=source) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError.from_json(exc, source) from None
    return parse_facts(data, source)


def facts_to_json(facts: NodeFacts) -> dict[str, Any]:
    return encode(facts)


def save_facts(facts: NodeFacts, path: str | Path) -> None:
    """Write facts atomically (a temporary file, then a rename), so a crash never leaves half a file."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(facts_to_json(facts), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, target)
