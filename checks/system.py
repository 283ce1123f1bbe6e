"""System: /dev/shm, memlock where InfiniBand is present, free disk, host RAM per GPU."""

from __future__ import annotations

from preflight.findings import Outcome, fail, passed, skip, warn
from preflight.registry import CheckContext, check

GROUP = "System"
GIB = 1 << 30
MIB = 1 << 20


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def _size(n: int) -> str:
    return _gib(n) if n >= GIB else f"{n // MIB} MiB"


@check(
    "system.shm_size",
    group=GROUP,
    title="/dev/shm large enough",
    thresholds={"min_multi_gpu_mib": 1024, "min_mib": 512},
)
def shm_size(ctx: CheckContext) -> Outcome:
    """NCCL moves intra-node data through ``/dev/shm`` and DataLoader workers pass batches through
    it; Docker's default 64 MiB makes NCCL fail with "unhandled system error" and workers die
    with "bus error". DeepSpeed's ``ds_report`` warns below 512 MiB and recommends
    ``--shm-size=1gb``; preflight fails a multi-GPU node below 1 GiB."""
    shm = ctx.facts.system.shm
    if shm is None or shm.size_bytes is None:
        return skip(ctx.facts.system.unavailable.get("shm", "/dev/shm not found"))
    gpus = len(ctx.facts.gpu.devices)
    size = shm.size_bytes
    fix = "start the container with `--shm-size=16g` (or `--ipc=host`); on Kubernetes mount an emptyDir with medium: Memory at /dev/shm"
    multi_min = int(ctx.thresholds["min_multi_gpu_mib"]) * MIB
    single_min = int(ctx.thresholds["min_mib"]) * MIB
    observed = f"{_size(size)} ({_size(shm.free_bytes or 0)} free)"
    if gpus > 1 and size < multi_min:
        return fail(observed, f"at least {_size(multi_min)} with {gpus} GPUs", fix)
    if size < single_min:
        return warn(observed, f"at least {_size(single_min)}", fix)
    return passed(observed, f"at least {_size(multi_min if gpus > 1 else single_min)}")


@check("system.shm_writable", group=GROUP, title="/dev/shm writable")
def shm_writable(ctx: CheckContext) -> Outcome:
    """A read-only or wrongly-owned ``/dev/shm`` breaks NCCL's shared-memory transport and
    multiprocessing queues; the mode should be 1777."""
    shm = ctx.facts.system.shm
    if shm is None or shm.writable is None:
        return skip(ctx.facts.system.unavailable.get("shm", "/dev/shm not found"))
    if not shm.writable:
        return fail(
            f"/dev/shm is not writable by this user (mode {shm.mode})",
            "writable, mode 1777",
            "`sudo chmod 1777 /dev/shm`, or remount it read-write",
        )
    return passed(f"writable (mode {shm.mode})")


@check("system.memlock", group=GROUP, title="memlock unlimited with InfiniBand")
def memlock(ctx: CheckContext) -> Outcome:
    """NCCL's InfiniBand/RoCE transport registers (pins) buffers; a finite ``ulimit -l`` makes
    ``ibv_reg_mr`` fail ("Cannot allocate memory"). NCCL's docs and ml-engineering's checklist ask
    for ``--ulimit memlock=-1`` in containers."""
    ports = ctx.facts.network.infiniband
    if not ports:
        return skip("no InfiniBand/RoCE device on this node")
    limit = ctx.facts.system.ulimits.get("memlock")
    if limit is None:
        return skip(ctx.facts.system.unavailable.get("ulimits.memlock", "memlock limit unreadable"))
    if limit.soft is None:
        return passed("unlimited", "unlimited")
    return fail(
        f"memlock soft limit {_size(limit.soft)} with {len(ports)} RDMA port(s)",
        "unlimited",
        "set `* - memlock unlimited` in /etc/security/limits.conf (or `--ulimit memlock=-1` "
        "for Docker, LimitMEMLOCK=infinity for systemd/Slurm) and log in again",
    )


@check(
    "system.disk_free",
    group=GROUP,
    title="Free disk for checkpoints and caches",
    thresholds={"warn_gib": 50, "fail_gib": 5},
)
def disk_free(ctx: CheckContext) -> Outcome:
    """Checkpoints (weights plus optimizer state: about 16 bytes per parameter for AdamW mixed
    precision) and the Hugging Face cache fill disks mid-run; a full disk kills the job at the
    first save, hours in."""
    disks = ctx.facts.system.disks
    if not disks:
        return skip("free disk space unreadable")
    fail_at = float(ctx.thresholds["fail_gib"]) * GIB
    warn_at = float(ctx.thresholds["warn_gib"]) * GIB
    by_path: dict[str, list[str]] = {}
    for d in disks:
        by_path.setdefault(d.path, []).append(d.purpose)
    free = {d.path: d.free_bytes for d in disks}
    rows = {path: f"{path} ({', '.join(p)}): {_gib(free[path] or 0)} free" for path, p in by_path.items()}
    low = [d for d in disks if d.free_bytes is not None and d.free_bytes < warn_at]
    worst = min(low, key=lambda d: d.free_bytes or 0) if low else None
    if worst is None:
        return passed("; ".join(rows.values()), f"at least {_gib(int(warn_at))} free", locations=rows)
    status = fail if (worst.free_bytes or 0) < fail_at else warn
    return status(
        "; ".join(dict.fromkeys(rows[d.path] for d in low)),
        f"at least {_gib(int(warn_at))} free",
        f"free space on {worst.path}, or point the job's output_dir / HF_HOME / TMPDIR at a larger disk",
        locations=rows,
    )


@check(
    "system.ram_per_gpu",
    group=GROUP,
    title="Host RAM for the GPUs",
    thresholds={"min_ram_to_gpu_memory_ratio": 1.0},
)
def ram_per_gpu(ctx: CheckContext) -> Outcome:
    """Every rank loads its checkpoint shard through host RAM, and ZeRO/FSDP offload keeps
    optimizer state there; host RAM (or the container's memory limit) smaller than the GPUs'
    total memory gets ranks OOM-killed while loading."""
    devices = ctx.facts.gpu.devices
    if not devices:
        return skip("no GPU visible")
    mem = ctx.facts.system.memory
    if mem.total_bytes is None:
        return skip("host memory unreadable")
    ram = mem.total_bytes
    limited = mem.cgroup_limit_bytes is not None and mem.cgroup_limit_bytes < ram
    if limited and mem.cgroup_limit_bytes is not None:
        ram = mem.cgroup_limit_bytes
    gpu_total = sum(d.memory_total_bytes or 0 for d in devices)
    want = gpu_total * float(ctx.thresholds["min_ram_to_gpu_memory_ratio"])
    source = "container memory limit" if limited else "host RAM"
    observed = f"{source} {_gib(ram)} for {len(devices)} GPU(s) with {_gib(gpu_total)} in total"
    if ram < want:
        return warn(
            observed,
            f"at least {_gib(int(want))}",
            "raise the container memory limit, load checkpoints with low_cpu_mem_usage / "
            "safetensors memory-mapping, or avoid CPU offload on this node",
        )
    return passed(observed, f"at least {_gib(int(want))}")
