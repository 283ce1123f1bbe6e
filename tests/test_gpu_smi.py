"""nvidia-smi parsing on captured real output, and the ctypes NVML binding without a GPU.

Every sample below is text a person pasted from a real machine; the comment beside each says
where. None was edited except for joining it into a Python string.
"""

from __future__ import annotations

import ctypes
import dataclasses
import inspect
import re

import pytest

from preflight.facts import GpuDevice, GpuProcess
from preflight.probe import gpu_nvml, gpu_smi, nvml_ctypes

DEVICE_KEYS = {f.name for f in dataclasses.fields(GpuDevice)}
PROCESS_KEYS = {f.name for f in dataclasses.fields(GpuProcess)}
MIB = 1024 * 1024

# 8x H200, `--query-gpu=index,uuid,memory.used,memory.total,utilization.gpu --format=csv` and
# `--query-compute-apps=gpu_uuid,pid,process_name,used_memory --format=csv` (header and units
# kept). An experiment log in a public GitHub repository, reached through the code-search index
# (read_file id 57070576593); the index does not give its repository or URL.
H200_FIELDS = ("index", "uuid", "memory.used", "memory.total", "utilization.gpu")
H200_GPUS = """\
index, uuid, memory.used [MiB], memory.total [MiB], utilization.gpu [%]
0, GPU-a44622e3-2296-6285-0a86-84d0f6c67900, 130013 MiB, 143771 MiB, 100 %
1, GPU-4f31bb83-f8dc-d0af-029e-bc4356e6afeb, 130053 MiB, 143771 MiB, 100 %
2, GPU-4e9e74b7-4977-f04d-3af3-ccfe5f570e90, 105851 MiB, 143771 MiB, 100 %
3, GPU-02dbe542-8a6f-11a4-7c2a-486b7d4e9092, 129993 MiB, 143771 MiB, 100 %
4, GPU-cb449822-5571-be90-8303-e7558da3ea66, 106091 MiB, 143771 MiB, 100 %
5, GPU-8e137fa6-c3d9-6980-7733-0d8df296756e, 105851 MiB, 143771 MiB, 100 %
6, GPU-d9337494-6060-1440-039f-4654245b5764, 106139 MiB, 143771 MiB, 100 %
7, GPU-28780eb0-24d5-1f13-59b8-ae5c23617a72, 58071 MiB, 143771 MiB, 0 %
"""
H200_APPS = """\
gpu_uuid, pid, process_name, used_gpu_memory [MiB]
GPU-a44622e3-2296-6285-0a86-84d0f6c67900, 1328667, /usr/local/bin/python3.10, 130004 MiB
GPU-4f31bb83-f8dc-d0af-029e-bc4356e6afeb, 1328668, /usr/local/bin/python3.10, 130044 MiB
GPU-4e9e74b7-4977-f04d-3af3-ccfe5f570e90, 1425258, python3, 105842 MiB
GPU-02dbe542-8a6f-11a4-7c2a-486b7d4e9092, 1328669, /usr/local/bin/python3.10, 129984 MiB
GPU-cb449822-5571-be90-8303-e7558da3ea66, 1425259, python3, 105842 MiB
GPU-8e137fa6-c3d9-6980-7733-0d8df296756e, 1425260, python3, 105842 MiB
GPU-d9337494-6060-1440-039f-4654245b5764, 1425261, python3, 105842 MiB
GPU-28780eb0-24d5-1f13-59b8-ae5c23617a72, 1758887, [Not Found], 58060 MiB
"""

# Captured for this module on a lent H200 (driver 580.159.04, nvidia-smi 580.159.04), with
# `--query-gpu=<H200_FULL_FIELDS> --format=csv,nounits`. Driver 580 still accepts
# clocks_throttle_reasons.active but heads the column with its new name. Retired pages read
# [N/A] on Hopper, which remaps rows instead.
H200_FULL_FIELDS = (
    "index", "name", "uuid", "pci.bus_id", "memory.total", "compute_cap", "ecc.mode.current",
    "ecc.errors.uncorrected.volatile.total", "retired_pages.single_bit_ecc.count",
    "retired_pages.double_bit.count", "retired_pages.pending", "remapped_rows.pending",
    "remapped_rows.failure", "power.limit", "clocks_event_reasons.active",
    "clocks_throttle_reasons.active", "persistence_mode", "mig.mode.current", "pcie.link.gen.max",
    "pcie.link.width.max",
)
H200_FULL = """\
index, name, uuid, pci.bus_id, memory.total [MiB], compute_cap, ecc.mode.current, ecc.errors.uncorrected.volatile.total, retired_pages.single_bit_ecc.count, retired_pages.double_bit.count, retired_pages.pending, remapped_rows.pending, remapped_rows.failure, power.limit [W], clocks_event_reasons.active, clocks_event_reasons.active, persistence_mode, mig.mode.current, pcie.link.gen.max, pcie.link.width.max
0, NVIDIA H200, GPU-33cb4f14-fab7-1792-d650-b4d8610a6302, 00000000:00:06.0, 143771, 9.0, Enabled, 0, [N/A], [N/A], [N/A], No, No, 700.00, 0x0000000000000001, 0x0000000000000001, Enabled, Disabled, 5, 16
"""  # noqa: E501

