"""GPU health: NVML answers, count, memory already in use, ECC, row remap, throttling, links, MIG."""

from __future__ import annotations

from preflight.facts import GpuDevice, NodeFacts
from preflight.findings import Outcome, fail, passed, skip, warn
from preflight.registry import CheckContext, check

GROUP = "GPUs"
MIB = 1 << 20

# Clocks-event reasons that mean the hardware slowed the GPU down, not an idle or policy state.
# nvml.h nvmlClocksEventReason*: HwSlowdown, SwThermalSlowdown, HwThermalSlowdown, HwPowerBrakeSlowdown.
SLOWDOWN_REASONS = ("hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown")


def _no_gpu_reason(facts: NodeFacts) -> str:
    reasons = "; ".join(f"{k}: {v}" for k, v in facts.gpu.unavailable.items())
    return f"no NVIDIA GPU visible ({reasons})" if reasons else "no NVIDIA GPU visible"


def _devices(ctx: CheckContext) -> list[GpuDevice] | Outcome:
    """The GPUs, or a skip outcome saying why there are none (the reasons: gpu.nvml_responds)."""
    if not ctx.facts.gpu.devices:
        return skip("no NVIDIA GPU visible (see gpu.nvml_responds)")
    return ctx.facts.gpu.devices


def _label(dev: GpuDevice) -> str:
    return f"GPU {dev.index}"


def _unknown_for_all(devices: list[GpuDevice], attr: str) -> Outcome | None:
    if all(getattr(d, attr) is None for d in devices):
        reasons = {d.unavailable.get(attr, "not reported") for d in devices}
        return skip(f"not reported by {', '.join(sorted(reasons))}")
    return None


@check("gpu.nvml_responds", group=GROUP, title="NVIDIA driver answers (NVML)")
def nvml_responds(ctx: CheckContext) -> Outcome:
    """The driver answers NVML queries. A loaded ``nvidia`` kernel module (or ``--expect-gpus``)
    with no answer is a broken driver install, the first thing that stops a job."""
    facts = ctx.facts
    if facts.gpu.devices:
        return passed(
            f"{len(facts.gpu.devices)} GPU(s) via {facts.gpu.source}, driver {facts.gpu.driver_version}",
            source=facts.gpu.source,
        )
    module_loaded = facts.system.kernel_modules.get("nvidia", False)
    if module_loaded or (ctx.options.expect_gpus or 0) > 0:
        why = "the nvidia kernel module is loaded" if module_loaded else "--expect-gpus was given"
        return fail(
            f"{_no_gpu_reason(facts)}, yet {why}",
            "NVML answers and lists the GPUs",
            "run `nvidia-smi`; if it fails too, reinstall the driver or reboot after a driver "
            "update (a user-space/kernel-module version mismatch gives 'Driver/library version mismatch')",
            unavailable=facts.gpu.unavailable,
        )
    return skip(_no_gpu_reason(facts))


@check("gpu.count", group=GROUP, title="GPU count matches --expect-gpus")
def gpu_count(ctx: CheckContext) -> Outcome:
    """The node shows as many GPUs as the job will launch ranks for; a GPU that fell off the bus
    or a container started with too few GPUs shows up here before torchrun fails on a rank."""
    expected = ctx.options.expect_gpus
    if expected is None:
        return skip("no --expect-gpus given")
    count = len(ctx.facts.gpu.devices)
    if count == expected:
        return passed(f"{count} GPU(s)", f"{expected}")
    return fail(
        f"{count} GPU(s) visible",
        f"{expected}",
        "check `nvidia-smi -L` and dmesg for 'fallen off the bus' (Xid 79); in a container pass "
        "`--gpus all`; check CUDA_VISIBLE_DEVICES",
        visible=[d.name for d in ctx.facts.gpu.devices],
    )


