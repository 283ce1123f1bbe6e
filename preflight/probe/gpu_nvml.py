"""GPU facts through NVML, from any object with pynvml's function names and return values.

``pynvml`` (the nvidia-ml-py package) is used when importable; otherwise ``nvml_ctypes``, our
own minimal binding of the same functions against ``libnvidia-ml.so.1``. Each query that fails
(``Not Supported`` on consumer cards, an old driver without the entry point) leaves the field
None and records NVML's message in the device's ``unavailable`` map.
"""

from __future__ import annotations

import os

from .sysfs import read_text

# nvml.h: clocks event (throttle) reason bits, nvmlClocksEventReason*
THROTTLE_REASON_BITS = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)
NVLINK_MAX_LINKS = 18  # NVML_NVLINK_MAX_LINKS in nvml.h


def throttle_reason_names(mask: int) -> list:
    """Names of the set bits of an NVML clocks-event-reasons mask.

    >>> throttle_reason_names(0x1 | 0x40)
    ['gpu_idle', 'hw_thermal_slowdown']
    """
    return [name for bit, name in THROTTLE_REASON_BITS if mask & bit]


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _process_name(nvml, pid):
    comm = read_text("/proc/{}/comm".format(pid))
    if comm:
        return comm
    try:
        return os.path.basename(_text(nvml.nvmlSystemGetProcessName(pid)))
    except Exception:  # noqa: BLE001 - NVML raises its own error types
        return None


class _Reader:
    """Calls NVML query by query, recording each failure instead of raising."""

    def __init__(self, nvml, unavailable):
        self.nvml = nvml
        self.unavailable = unavailable

    def get(self, key, func_name, *args):
        func = getattr(self.nvml, func_name, None)
        if func is None:
            self.unavailable.setdefault(key, "{} missing from this NVML binding".format(func_name))
            return None
        try:
            return func(*args)
        except Exception as exc:  # noqa: BLE001 - pynvml.NVMLError and ctypes errors alike
            self.unavailable.setdefault(key, "{}: {}".format(func_name, exc))
            return None


