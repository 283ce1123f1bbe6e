"""Expected benchmark figures from compat_matrix/bench.toml: every figure sourced, NVML names
resolve, the PCIe formula gives PCI-SIG's per-direction numbers, bad data names file:line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from preflight.bench.expectations import BENCH_FILE, Expected, load_expectations
from preflight.compat import FILES, shipped_folder, shipped_matrix
from preflight.errors import InputError
from preflight.toml_text import parse_toml

FIXTURES = Path(__file__).parent / "fixtures"
GIB = 1024**3


def fixture_gpu_names() -> set[str]:
    names = set()
    for path in FIXTURES.glob("*.json"):
        data = json.loads(path.read_text(encoding="utf-8"))
        gpu = data.get("gpu") if isinstance(data, dict) else None
        for device in (gpu or {}).get("devices") or []:
            names.add(device["name"])
    return names


def test_every_entry_is_sourced_and_positive():
    data = parse_toml((shipped_folder() / BENCH_FILE).read_text(encoding="utf-8"))
    rows = [*data["memory_bandwidth"], *data["allreduce"], *data["pcie"], data["nic"]]
    for row in rows:
        assert row["source"].strip(), row
        assert row["verified"] == "2026-11-28", row
    for row in data["memory_bandwidth"]:
        assert row["bytes_per_s"] > 0
    for row in data["allreduce"]:
        assert row["busbw_bytes_per_s"] > 0 and row["at_bytes"] > 0 and row["gpus_per_node"] > 0
    known = {g.name for g in shipped_matrix().gpus}
    assert {row["gpu"] for row in [*data["memory_bandwidth"], *data["allreduce"]]} <= known


def test_nvml_names_from_fixtures_resolve():
    expectations = load_expectations()
    names = fixture_gpu_names()
    assert {"NVIDIA H100 80GB HBM3", "NVIDIA H200", "NVIDIA A100-SXM4-40GB", "Tesla T4"} <= names
    assert expectations.memory_bandwidth("NVIDIA H100 80GB HBM3").value == 3.35e12
    assert expectations.memory_bandwidth("NVIDIA H200").value == 4.8e12
    assert expectations.memory_bandwidth("NVIDIA A100-SXM4-40GB").value == 1.555e12
    assert expectations.memory_bandwidth("Tesla T4").value == 300e9
    assert expectations.memory_bandwidth("H100 SXM5 80GB") == expectations.memory_bandwidth("NVIDIA H100 80GB HBM3")
    # Sourced nowhere, so no expectation (not a guess):
    assert expectations.memory_bandwidth("Tesla V100-SXM2-16GB") is None
    assert expectations.memory_bandwidth("NVIDIA GeForce RTX 4090") is None
    assert expectations.memory_bandwidth("no such gpu") is None


def test_allreduce_only_compares_at_or_above_the_measured_size():
    expectations = load_expectations()
    found = expectations.allreduce_busbw("NVIDIA H100 80GB HBM3", 8, True, 16 * GIB)
    assert found == Expected(460e9, found.source, found.note, 16 * GIB)
    assert "nd96isr_h100_v5.conf" in found.source
    assert expectations.allreduce_busbw("NVIDIA H100 80GB HBM3", 8, True, 1 * GIB) is None
    assert "17179869184 bytes" in expectations.why_no_allreduce("NVIDIA H100 80GB HBM3", 8, True, 1 * GIB)
    assert expectations.allreduce_busbw("NVIDIA A100-SXM4-40GB", 8, True, 8 * GIB).value == 228e9
    assert expectations.allreduce_busbw("NVIDIA H200", 8, True, 32 * GIB).value == 431e9
    # No sourced figure for PCIe systems or other GPU counts:
    assert expectations.allreduce_busbw("NVIDIA H100 80GB HBM3", 8, False, 16 * GIB) is None
    assert expectations.allreduce_busbw("NVIDIA H100 80GB HBM3", 4, True, 16 * GIB) is None
    assert "no sourced all-reduce figure" in expectations.why_no_allreduce("NVIDIA H100 80GB HBM3", 4, True, 16 * GIB)
    assert expectations.why_no_allreduce("NVIDIA H200", 8, True, 16 * GIB) == ""


def test_pcie_formula():
    expectations = load_expectations()
    assert expectations.pcie_bandwidth(4, 16).value == pytest.approx(31.5e9, rel=1e-3)
    assert expectations.pcie_bandwidth(5, 16).value == pytest.approx(63.0e9, rel=1e-3)
    assert expectations.pcie_bandwidth(3, 16).value == pytest.approx(15.75e9, rel=1e-3)
    assert expectations.pcie_bandwidth(1, 1).value == pytest.approx(250e6)
    assert expectations.pcie_bandwidth(2, 1).value == pytest.approx(500e6)
    assert expectations.pcie_bandwidth(6, 16).value == pytest.approx(128e9)
    # A downtrained link: gen4 x8 is half of gen4 x16.
    assert expectations.pcie_bandwidth(4, 8).value * 2 == pytest.approx(expectations.pcie_bandwidth(4, 16).value)
    assert expectations.pcie_bandwidth(7, 16) is None
    assert expectations.pcie_bandwidth(4, 0) is None


def test_nic_bandwidth():
    expectations = load_expectations()
    assert expectations.nic_bandwidth(100_000).value == 12.5e9
    assert expectations.nic_bandwidth(400_000).value == 50e9
    assert "Mbits/sec" in expectations.nic_bandwidth(1000).source
    with pytest.raises(ValueError):
        expectations.nic_bandwidth(-1)


def test_matrix_folder_without_bench_toml_uses_the_shipped_one(tmp_path):
    for name in FILES:
        shutil.copy(shipped_folder() / name, tmp_path / name)
    expectations = load_expectations(tmp_path)
    assert expectations.origin == str(shipped_folder() / BENCH_FILE)
    assert expectations.memory_bandwidth("NVIDIA H200").value == 4.8e12
    assert load_expectations(tmp_path / "missing-folder").origin == str(shipped_folder() / BENCH_FILE)


def _folder_with(tmp_path: Path, bench_text: str) -> Path:
    (tmp_path / BENCH_FILE).write_text(bench_text, encoding="utf-8")
    return tmp_path


NIC = '[nic]\nsource = "s"\nverified = "2026-11-28"\n'


def test_bad_toml_names_file_and_line(tmp_path):
    folder = _folder_with(tmp_path, NIC + "\n[[pcie]]\ngen = = 4\n")
    with pytest.raises(InputError) as error:
        load_expectations(folder)
    assert f"{folder / BENCH_FILE}:6:" in str(error.value)


def test_bad_entries_name_their_line(tmp_path):
    entry = '[[memory_bandwidth]]\ngpu = "H200"\nbytes_per_s = {value}\nsource = "s"\nverified = "2026-11-28"\n'
    folder = _folder_with(tmp_path, NIC + "\n" + entry.format(value="4.8e12") + "\n" + entry.format(value="-1"))
    with pytest.raises(InputError) as error:
        load_expectations(folder)
    assert f"{folder / BENCH_FILE}:11:" in str(error.value) and "bytes_per_s" in str(error.value)

    (folder / BENCH_FILE).write_text(NIC + '\n[[memory_bandwidth]]\ngpu = "H200"\nbytes_per_s = 1.0\n', encoding="utf-8")
    with pytest.raises(InputError, match=r":5: entry without source or verified date"):
        load_expectations(folder)

    (folder / BENCH_FILE).write_text(
        NIC + '\n[[memory_bandwidth]]\ngpu = "H9000"\nbytes_per_s = 1.0\nsource = "s"\nverified = "x"\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"gpu 'H9000' is not a name in gpus.toml"):
        load_expectations(folder)
