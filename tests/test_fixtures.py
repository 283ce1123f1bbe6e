"""Every recorded fixture is valid facts, and each one's verdict is what that machine deserves."""

from __future__ import annotations

import json

import jsonschema
import pytest

from preflight.facts import load_facts
from preflight.facts_schema import SCHEMA_PATH, render
from preflight.findings import Status, worst

from conftest import FIXTURES, fixture_facts, judge

ALL = sorted(p.stem for p in FIXTURES.glob("*.json"))


def test_shipped_schema_is_generated_from_the_dataclasses():
    assert SCHEMA_PATH.read_text() == render(), "run `python -m preflight.facts_schema`"


@pytest.mark.parametrize("name", ALL)
def test_fixture_validates_and_names_its_source(name):
    data = json.loads((FIXTURES / f"{name}.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    facts = load_facts(FIXTURES / f"{name}.json")
    assert facts.note and ("github" in facts.note.lower() or "#" in facts.note or "probe" in facts.note)


HEALTHY = ["h100_sxm_8x", "a100_sxm_8x", "v100_16gb", "t4_cloud_vm", "rtx4090_workstation", "no_gpu"]


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