# RTX PRO 6000 Blackwell, driver 610.43.02,
# `--query-gpu=index,name,uuid,driver_version,memory.total,mig.mode.current --format=csv`
# (data lines only, as the document shows them). HAMi dynamic-MIG walkthrough in a public
# GitHub docs repository, reached through the code-search index (read_file id 68435062216).
RTXPRO_FIELDS = ("index", "name", "uuid", "driver_version", "memory.total", "mig.mode.current")
RTXPRO_GPUS = """\
4, NVIDIA RTX PRO 6000 Blackwell Server Edition, GPU-4c395b7a-a7e6-d90f-1ced-d96e8dd68288, 610.43.02, 97887 MiB, Disabled
5, NVIDIA RTX PRO 6000 Blackwell Server Edition, GPU-f4f5db98-143f-0a8d-47ce-956fab39a736, 610.43.02, 97887 MiB, Disabled
"""  # noqa: E501

# GeForce GTX 770: https://github.com/tutulino/Megaminer/issues/235
GTX770_FIELDS = (
    "gpu_name", "utilization.gpu", "utilization.memory", "temperature.gpu", "power.draw",
    "power.limit", "fan.speed", "pstate", "clocks.current.graphics", "clocks.current.memory",
    "power.max_limit", "power.default_limit",
)
GTX770_LINE = (
    "GeForce GTX 770, [Not Supported], [Not Supported], 52, [Not Supported], [Not Supported], "
    "52 %, P0, [Not Supported], [Not Supported], [Not Supported], [Not Supported]"
)
# A laptop GPU before and after a driver update: https://github.com/enkore/i3pystatus/pull/776
LAPTOP_FIELDS = (
    "memory.total", "memory.free", "memory.used", "temperature.gpu", "fan.speed",
    "utilization.gpu", "utilization.memory",
)
LAPTOP_NEW = "2004, 2004, 0, 44, [N/A], 0, 0"
LAPTOP_OLD = "2004, 2004, 0, 44, [Not Supported], 0, 0"
# GeForce RTX 2080, driver 440.64, bare N/A: https://github.com/Ricks-Lab/gpu-utils/issues/83
RTX2080_FIELDS = (
    "power.limit", "power.min_limit", "power.max_limit", "memory.total", "vbios_version",
    "driver_version", "name", "gpu_uuid", "power.draw", "temperature.gpu", "temperature.memory",
    "clocks.current.graphics", "clocks.sm", "clocks.mem", "utilization.gpu", "utilization.memory",
    "fan.speed", "pcie.link.width.current", "pstate",
)
RTX2080_LINE = (
    "200.00, 105.00, 292.00, 7979, 90.04.23.00.5F, 440.64, GeForce RTX 2080, "
    "GPU-22b2c6ac-2d49-4863-197c-9c469071178a, 176.98, 45, N/A, 1965, 1965, 7199, 86, 55, 100, "
    "8, P2"
)

# Driver 470's nvidia-smi refusing compute_cap (stdout), exit status 2:
# https://github.com/canonical/inference-snaps/issues/89 (the message, NVIDIA-SMI 470.256.02),
# https://github.com/canonical/inference-snaps/issues/128 ("exit status 2"),
# https://github.com/CoHDI/composable-resource-operator/issues/37 (exit code 2, stdout with the
# message followed by a blank line).
REJECT_COMPUTE_CAP = 'Field "compute_cap" is not a valid field to query.\n\n'

