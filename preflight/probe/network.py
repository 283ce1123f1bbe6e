"""Network environment: interfaces, default route, InfiniBand ports, distributed-training variables."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess

from .sysfs import read_int, read_text

ENV_PREFIXES = ("NCCL_", "GLOO_", "TORCH_NCCL_", "TORCH_DISTRIBUTED_", "UCX_", "FI_", "TORCHELASTIC_")
ENV_NAMES = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "NODE_RANK",
    "GROUP_RANK",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "NVIDIA_VISIBLE_DEVICES",
    "CUDA_LAUNCH_BLOCKING",
    "PYTORCH_CUDA_ALLOC_CONF",
    "OMP_NUM_THREADS",
)
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL")
_KINDS = {"1": "ethernet", "32": "infiniband", "772": "loopback", "65534": "tunnel"}


def distributed_env(environ) -> dict:
    """The variables NCCL, gloo and torch.distributed read; anything that looks secret is dropped.

    >>> distributed_env({"NCCL_SOCKET_IFNAME": "eth0", "HOME": "/root", "NCCL_API_KEY": "x"})
    {'NCCL_SOCKET_IFNAME': 'eth0'}
    """
    out = {}
    for name, value in environ.items():
        if name in ENV_NAMES or name.startswith(ENV_PREFIXES):
            if not any(word in name for word in _SECRET_WORDS):
                out[name] = value
    return dict(sorted(out.items()))


def default_route_interface(route_table: str):
    """The interface of the IPv4 default route in ``/proc/net/route`` text.

    >>> default_route_interface("Iface\\tDestination\\tGateway\\neth0\\t00000000\\t0101A8C0\\n")
    'eth0'
    """
    for line in route_table.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 2 and cols[1] == "00000000":
            return cols[0]
    return None


def addresses_from_ip_json(text: str) -> dict:
    """Interface name -> addresses from ``ip -j addr show`` output."""
    out = {}
    for link in json.loads(text):
        out[link.get("ifname")] = [a["local"] for a in link.get("addr_info", []) if "local" in a]
    return out


def _addresses(unavailable):
    ip = shutil.which("ip") or ("/sbin/ip" if os.path.exists("/sbin/ip") else None)
    if ip is None:
        unavailable["addresses"] = "the ip command (iproute2) is not installed"
        return {}
    try:
        done = subprocess.run(
            [ip, "-j", "addr", "show"], capture_output=True, text=True, timeout=5, check=True
        )
        return addresses_from_ip_json(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        unavailable["addresses"] = "ip -j addr show failed: {}".format(exc)
        return {}


def _interfaces(unavailable):
    base = "/sys/class/net"
    try:
        names = sorted(os.listdir(base))
    except OSError as exc:
        unavailable["interfaces"] = "{}: {}".format(base, exc)
        return []
    addresses = _addresses(unavailable)
    out = []
    for name in names:
        flags = read_int(os.path.join(base, name, "flags"))
        speed = read_int(os.path.join(base, name, "speed"))
        out.append(
            {
                "name": name,
                "up": bool(flags & 0x1) if flags is not None else read_text(os.path.join(base, name, "operstate")) == "up",
                "addresses": addresses.get(name, []),
                "mtu": read_int(os.path.join(base, name, "mtu")),
                "speed_mbps": speed if speed is not None and speed > 0 else None,
                "kind": _KINDS.get(read_text(os.path.join(base, name, "type")) or "", None),
            }
        )
    return out


def _value_after_colon(text):
    """``4: ACTIVE`` -> ``ACTIVE``; sysfs IB files prefix a number."""
    if text is None:
        return None
    return text.split(":", 1)[1].strip() if ":" in text else text


def _infiniband():
    base = "/sys/class/infiniband"
    out = []
    try:
        devices = sorted(os.listdir(base))
    except OSError:
        return out
    for device in devices:
        ports_dir = os.path.join(base, device, "ports")
        try:
            ports = sorted(os.listdir(ports_dir), key=lambda p: int(p) if p.isdigit() else 0)
        except OSError:
            continue
        for port in ports:
            path = os.path.join(ports_dir, port)
            out.append(
                {
                    "device": device,
                    "port": int(port) if port.isdigit() else 0,
                    "state": _value_after_colon(read_text(os.path.join(path, "state"))),
                    "phys_state": _value_after_colon(read_text(os.path.join(path, "phys_state"))),
                    "rate": read_text(os.path.join(path, "rate")),
                    "link_layer": read_text(os.path.join(path, "link_layer")),
                }
            )
    return out


def _resolve(name, unavailable, key):
    """Addresses ``name`` resolves to here ([] with a reason under ``key`` when it does not)."""
    try:
        infos = socket.getaddrinfo(name, None, 0, socket.SOCK_STREAM)
    except OSError as exc:
        unavailable[key] = "{!r} does not resolve: {}".format(name, exc)
        return []
    out = []
    for info in infos:
        if info[4][0] not in out:
            out.append(info[4][0])
    return out


def collect(resolve=()) -> dict:
    unavailable = {}
    routes = read_text("/proc/net/route")
    if routes is None:
        unavailable["default_route_interface"] = "/proc/net/route unreadable"
    env = distributed_env(os.environ)
    master = env.get("MASTER_ADDR")
    return {
        "interfaces": _interfaces(unavailable),
        "default_route_interface": default_route_interface(routes) if routes else None,
        "infiniband": _infiniband(),
        "env": env,
        "unavailable": unavailable,
        "master_addr_addresses": _resolve(master, unavailable, "master_addr_addresses") if master else None,
        "resolved": {n: _resolve(n, unavailable, "resolved." + n) for n in resolve},
    }