@check(
    "gpu.memory_in_use",
    group=GROUP,
    title="GPU memory free before launch",
    thresholds={"max_used_mib": 1024},
)
def memory_in_use(ctx: CheckContext) -> Outcome:
    """Memory already held on a GPU before the job starts: a leftover process from a previous run
    (or another user's job) turns into an out-of-memory error at step 1. Lists the processes.
    Threshold: gcm's prolog default is 15 MiB, but NVML counts driver-reserved memory as used
    (an idle H200 on driver 580 reports about 615 MiB, tests/fixtures/h200_vm.json), so preflight
    fails above ``max_used_mib`` and warns on any compute process below it."""
    devices = _devices(ctx)
    if isinstance(devices, Outcome):
        return devices
    limit = int(ctx.thresholds["max_used_mib"]) * MIB
    busy, procs = [], []
    for dev in devices:
        holders = []
        for p in dev.processes or []:
            used = f"{p.used_bytes // MIB} MiB" if p.used_bytes is not None else "? MiB"
            holders.append(f"pid {p.pid} {p.name or '?'} ({used})")
            procs.append(f"GPU {dev.index}: {holders[-1]}")
        if dev.memory_used_bytes is not None and dev.memory_used_bytes > limit:
            by = f" by {', '.join(holders)}" if holders else ""
            busy.append(f"GPU {dev.index}: {dev.memory_used_bytes // MIB} MiB used{by}")
    pids = sorted({p.pid for d in devices for p in d.processes or []})
    kill = f"`kill {' '.join(map(str, pids))}`" if pids else "find the holder with `nvidia-smi`"
    if busy:
        return fail(
            "; ".join(busy),
            f"at most {limit // MIB} MiB used per GPU",
            f"stop what holds the memory: {kill}, or wait for the other job",
            processes=procs,
        )
    if procs:
        return warn(
            f"{len(procs)} process(es) on the GPUs: " + "; ".join(procs),
            "no compute process before launch",
            f"stop them if they are not yours to keep: {kill}",
            processes=procs,
        )
    return passed("no process holds GPU memory", f"at most {limit // MIB} MiB used per GPU")


@check(
    "gpu.ecc_uncorrected",
    group=GROUP,
    title="No uncorrected ECC errors",
    thresholds={"max_uncorrected": 0},
)
def ecc_uncorrected(ctx: CheckContext) -> Outcome:
    """Volatile uncorrected ECC errors since the last driver load: the GPU has returned corrupt
    data and jobs on it crash or silently diverge (imbue and gcm fail on any, default 0)."""
    devices = _devices(ctx)
    if isinstance(devices, Outcome):
        return devices
    unknown = _unknown_for_all(devices, "ecc_uncorrected_volatile")
    if unknown:
        return unknown
    limit = int(ctx.thresholds["max_uncorrected"])
    bad = [
        f"GPU {d.index}: {d.ecc_uncorrected_volatile}"
        for d in devices
        if d.ecc_uncorrected_volatile is not None and d.ecc_uncorrected_volatile > limit
    ]
    if bad:
        return fail(
            "uncorrected ECC errors: " + ", ".join(bad),
            f"at most {limit}",
            "drain the node; reset the GPU (`nvidia-smi -r -i N`) and run `dcgmi diag -r 2`; "
            "if errors return, request an RMA",
        )
    return passed("0 uncorrected volatile ECC errors", f"at most {limit}")


@check("gpu.row_remap", group=GROUP, title="No pending or failed memory row remaps")
def row_remap(ctx: CheckContext) -> Outcome:
    """Row remapping (A100 and newer) replaces bad HBM rows; a *pending* remap takes effect only
    after a GPU reset, a *failed* one means the GPU ran out of spare rows (NVIDIA: replace it)."""
    devices = _devices(ctx)
    if isinstance(devices, Outcome):
        return devices
    unknown = _unknown_for_all(devices, "row_remap_pending")
    if unknown:
        return unknown
    failed = [_label(d) for d in devices if d.row_remap_failed]
    pending = [_label(d) for d in devices if d.row_remap_pending]
    if failed:
        return fail(
            "row remapping failed on " + ", ".join(failed),
            "no remap failure",
            "take the GPU out of service and request an RMA (row-remapping failure)",
        )
    if pending:
        return warn(
            "row remap pending on " + ", ".join(pending),
            "no pending remap",
            "reset the GPU to apply the remap: `nvidia-smi -r -i N` with no process on it, or reboot",
        )
    return passed("no pending or failed row remap")


