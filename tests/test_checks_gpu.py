"""GPU checks on recorded machines, healthy and with one fault injected into the facts."""

from __future__ import annotations

from conftest import fixture_facts, judge

from preflight.findings import Status

MIB = 1 << 20


def _gpu(data, i):  # noqa: ANN001, ANN202
    return data["gpu"]["devices"][i]


def test_nvml_fails_when_the_driver_module_is_loaded_but_nvml_does_not_answer():
    def broken(data):
        data["gpu"].update(source=None, devices=[], unavailable={"pynvml": "Driver/library version mismatch"})

    findings = judge(fixture_facts("h100_sxm_8x", broken))
    assert findings["gpu.nvml_responds"].status == Status.FAIL
    assert "mismatch" in findings["gpu.nvml_responds"].observed


def test_nvml_fails_when_gpus_are_expected_but_none_answer():
    findings = judge(fixture_facts("no_gpu"), expect_gpus=8)
    assert findings["gpu.nvml_responds"].status == Status.FAIL
    assert findings["gpu.count"].status == Status.FAIL


def test_gpu_count():
    facts = fixture_facts("h100_sxm_8x")
    assert judge(facts, expect_gpus=8)["gpu.count"].status == Status.PASS
    missing = judge(fixture_facts("h100_sxm_8x", lambda d: d["gpu"]["devices"].pop()), expect_gpus=8)
    assert missing["gpu.count"].status == Status.FAIL
    assert missing["gpu.count"].observed == "7 GPU(s) visible"
    assert judge(facts)["gpu.count"].status == Status.SKIP


def test_memory_in_use_lists_processes_and_pids():
    finding = judge(fixture_facts("h100_stray_process"))["gpu.memory_in_use"]
    assert "72790 MiB" in finding.observed
    pids = {p.pid for d in fixture_facts("h100_stray_process").gpu.devices for p in d.processes or []}
    assert pids and all(str(pid) in finding.remediation for pid in pids)
    assert finding.evidence["processes"]


def test_memory_in_use_small_process_warns_and_threshold_is_configurable():
    def small(data):
        dev = _gpu(data, 3)
        dev["memory_used_bytes"] = 500 * MIB
        dev["processes"] = [{"pid": 4242, "name": "python", "used_bytes": 500 * MIB}]

    facts = fixture_facts("h100_sxm_8x", small)
    assert judge(facts)["gpu.memory_in_use"].status == Status.WARN
    strict = judge(facts, thresholds={"gpu.memory_in_use": {"max_used_mib": 100}})
    assert strict["gpu.memory_in_use"].status == Status.FAIL
    assert "pid 4242" in strict["gpu.memory_in_use"].evidence["processes"][0]


def test_ecc_disabled_consumer_card_is_skipped_not_passed():
    finding = judge(fixture_facts("rtx4090_workstation"))["gpu.ecc_uncorrected"]
    assert finding.status == Status.SKIP
    assert "ECC is disabled" in finding.observed


def test_row_remap_pending_warns():
    def pending(data):
        _gpu(data, 1)["row_remap_pending"] = True

    finding = judge(fixture_facts("h100_sxm_8x", pending))["gpu.row_remap"]
    assert finding.status == Status.WARN
    assert "GPU 1" in finding.observed and "nvidia-smi -r" in finding.remediation


def test_retired_pages_on_v100():
    assert judge(fixture_facts("v100_16gb"))["gpu.retired_pages"].status == Status.PASS

    def many(data):
        _gpu(data, 2)["retired_pages"] = 64

    assert judge(fixture_facts("v100_16gb", many))["gpu.retired_pages"].status == Status.WARN

    def pending(data):
        _gpu(data, 0)["retired_pages_pending"] = True

    assert judge(fixture_facts("v100_16gb", pending))["gpu.retired_pages"].status == Status.WARN
    assert judge(fixture_facts("h100_sxm_8x"))["gpu.retired_pages"].status == Status.SKIP