# Banners: A800 node https://github.com/dexmal/dexbotic/issues/41 ; container whose nvidia-smi
# (470) is older than the host driver (580) https://github.com/canonical/inference-snaps/issues/89
BANNER_535 = (
    "| NVIDIA-SMI 535.86.10              Driver Version: 535.86.10    CUDA Version: 12.2     |"
)
BANNER_MISMATCH = (
    "| NVIDIA-SMI 470.256.02   Driver Version: 580.95.05    CUDA Version: 13.0     |"
)
# `nvidia-smi -q` header, driver 450.66: https://github.com/MatthiasSchinzel/sysmon/issues/12
QUERY_450 = """\
==============NVSMI LOG==============

Timestamp                                 : Sat Oct 10 17:02:53 2020
Driver Version                            : 450.66
CUDA Version                              : 11.0
"""
# `nvidia-smi nvlink -s` on a V100 with two links down:
# https://github.com/Azure/azhpc-diagnostics/issues/73
NVLINK_V100 = """\
GPU 3: Tesla V100-SXM2-32GB (UUID: ...)
         Link 0: 25.781 GB/s
         Link 1: 25.781 GB/s
         Link 2: 25.781 GB/s
         Link 3: <inactive>
         Link 4: 25.781 GB/s
         Link 5: <inactive>
"""


def _one(fields, line):
    rows = gpu_smi.parse_csv(line, fields)
    assert len(rows) == 1
    return rows[0]


def test_healthy_h200_node_parses_every_gpu_and_its_processes():
    rows = gpu_smi.parse_csv(H200_GPUS, H200_FIELDS)
    apps = gpu_smi.parse_compute_apps(H200_APPS)
    devices = [gpu_smi.device_from_row(r, {}, processes=apps.get(r["uuid"], [])) for r in rows]

    assert [d["index"] for d in devices] == list(range(8))
    assert all(set(d) == DEVICE_KEYS for d in devices)
    first, last = devices[0], devices[7]
    assert first["uuid"] == "GPU-a44622e3-2296-6285-0a86-84d0f6c67900"
    assert first["memory_total_bytes"] == 143771 * MIB
    assert first["memory_used_bytes"] == 130013 * MIB
    assert first["utilization_percent"] == 100 and last["utilization_percent"] == 0
    assert first["processes"] == [
        {"pid": 1328667, "name": "python3.10", "used_bytes": 130004 * MIB}
    ]
    # nvidia-smi could not name the last process: the name is None, the memory still counts.
    assert last["processes"] == [{"pid": 1758887, "name": None, "used_bytes": 58060 * MIB}]
    assert all(set(p) == PROCESS_KEYS for d in devices for p in d["processes"])
    # Fields this capture did not ask for are None with a reason, never silently missing.
    assert first["pci_bus_id"] is None
    assert "not queried" in first["unavailable"]["pci_bus_id"]
    assert first["nvlink_up"] is None and first["unavailable"]["nvlink_up"]


def test_h200_full_field_set_on_driver_580():
    (row,) = gpu_smi.parse_csv(H200_FULL, H200_FULL_FIELDS)
    device = gpu_smi.device_from_row(row, {}, processes=[])
    assert set(device) == DEVICE_KEYS
    assert device["name"] == "NVIDIA H200"
    assert device["pci_bus_id"] == "00000000:00:06.0"
    assert device["memory_total_bytes"] == 143771 * MIB
    assert device["compute_capability"] == "9.0"
    assert device["ecc_enabled"] is True and device["ecc_uncorrected_volatile"] == 0
    assert device["retired_pages"] is None and device["retired_pages_pending"] is None
    assert device["unavailable"]["retired_pages"].endswith(": N/A")
    assert device["row_remap_pending"] is False and device["row_remap_failed"] is False
    assert device["power_limit_w"] == 700.0
    assert device["throttle_reasons"] == ["gpu_idle"]
    assert device["persistence_mode"] is True and device["mig_enabled"] is False
    assert (device["pcie_gen_max"], device["pcie_width_max"]) == (5, 16)


def test_long_gpu_name_and_mig_mode():
    rows = gpu_smi.parse_csv(RTXPRO_GPUS, RTXPRO_FIELDS)
    devices = [gpu_smi.device_from_row(r, {}) for r in rows]
    assert [d["index"] for d in devices] == [4, 5]
    assert devices[0]["name"] == "NVIDIA RTX PRO 6000 Blackwell Server Edition"
    assert devices[0]["memory_total_bytes"] == 97887 * MIB
    assert devices[0]["mig_enabled"] is False
    assert rows[0]["driver_version"] == "610.43.02"


def test_consumer_card_not_supported_values_become_none_with_reason():
    row = _one(GTX770_FIELDS, GTX770_LINE)
    device = gpu_smi.device_from_row(dict(row, index="0"), {})
    assert device["temperature_c"] == 52
    assert device["utilization_percent"] is None
    reason = device["unavailable"]["utilization_percent"]
    assert reason == "nvidia-smi utilization.gpu: Not Supported"
    assert device["power_limit_w"] is None
    assert "Not Supported" in device["unavailable"]["power_limit_w"]


