"""OS, CPU, memory, /dev/shm, free disk, ulimits and kernel modules of this node."""

from __future__ import annotations

import os
import platform
import resource
import stat

from .sysfs import parse_key_values, read_text

MODULES_OF_INTEREST = (
    "nvidia",
    "nvidia_uvm",
    "nvidia_peermem",
    "nv_peer_mem",
    "nvidia_fs",
    "gdrdrv",
    "ib_core",
    "mlx5_core",
    "nouveau",
)


def _kib(value):
    if value is None:
        return None
    try:
        return int(value.split()[0]) * 1024
    except (ValueError, IndexError):
        return None


def cpu_summary(cpuinfo: str):
    """(model, physical cores) from ``/proc/cpuinfo``; cores is None where the file lacks topology.

    >>> text = ("processor: 0\\nmodel name: AMD EPYC 9654\\nphysical id: 0\\ncore id: 0\\n\\n"
    ...         "processor: 1\\nmodel name: AMD EPYC 9654\\nphysical id: 0\\ncore id: 0\\n")
    >>> cpu_summary(text)
    ('AMD EPYC 9654', 1)
    """
    model = None
    cores = set()
    for block in cpuinfo.split("\n\n"):
        fields = parse_key_values(block)
        model = model or fields.get("model name") or fields.get("Model") or fields.get("cpu model")
        if "physical id" in fields and "core id" in fields:
            cores.add((fields["physical id"], fields["core id"]))
    return model, (len(cores) or None)


def _memory(unavailable):
    meminfo = read_text("/proc/meminfo")
    fields = parse_key_values(meminfo) if meminfo else {}
    if not meminfo:
        unavailable["memory"] = "/proc/meminfo unreadable"
    limit = None
    raw = read_text("/sys/fs/cgroup/memory.max") or read_text(
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    )
    if raw and raw != "max":
        try:
            value = int(raw)
            # cgroup v1 reports "no limit" as a huge page-aligned number
            limit = value if value < (1 << 60) else None
        except ValueError:
            limit = None
    return {
        "total_bytes": _kib(fields.get("MemTotal")),
        "available_bytes": _kib(fields.get("MemAvailable")),
        "swap_total_bytes": _kib(fields.get("SwapTotal")),
        "swap_free_bytes": _kib(fields.get("SwapFree")),
        "cgroup_limit_bytes": limit,
    }


def _shm(unavailable):
    path = "/dev/shm"
    try:
        st = os.stat(path)
        vfs = os.statvfs(path)
    except OSError as exc:
        unavailable["shm"] = "{}: {}".format(path, exc.strerror or exc)
        return None
    return {
        "path": path,
        "size_bytes": vfs.f_blocks * vfs.f_frsize,
        "free_bytes": vfs.f_bavail * vfs.f_frsize,
        "mode": format(stat.S_IMODE(st.st_mode), "o"),
        "writable": os.access(path, os.W_OK),
    }


def _existing_ancestor(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def disk_locations(env, home, cwd):
    """Where checkpoints and caches go: (purpose, path) pairs.

    >>> disk_locations({"TMPDIR": "/scratch/tmp"}, "/home/ana", "/work")
    [('cwd', '/work'), ('hf_home', '/home/ana/.cache/huggingface'), ('tmpdir', '/scratch/tmp')]
    """
    hf_home = env.get("HF_HOME") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"), "huggingface"
    )
    return [("cwd", cwd), ("hf_home", hf_home), ("tmpdir", env.get("TMPDIR") or "/tmp")]


def _disks(unavailable):
    out = []
    try:
        cwd = os.getcwd()
    except OSError as exc:  # the working directory was deleted under us
        unavailable["disk.cwd"] = "current directory unavailable: {}".format(exc)
        cwd = "/"
    for purpose, path in disk_locations(os.environ, os.path.expanduser("~"), cwd):
        try:
            vfs = os.statvfs(_existing_ancestor(path))
        except OSError as exc:
            unavailable["disk." + purpose] = "{}: {}".format(path, exc)
            continue
        out.append(
            {
                "purpose": purpose,
                "path": path,
                "free_bytes": vfs.f_bavail * vfs.f_frsize,
                "total_bytes": vfs.f_blocks * vfs.f_frsize,
            }
        )
    return out


def _limit(value):
    return None if value == resource.RLIM_INFINITY else int(value)


def _ulimits(unavailable):
    out = {}
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("memlock", resource.RLIMIT_MEMLOCK)):
        try:
            soft, hard = resource.getrlimit(which)
        except (OSError, ValueError) as exc:
            unavailable["ulimits." + name] = str(exc)
            continue
        out[name] = {"soft": _limit(soft), "hard": _limit(hard)}
    return out


def _kernel_modules(unavailable):
    loaded = read_text("/proc/modules")
    names = set()
    if loaded is None:
        unavailable["kernel_modules"] = "/proc/modules unreadable; built-in modules only"
    else:
        names = {line.split(" ", 1)[0] for line in loaded.splitlines() if line}
    return {m: (m in names or os.path.isdir("/sys/module/" + m)) for m in MODULES_OF_INTEREST}


def _port_range():
    """The ephemeral range NCCL's sockets and gloo's pairs listen in (``32768-60999``)."""
    text = read_text("/proc/sys/net/ipv4/ip_local_port_range")
    parts = text.split() if text else []
    return "{}-{}".format(parts[0], parts[1]) if len(parts) == 2 else None


def collect() -> dict:
    unavailable = {}
    os_release = read_text("/etc/os-release") or read_text("/usr/lib/os-release")
    os_name = parse_key_values(os_release, "=").get("PRETTY_NAME") if os_release else None
    if os_name is None:
        unavailable["os_name"] = "/etc/os-release unreadable"
    cpuinfo = read_text("/proc/cpuinfo") or ""
    model, physical = cpu_summary(cpuinfo)
    if physical is None:
        unavailable["cpu_physical_cores"] = "/proc/cpuinfo has no core topology"
    uname = platform.uname()
    return {
        "os_name": os_name,
        "kernel": uname.release or None,
        "arch": uname.machine or None,
        "cpu_model": model,
        "cpu_logical_cores": os.cpu_count(),
        "cpu_physical_cores": physical,
        "memory": _memory(unavailable),
        "shm": _shm(unavailable),
        "disks": _disks(unavailable),
        "ulimits": _ulimits(unavailable),
        "kernel_modules": _kernel_modules(unavailable),
        "unavailable": unavailable,
        "port_range": _port_range(),
    }
