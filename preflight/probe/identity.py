"""Who this node is: hostname, what it resolves to, hashed boot/machine ids, container hints."""

from __future__ import annotations

import hashlib
import os
import socket

from .sysfs import read_text

_RUNTIME_MARKERS = (
    ("kubepods", "kubernetes"),
    ("docker", "docker"),
    ("containerd", "containerd"),
    ("libpod", "podman"),
    ("lxc", "lxc"),
)


def _sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if text else None


def cgroup_runtime(cgroup_text: str):
    """The container runtime named in a ``/proc/self/cgroup`` text, or None.

    >>> cgroup_runtime("12:pids:/kubepods/burstable/pod1c2/0b9e\\n")
    'kubernetes'
    >>> cgroup_runtime("0::/system.slice/docker-4f1e.scope")
    'docker'
    >>> cgroup_runtime("0::/") is None
    True
    """
    for marker, runtime in _RUNTIME_MARKERS:
        if marker in cgroup_text:
            return runtime
    return None


def collect() -> dict:
    unavailable = {}
    hostname = socket.gethostname()
    fqdn = None
    addresses = []
    try:
        infos = socket.getaddrinfo(hostname, None, 0, socket.SOCK_STREAM, 0, socket.AI_CANONNAME)
        fqdn = infos[0][3] or hostname
        for info in infos:
            address = info[4][0]
            if address not in addresses:
                addresses.append(address)
    except OSError as exc:
        unavailable["addresses"] = "hostname {!r} does not resolve: {}".format(hostname, exc)
        unavailable["fqdn"] = unavailable["addresses"]

    boot_id = read_text("/proc/sys/kernel/random/boot_id")
    if boot_id is None:
        unavailable["boot_id_sha256"] = "/proc/sys/kernel/random/boot_id unreadable"
    machine_id = read_text("/etc/machine-id") or read_text("/var/lib/dbus/machine-id")
    if not machine_id:
        unavailable["machine_id_sha256"] = "/etc/machine-id missing or empty"

    hints = []
    dockerenv = os.path.exists("/.dockerenv")
    if dockerenv:
        hints.append("/.dockerenv exists")
    if os.path.exists("/run/.containerenv"):
        hints.append("/run/.containerenv exists (podman)")
    kubernetes = "KUBERNETES_SERVICE_HOST" in os.environ
    if kubernetes:
        hints.append("KUBERNETES_SERVICE_HOST is set")
    cgroup_text = read_text("/proc/self/cgroup") or ""
    runtime = cgroup_runtime(cgroup_text)
    if runtime:
        hints.append("cgroup path names {}".format(runtime))
    return {
        "hostname": hostname,
        "fqdn": fqdn,
        "addresses": addresses,
        "boot_id_sha256": _sha256(boot_id),
        "machine_id_sha256": _sha256(machine_id),
        "container": {
            "dockerenv": dockerenv,
            "kubernetes": kubernetes,
            "cgroup_runtime": runtime,
            "hints": hints,
        },
        "unavailable": unavailable,
    }