@pytest.mark.parametrize("line, reason", [(LAPTOP_NEW, "N/A"), (LAPTOP_OLD, "Not Supported")])
def test_na_spelling_changed_between_drivers(line, reason):
    row = _one(LAPTOP_FIELDS, line)
    assert gpu_smi.missing_reason(row["fan.speed"]) == reason
    device = gpu_smi.device_from_row(dict(row, index="0"), {})
    assert device["memory_total_bytes"] == 2004 * MIB
    assert device["memory_used_bytes"] == 0
    assert device["temperature_c"] == 44


def test_bare_na_and_float_watts():
    row = _one(RTX2080_FIELDS, RTX2080_LINE)
    assert row["name"] == "GeForce RTX 2080"
    assert gpu_smi.missing_reason(row["temperature.memory"]) == "N/A"
    device = gpu_smi.device_from_row(dict(row, index="0"), {})
    assert device["power_limit_w"] == 200.0
    assert device["pcie_width_current"] == 8
    assert device["memory_total_bytes"] == 7979 * MIB


def test_old_driver_rejection_drops_only_that_field():
    calls = []

    def fake_run(args):
        calls.append(args)
        fields = args[0].split("=", 1)[1].split(",")
        if "compute_cap" in fields:
            return 2, REJECT_COMPUTE_CAP, ""
        values = {"index": "0", "clocks_event_reasons.active": "0x0000000000000041"}
        return 0, ", ".join(values.get(f, "[N/A]") for f in fields) + "\n", ""

    rows, rejected = gpu_smi.query_gpus(fake_run)
    assert len(calls) == 2
    assert gpu_smi.rejected_field(REJECT_COMPUTE_CAP) == "compute_cap"
    assert list(rejected) == ["compute_cap"]
    device = gpu_smi.device_from_row(rows[0], rejected)
    assert device["compute_capability"] is None
    assert "compute_cap" in device["unavailable"]["compute_capability"]
    assert device["throttle_reasons"] == ["gpu_idle", "hw_thermal_slowdown"]


def test_pre_r535_driver_falls_back_to_throttle_reasons():
    def fake_run(args):
        fields = args[0].split("=", 1)[1].split(",")
        for bad in ("compute_cap", "clocks_event_reasons.active"):
            if bad in fields:
                return 2, 'Field "{}" is not a valid field to query.\n\n'.format(bad), ""
        values = {"index": "0", "clocks_throttle_reasons.active": "0x0000000000000004"}
        return 0, ", ".join(values.get(f, "[N/A]") for f in fields) + "\n", ""

    rows, rejected = gpu_smi.query_gpus(fake_run)
    assert set(rejected) == {"compute_cap", "clocks_event_reasons.active"}
    device = gpu_smi.device_from_row(rows[0], rejected)
    assert device["throttle_reasons"] == ["sw_power_cap"]
    assert "throttle_reasons" not in device["unavailable"]


def test_rejected_base_field_is_an_error():
    def fake_run(args):
        return 2, 'Field "pci.bus_id" is not a valid field to query.\n\n', ""

    with pytest.raises(RuntimeError, match="pci.bus_id"):
        gpu_smi.query_gpus(fake_run)


def test_read_assembles_gpu_info_and_keeps_side_failures():
    def fake_run(args):
        if not args:
            return 0, BANNER_535 + "\n", ""
        if args[0] == "nvlink":
            return 0, NVLINK_V100.replace("GPU 3", "GPU 0"), ""
        if args[0].startswith("--query-compute-apps"):
            return 6, "", "No devices were found"
        fields = args[0].split("=", 1)[1].split(",")
        values = {"index": "0", "uuid": "GPU-x", "driver_version": "535.86.10"}
        return 0, ", ".join(values.get(f, "[N/A]") for f in fields) + "\n", ""

    info = gpu_smi.read(fake_run)
    assert info["source"] == "nvidia-smi"
    assert info["driver_version"] == "535.86.10"
    assert info["cuda_driver_version"] == "12.2"
    assert info["nvml_version"] is None and info["unavailable"]["nvml_version"]
    (device,) = info["devices"]
    assert (device["nvlink_up"], device["nvlink_down"]) == (4, 2)
    assert device["processes"] is None
    assert "exited 6" in device["unavailable"]["processes"]


