"""Every recorded fixture is valid facts, and each one's verdict is what that machine deserves."""

from __future__ import annotations

import json

import jsonschema
import pytest
from conftest import FIXTURES, fixture_facts, judge

from preflight.facts import load_facts
from preflight.facts_schema import SCHEMA_PATH, render
from preflight.findings import Status, worst

ALL = sorted(p.stem for p in FIXTURES.glob("*.json"))


def test_shipped_schema_is_generated_from_the_dataclasses():
    assert SCHEMA_PATH.read_text() == render(), "run `python -m preflight.facts_schema`"


@pytest.mark.parametrize("name", ALL)
def test_fixture_validates_and_names_its_source(name):
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    facts = load_facts(FIXTURES / f"{name}.json")
    note = (facts.note or "").lower()
    assert any(word in note for word in ("github", "#", "probe", "recorded")), "the note must name the source"


HEALTHY = [
    "h100_sxm_8x", "a100_sxm_8x", "v100_16gb", "t4_cloud_vm", "rtx4090_workstation", "no_gpu",
    "h200_vm", "h200_vm_nvml_ctypes", "h200_vm_nvidia_smi",
]


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_machines_do_not_fail(name):
    findings = judge(fixture_facts(name))
    failed = {i: f.observed for i, f in findings.items() if f.status >= Status.FAIL}
    assert failed == {}


@pytest.mark.parametrize(
    ("name", "check_id", "status"),
    [
        ("h100_stray_process", "gpu.memory_in_use", Status.FAIL),
        ("container_small_shm", "system.shm_size", Status.FAIL),
        ("a100_ecc_errors", "gpu.ecc_uncorrected", Status.FAIL),
        ("a100_ecc_errors", "gpu.row_remap", Status.FAIL),
        ("hostname_loopback", "net.hostname_loopback", Status.WARN),
    ],
)
def test_broken_variant_is_caught(name, check_id, status):
    findings = judge(fixture_facts(name))
    assert findings[check_id].status == status
    assert findings[check_id].remediation


@pytest.mark.parametrize("name", ["h100_stray_process", "container_small_shm", "a100_ecc_errors"])
def test_broken_variant_fails_the_run(name):
    assert worst(list(judge(fixture_facts(name)).values())) >= Status.FAIL


def test_no_gpu_machine_skips_gpu_checks_with_the_reason():
    findings = judge(fixture_facts("no_gpu"))
    gpu_checks = [f for f in findings.values() if f.id.startswith("gpu.")]
    assert all(f.status == Status.SKIP for f in gpu_checks)
    assert "NVML Shared Library Not Found" in findings["gpu.nvml_responds"].observed


# Real facts recorded on a GPU machine by scripts/verify_gpu_node.sh ---------------------------

STABLE_GPU_FIELDS = (
    "name", "uuid", "pci_bus_id", "memory_total_bytes", "compute_capability", "ecc_enabled",
    "ecc_uncorrected_volatile", "row_remap_pending", "row_remap_failed", "power_limit_w",
    "persistence_mode", "mig_enabled", "pcie_gen_max", "pcie_width_current", "pcie_width_max",
)


@pytest.mark.parametrize("other", ["h200_vm_nvml_ctypes", "h200_vm_nvidia_smi"])
def test_real_gpu_sources_agree_with_pynvml(other):
    ref, alt = fixture_facts("h200_vm").gpu, fixture_facts(other).gpu
    assert alt.source == {"h200_vm_nvml_ctypes": "nvml-ctypes", "h200_vm_nvidia_smi": "nvidia-smi"}[other]
    assert (alt.driver_version, alt.cuda_driver_version) == (ref.driver_version, ref.cuda_driver_version)
    for a, b in zip(ref.devices, alt.devices, strict=True):
        for field in STABLE_GPU_FIELDS:
            assert getattr(a, field) == getattr(b, field), field


def test_real_h200_is_ready_and_real_stray_process_is_named():
    healthy = judge(fixture_facts("h200_vm"))
    assert worst(list(healthy.values())) < Status.FAIL
    assert healthy["gpu.memory_in_use"].status == Status.PASS  # ~615 MiB driver-reserved at idle
    stray_facts = fixture_facts("h200_vm_stray_process")
    (proc,) = stray_facts.gpu.devices[0].processes or []
    finding = judge(stray_facts)["gpu.memory_in_use"]
    assert finding.status == Status.FAIL
    assert f"pid {proc.pid} {proc.name}" in finding.observed and f"kill {proc.pid}" in finding.remediation