@check(
    "gpu.retired_pages",
    group=GROUP,
    title="Retired memory pages",
    thresholds={"max_retired_pages": 10},
)
def retired_pages(ctx: CheckContext) -> Outcome:
    """Page retirement (pre-A100 GPUs): a pending retirement needs a reset to take effect; many
    retired pages point at failing memory (gcm's default limit is 10)."""
    devices = _devices(ctx)
    if isinstance(devices, Outcome):
        return devices
    unknown = _unknown_for_all(devices, "retired_pages")
    if unknown and all(d.retired_pages_pending is None for d in devices):
        return unknown
    limit = int(ctx.thresholds["max_retired_pages"])
    many = [f"GPU {d.index}: {d.retired_pages}" for d in devices if (d.retired_pages or 0) > limit]
    pending = [_label(d) for d in devices if d.retired_pages_pending]
    if many:
        return warn(
            "retired pages: " + ", ".join(many),
            f"at most {limit}",
            "run `dcgmi diag -r 2` on the node and plan a replacement of the GPU",
        )
    if pending:
        return warn(
            "page retirement pending on " + ", ".join(pending),
            "none pending",
            "reset the GPU (`nvidia-smi -r -i N`) or reboot so the retirement takes effect",
        )
    total = sum(d.retired_pages or 0 for d in devices)
    return passed(f"{total} retired page(s), none pending", f"at most {limit}")


@check("gpu.idle_throttle", group=GROUP, title="Clocks not throttled by hardware")
def idle_throttle(ctx: CheckContext) -> Outcome:
    """Hardware or thermal slowdown reported while the GPU is idle: a cooling, power-brake or
    power-supply fault that will make this GPU the straggler of every collective."""
    devices = _devices(ctx)
    if isinstance(devices, Outcome):
        return devices
    unknown = _unknown_for_all(devices, "throttle_reasons")
    if unknown:
        return unknown
    slowed = []
    for d in devices:
        reasons = [r for r in d.throttle_reasons or [] if r in SLOWDOWN_REASONS]
        if reasons:
            slowed.append(f"GPU {d.index}: {', '.join(reasons)}")
    if slowed:
        return warn(
            "; ".join(slowed),
            "no hardware or thermal slowdown",
            "check cooling and power (`nvidia-smi -q -d PERFORMANCE,TEMPERATURE,POWER`); "
            "a GPU slowed while idle needs the node looked at",
        )
    return passed("no hardware or thermal slowdown")


@check("gpu.persistence_mode", group=GROUP, title="Persistence mode on")
def persistence_mode(ctx: CheckContext) -> Outcome:
    """With persistence mode off the driver tears down and re-initialises the GPUs whenever no
    client holds them: slow first CUDA calls and flaky monitoring (DCGM's r1 checks it)."""
    devices = _devices(ctx)
    if isinstance(devices, Outcome):
        return devices
    unknown = _unknown_for_all(devices, "persistence_mode")
    if unknown:
        return unknown
    off = [_label(d) for d in devices if d.persistence_mode is False]
    if off:
        return warn(
            "persistence mode off on " + ", ".join(off),
            "on",
            "`sudo nvidia-smi -pm 1`, or enable the nvidia-persistenced service",
        )
    return passed("on for all GPUs")


@check("gpu.pcie_link", group=GROUP, title="PCIe link at full width")
def pcie_link(ctx: CheckContext) -> Outcome:
    """A PCIe link trained below its maximum width (x8 instead of x16) halves host-GPU and
    GPUDirect bandwidth. The link *generation* drops at idle to save power, which is normal, so
    only the width is judged here; the benchmark measures the rest."""
    devices = _devices(ctx)
    if isinstance(devices, Outcome):
        return devices
    unknown = _unknown_for_all(devices, "pcie_width_current")
    if unknown:
        return unknown
    narrow = [
        f"GPU {d.index}: x{d.pcie_width_current} of x{d.pcie_width_max}"
        for d in devices
        if d.pcie_width_current and d.pcie_width_max and d.pcie_width_current < d.pcie_width_max
    ]
    links = {
        _label(d): f"gen{d.pcie_gen_current}/{d.pcie_gen_max} x{d.pcie_width_current}/{d.pcie_width_max}"
        for d in devices
    }
    if narrow:
        return warn(
            "; ".join(narrow),
            "current width equals maximum width",
            "reseat the GPU or its riser; check `lspci -vv` LnkSta and dmesg for PCIe errors",
            links=links,
        )
    return passed("all links at full width", links=links)