def test_missing_nvidia_smi_raises_with_reason(monkeypatch):
    monkeypatch.setattr(gpu_smi, "NVIDIA_SMI", "nvidia-smi-definitely-not-installed")
    with pytest.raises(FileNotFoundError, match="not found"):
        gpu_smi.read()


@pytest.mark.parametrize(
    "text, version",
    [(BANNER_535, "12.2"), (BANNER_MISMATCH, "13.0"), (QUERY_450, "11.0"), ("no banner", None)],
)
def test_cuda_version(text, version):
    assert gpu_smi.parse_cuda_version(text) == version


def test_nvlink_status_counts_inactive_links():
    assert gpu_smi.parse_nvlink_status(NVLINK_V100) == {3: (4, 2)}
    assert gpu_smi.parse_nvlink_status("GPU 0: NVIDIA GeForce RTX 2060 (UUID: GPU-x)\n") == {}


def test_compute_apps_without_processes_is_empty():
    # Only the header came back (HAMi walkthrough above, read_file id 68435062216).
    assert gpu_smi.parse_compute_apps("gpu_uuid, pid, process_name, used_gpu_memory [MiB]\n") == {}


# -- nvml_ctypes --------------------------------------------------------------------------------


def test_nvml_ctypes_load_names_the_missing_library(monkeypatch):
    def no_library(name, *args, **kwargs):
        raise OSError("{}: cannot open shared object file: No such file or directory".format(name))

    monkeypatch.setattr(nvml_ctypes.ctypes, "CDLL", no_library)
    with pytest.raises(OSError) as caught:
        nvml_ctypes.load()
    message = str(caught.value)
    assert "NVIDIA Management Library not found" in message
    assert "libnvidia-ml.so.1" in message and "libnvidia-ml.so (" in message


@pytest.mark.parametrize(
    "struct, size",
    [
        # nvml.h: char busIdLegacy[16]; 5 x unsigned int; char busId[32]
        (nvml_ctypes.PciInfo, 16 + 5 * 4 + 32),
        # nvml.h: 3 x unsigned long long (total, free, used)
        (nvml_ctypes.Memory, 24),
        # nvml.h: unsigned int gpu, memory
        (nvml_ctypes.Utilization, 8),
        # unsigned int pid; (pad 4) unsigned long long usedGpuMemory; 2 x unsigned int
        (nvml_ctypes.ProcessInfo, 24),
        # v1: unsigned int pid; (pad 4) unsigned long long usedGpuMemory
        (nvml_ctypes.ProcessInfoV1, 16),
    ],
)
def test_nvml_struct_sizes_match_nvml_h(struct, size):
    assert ctypes.sizeof(struct) == size


def test_nvml_struct_layouts_match_pynvml():
    pynvml = pytest.importorskip("pynvml")
    pairs = [
        (nvml_ctypes.PciInfo, pynvml.nvmlPciInfo_t),
        (nvml_ctypes.Memory, pynvml.c_nvmlMemory_t),
        (nvml_ctypes.Utilization, pynvml.c_nvmlUtilization_t),
        (nvml_ctypes.ProcessInfo, pynvml.c_nvmlProcessInfo_v2_t),
    ]
    for ours, theirs in pairs:
        assert ctypes.sizeof(ours) == ctypes.sizeof(theirs)
        for (name, _), (their_name, _) in zip(ours._fields_, theirs._fields_):
            assert name == their_name
            assert getattr(ours, name).offset == getattr(theirs, their_name).offset


def test_nvml_binding_has_every_function_gpu_nvml_calls():
    source = inspect.getsource(gpu_nvml)
    called = {a or b for a, b in re.findall(r'"(nvml[A-Z]\w+)"|nvml\.(nvml[A-Z]\w+)', source)}
    assert "nvmlDeviceGetComputeRunningProcesses" in called and "nvmlInit" in called
    missing = [name for name in sorted(called) if not hasattr(nvml_ctypes.Nvml, name)]
    assert missing == []


def test_nvml_missing_symbol_raises_nvml_error():
    class EmptyLib:
        pass

    nvml = nvml_ctypes.Nvml(EmptyLib(), "libfake.so")  # type: ignore[arg-type]
    with pytest.raises(nvml_ctypes.NVMLError) as caught:
        nvml.nvmlDeviceGetCurrentClocksEventReasons(None)
    assert caught.value.value == nvml_ctypes.NVML_ERROR_FUNCTION_NOT_FOUND
    assert "nvmlDeviceGetCurrentClocksEventReasons" in str(caught.value)