def test_hardware_slowdown_at_idle_warns_but_idle_and_power_cap_do_not():
    def slowed(data):
        _gpu(data, 6)["throttle_reasons"] = ["gpu_idle", "hw_thermal_slowdown"]

    assert judge(fixture_facts("h100_sxm_8x"))["gpu.idle_throttle"].status == Status.PASS
    finding = judge(fixture_facts("h100_sxm_8x", slowed))["gpu.idle_throttle"]
    assert finding.status == Status.WARN and "GPU 6: hw_thermal_slowdown" in finding.observed


def test_persistence_mode():
    assert judge(fixture_facts("h100_sxm_8x"))["gpu.persistence_mode"].status == Status.PASS
    finding = judge(fixture_facts("t4_cloud_vm"))["gpu.persistence_mode"]
    assert finding.status == Status.WARN and "nvidia-smi -pm 1" in finding.remediation


def test_pcie_width_downtrained_warns_but_idle_generation_drop_does_not():
    def idle_gen(data):
        _gpu(data, 0)["pcie_gen_current"] = 1

    def narrow(data):
        _gpu(data, 4)["pcie_width_current"] = 8

    assert judge(fixture_facts("h100_sxm_8x", idle_gen))["gpu.pcie_link"].status == Status.PASS
    finding = judge(fixture_facts("h100_sxm_8x", narrow))["gpu.pcie_link"]
    assert finding.status == Status.WARN and "GPU 4: x8 of x16" in finding.observed


def test_mig():
    def mig(data):
        _gpu(data, 0)["mig_enabled"] = True

    assert judge(fixture_facts("a100_sxm_8x"))["gpu.mig_disabled"].status == Status.PASS
    assert judge(fixture_facts("a100_sxm_8x", mig))["gpu.mig_disabled"].status == Status.WARN


def test_temperature_thresholds():
    def hot(c):
        return lambda data: _gpu(data, 2).__setitem__("temperature_c", c)

    assert judge(fixture_facts("h100_sxm_8x"))["gpu.temperature"].status == Status.PASS
    assert judge(fixture_facts("h100_sxm_8x", hot(84)))["gpu.temperature"].status == Status.WARN
    assert judge(fixture_facts("h100_sxm_8x", hot(93)))["gpu.temperature"].status == Status.FAIL


def test_nvlink_down_link_fails_and_pcie_only_skips():
    def link_down(data):
        _gpu(data, 5).update(nvlink_up=17, nvlink_down=1)

    assert judge(fixture_facts("h100_sxm_8x"))["gpu.nvlink"].status == Status.PASS
    finding = judge(fixture_facts("h100_sxm_8x", link_down))["gpu.nvlink"]
    assert finding.status == Status.FAIL and "GPU 5: 17 up, 1 down" in finding.observed
    assert judge(fixture_facts("t4_cloud_vm"))["gpu.nvlink"].status == Status.SKIP


def test_a_process_with_unknown_memory_still_lists_its_pid():
    def unknown(data):
        _gpu(data, 0)["processes"] = [{"pid": 31337, "name": None, "used_bytes": None}]

    finding = judge(fixture_facts("h100_sxm_8x", unknown))["gpu.memory_in_use"]
    assert finding.status == Status.WARN
    assert "pid 31337 ? (? MiB)" in finding.observed


def test_a_check_that_raises_becomes_an_error_finding_not_a_crash():
    from preflight.registry import CheckSpec, RunOptions, run_checks

    def broken(ctx):  # noqa: ANN001, ANN202
        return 1 / 0

    spec = CheckSpec("gpu.broken", "GPUs", "broken", broken, {})
    (finding,) = run_checks(fixture_facts("h100_sxm_8x"), [spec], {}, RunOptions())
    assert finding.status == Status.ERROR
    assert "ZeroDivisionError" in finding.observed