def _device(nvml, index):
    unavailable = {}
    r = _Reader(nvml, unavailable)
    h = nvml.nvmlDeviceGetHandleByIndex(index)
    pci = r.get("pci_bus_id", "nvmlDeviceGetPciInfo", h)
    memory = r.get("memory", "nvmlDeviceGetMemoryInfo", h)
    if memory is None:
        for key in ("memory_total_bytes", "memory_used_bytes", "memory_free_bytes"):
            unavailable[key] = unavailable.get("memory", "NVML memory info failed")
        unavailable.pop("memory", None)
    cc = r.get("compute_capability", "nvmlDeviceGetCudaComputeCapability", h)
    ecc = r.get("ecc_enabled", "nvmlDeviceGetEccMode", h)
    ecc_enabled = bool(ecc[0]) if ecc is not None else None
    uncorrected = None
    if ecc_enabled:
        # NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1, NVML_VOLATILE_ECC = 0
        uncorrected = r.get("ecc_uncorrected_volatile", "nvmlDeviceGetTotalEccErrors", h, 1, 0)
    elif ecc is not None:
        unavailable["ecc_uncorrected_volatile"] = "ECC is disabled on this GPU"
    retired = None
    sbe = r.get("retired_pages", "nvmlDeviceGetRetiredPages", h, 0)
    dbe = r.get("retired_pages", "nvmlDeviceGetRetiredPages", h, 1)
    if sbe is not None and dbe is not None:
        retired = len(sbe) + len(dbe)
        unavailable.pop("retired_pages", None)
    pending = r.get("retired_pages_pending", "nvmlDeviceGetRetiredPagesPendingStatus", h)
    remap = r.get("row_remap", "nvmlDeviceGetRemappedRows", h)
    if remap is None:
        reason = unavailable.pop("row_remap", "NVML row remapping query failed")
        unavailable["row_remap_pending"] = unavailable["row_remap_failed"] = reason
    power = r.get("power_limit_w", "nvmlDeviceGetPowerManagementLimit", h)
    util = r.get("utilization_percent", "nvmlDeviceGetUtilizationRates", h)
    mask = r.get("throttle_reasons", "nvmlDeviceGetCurrentClocksEventReasons", h)
    if mask is None:
        unavailable.pop("throttle_reasons", None)
        mask = r.get("throttle_reasons", "nvmlDeviceGetCurrentClocksThrottleReasons", h)
    persistence = r.get("persistence_mode", "nvmlDeviceGetPersistenceMode", h)
    mig = r.get("mig_enabled", "nvmlDeviceGetMigMode", h)
    procs = r.get("processes", "nvmlDeviceGetComputeRunningProcesses", h)
    processes = None
    if procs is not None:
        processes = [
            {
                "pid": int(p.pid),
                "name": _process_name(nvml, p.pid),
                "used_bytes": int(p.usedGpuMemory) if p.usedGpuMemory is not None else None,
            }
            for p in procs
        ]
    nvlink_up = nvlink_down = None
    link_states = []
    for link in range(NVLINK_MAX_LINKS):
        try:
            link_states.append(int(nvml.nvmlDeviceGetNvLinkState(h, link)))
        except Exception:  # noqa: BLE001 - links past the last one raise Not Supported / Invalid
            break
    if link_states:
        nvlink_up = sum(1 for s in link_states if s == 1)
        nvlink_down = len(link_states) - nvlink_up
    else:
        unavailable["nvlink_up"] = unavailable["nvlink_down"] = "no NVLink links reported"
    return {
        "index": index,
        "name": _text(r.get("name", "nvmlDeviceGetName", h)),
        "uuid": _text(r.get("uuid", "nvmlDeviceGetUUID", h)),
        "pci_bus_id": _text(pci.busId) if pci is not None else None,
        "memory_total_bytes": int(memory.total) if memory is not None else None,
        "memory_used_bytes": int(memory.used) if memory is not None else None,
        "memory_free_bytes": int(memory.free) if memory is not None else None,
        "compute_capability": "{}.{}".format(*cc) if cc is not None else None,
        "ecc_enabled": ecc_enabled,
        "ecc_uncorrected_volatile": int(uncorrected) if uncorrected is not None else None,
        "retired_pages": retired,
        "retired_pages_pending": bool(pending) if pending is not None else None,
        "row_remap_pending": bool(remap[2]) if remap is not None else None,
        "row_remap_failed": bool(remap[3]) if remap is not None else None,
        "temperature_c": r.get("temperature_c", "nvmlDeviceGetTemperature", h, 0),
        "power_limit_w": power / 1000.0 if power is not None else None,
        "utilization_percent": int(util.gpu) if util is not None else None,
        "throttle_reasons": throttle_reason_names(int(mask)) if mask is not None else None,
        "persistence_mode": bool(persistence) if persistence is not None else None,
        "mig_enabled": bool(mig[0]) if mig is not None else None,
        "pcie_gen_current": r.get("pcie_gen_current", "nvmlDeviceGetCurrPcieLinkGeneration", h),
        "pcie_gen_max": r.get("pcie_gen_max", "nvmlDeviceGetMaxPcieLinkGeneration", h),
        "pcie_width_current": r.get("pcie_width_current", "nvmlDeviceGetCurrPcieLinkWidth", h),
        "pcie_width_max": r.get("pcie_width_max", "nvmlDeviceGetMaxPcieLinkWidth", h),
        "processes": processes,
        "nvlink_up": nvlink_up,
        "nvlink_down": nvlink_down,
        "unavailable": unavailable,
    }


def cuda_version_text(value: int) -> str:
    """NVML's integer CUDA driver version as ``major.minor``.

    >>> cuda_version_text(12040)
    '12.4'
    """
    return "{}.{}".format(value // 1000, (value % 1000) // 10)


def read(nvml, source: str) -> dict:
    """GPU facts through an initialised-on-demand NVML binding; raises if NVML cannot start."""
    nvml.nvmlInit()
    try:
        unavailable = {}
        r = _Reader(nvml, unavailable)
        cuda = r.get("cuda_driver_version", "nvmlSystemGetCudaDriverVersion_v2")
        if cuda is None:
            unavailable.pop("cuda_driver_version", None)
            cuda = r.get("cuda_driver_version", "nvmlSystemGetCudaDriverVersion")
        count = nvml.nvmlDeviceGetCount()
        return {
            "source": source,
            "driver_version": _text(r.get("driver_version", "nvmlSystemGetDriverVersion")),
            "cuda_driver_version": cuda_version_text(cuda) if cuda else None,
            "nvml_version": _text(r.get("nvml_version", "nvmlSystemGetNVMLVersion")),
            "devices": [_device(nvml, i) for i in range(count)],
            "unavailable": unavailable,
        }
    finally:
        _Reader(nvml, {}).get("shutdown", "nvmlShutdown")