@check("gpu.mig_disabled", group=GROUP, title="MIG mode off")
def mig_disabled(ctx: CheckContext) -> Outcome:
    """MIG splits a GPU into isolated instances; NCCL cannot use NVLink or P2P between them, so
    a multi-GPU training job on MIG GPUs fails or crawls."""
    devices = _devices(ctx)
    if isinstance(devices, Outcome):
        return devices
    on = [_label(d) for d in devices if d.mig_enabled]
    if on:
        return warn(
            "MIG enabled on " + ", ".join(on),
            "MIG disabled for multi-GPU training",
            "`sudo nvidia-smi -i N -mig 0` then reset the GPU, unless MIG slices are intended",
        )
    if all(d.mig_enabled is None for d in devices):
        return passed("MIG not supported on these GPUs")
    return passed("MIG disabled")


@check(
    "gpu.temperature",
    group=GROUP,
    title="GPU temperature",
    thresholds={"warn_c": 80, "fail_c": 90},
)
def temperature(ctx: CheckContext) -> Outcome:
    """A GPU that is already hot before the job starts will throttle under load; at idle a
    data-centre GPU sits around 30-50 °C."""
    devices = _devices(ctx)
    if isinstance(devices, Outcome):
        return devices
    unknown = _unknown_for_all(devices, "temperature_c")
    if unknown:
        return unknown
    hottest = max((d for d in devices if d.temperature_c is not None), key=lambda d: d.temperature_c or 0)
    temps = {_label(d): d.temperature_c for d in devices}
    observed = f"hottest GPU {hottest.index} at {hottest.temperature_c} °C"
    if hottest.temperature_c is not None and hottest.temperature_c >= ctx.thresholds["fail_c"]:
        return fail(
            observed,
            f"below {ctx.thresholds['fail_c']} °C",
            "check fans, airflow and the data-centre cooling before training",
            temperatures_c=temps,
        )
    if hottest.temperature_c is not None and hottest.temperature_c >= ctx.thresholds["warn_c"]:
        return warn(
            observed,
            f"below {ctx.thresholds['warn_c']} °C",
            "check what is running on the GPU and the cooling",
            temperatures_c=temps,
        )
    return passed(observed, f"below {ctx.thresholds['warn_c']} °C", temperatures_c=temps)


@check("gpu.nvlink", group=GROUP, title="NVLink links all up")
def nvlink(ctx: CheckContext) -> Outcome:
    """An NVLink that is down while its neighbours are up (or a GPU with fewer links up than its
    peers) sends traffic over PCIe: all-reduce drops from hundreds to tens of GB/s."""
    devices = _devices(ctx)
    if isinstance(devices, Outcome):
        return devices
    linked = [d for d in devices if d.nvlink_up]
    if not linked:
        return skip("no NVLink links up on this node (PCIe-only GPUs)")
    most = max(d.nvlink_up or 0 for d in devices)
    short = [
        f"GPU {d.index}: {d.nvlink_up or 0} up, {d.nvlink_down or 0} down"
        for d in devices
        if (d.nvlink_up or 0) < most or ((d.nvlink_up or 0) and (d.nvlink_down or 0))
    ]
    if short:
        return fail(
            "; ".join(short),
            f"{most} links up on every GPU",
            "check `nvidia-smi nvlink -s` and the fabric manager (`systemctl status nvidia-fabricmanager`); "
            "reset the GPUs or drain the node",
        )
    return passed(f"{most} links up on each of {len(devices)} GPU(s)")
