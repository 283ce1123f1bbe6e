"""Cross-node checks and the cluster report, on recorded machines saved as a cluster folder."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import fixture_data

from preflight.facts import parse_facts
from preflight.findings import Status
from preflight.registry import RunOptions, load_checks, run_cluster_checks


def _node(name: str, base: str = "h100_sxm_8x", edit=None) -> dict:  # noqa: ANN001
    data = copy.deepcopy(fixture_data(base))
    data["identity"]["hostname"] = name
    data["identity"]["boot_id_sha256"] = f"{hash(name) & (2**64 - 1):064x}"
    data["identity"]["machine_id_sha256"] = f"{hash(name + 'm') & (2**64 - 1):064x}"
    data["sweep"] = {
        "target": name, "slots": 8, "connect_s": 0.1, "probe_s": 0.3, "rtt_s": 0.0004, "clock_offset_s": 0.002,
    }
    if edit is not None:
        edit(data)
    return data


def _cluster(*nodes: dict) -> dict:
    facts = [parse_facts(n, n["sweep"]["target"]) for n in nodes]
    findings = run_cluster_checks(facts, load_checks().values(), {}, RunOptions())
    return {f.id: f for f in findings}


def _healthy(n: int = 4) -> list[dict]:
    return [_node(f"gpu{i:02d}") for i in range(1, n + 1)]


def test_identical_nodes_pass_every_cluster_check():
    findings = _cluster(*_healthy())
    bad = {i: f.observed for i, f in findings.items() if f.status not in (Status.PASS, Status.SKIP)}
    assert bad == {}
    assert findings["consistency.torch"].status == Status.PASS
    assert findings["consistency.clock_skew"].status == Status.PASS


def test_odd_torch_is_named_with_the_majority():
    def older(data):
        data["python"]["packages"]["torch"] = "2.4.0"

    nodes = _healthy(3) + [_node("gpu04", edit=older)]
    finding = _cluster(*nodes)["consistency.torch"]
    assert finding.status == Status.FAIL
    assert finding.observed.startswith("gpu04: 2.4.0")
    assert "majority: 2.5.1 (CUDA 12.4) on 3 of 4 nodes" in finding.observed
    assert "gpu04" in finding.remediation


def test_same_boot_id_is_one_machine_twice():
    twin = _node("10.20.1.11", edit=lambda d: d["identity"].update(boot_id_sha256=None))
    nodes = _healthy(2)
    twin["identity"]["boot_id_sha256"] = nodes[0]["identity"]["boot_id_sha256"]
    finding = _cluster(*nodes, twin)["consistency.distinct_machines"]
    assert finding.status == Status.FAIL
    assert "gpu01 and 10.20.1.11 are the same machine" in finding.observed


def test_cloned_machine_id_warns():
    nodes = _healthy(2)
    nodes[1]["identity"]["machine_id_sha256"] = nodes[0]["identity"]["machine_id_sha256"]
    assert _cluster(*nodes)["consistency.distinct_machines"].status == Status.WARN


def test_package_driver_gpu_count_and_env_differences():
    def odd(data):
        data["python"]["packages"]["transformers"] = "4.40.0"
        data["gpu"]["driver_version"] = "535.104.05"
        data["gpu"]["devices"].pop()
        data["network"]["env"]["NCCL_IB_DISABLE"] = "1"

    findings = _cluster(*_healthy(3), _node("gpu09", edit=odd))
    assert "transformers: gpu09 4.40.0" in findings["consistency.packages"].observed
    assert findings["consistency.driver"].status == Status.FAIL
    assert findings["consistency.gpu_count"].observed.startswith("gpu09: 7")
    env = findings["consistency.env"]
    assert env.status == Status.WARN and "NCCL_IB_DISABLE: gpu09=1" in env.observed


def test_clock_skew_corrected_for_round_trip():
    def ahead(seconds):
        return lambda d: d["sweep"].update(clock_offset_s=seconds)

    small = _cluster(*_healthy(2), _node("gpu03", edit=ahead(0.5)))
    assert small["consistency.clock_skew"].status == Status.PASS
    skewed = _cluster(*_healthy(2), _node("gpu03", edit=ahead(4.0)))
    assert skewed["consistency.clock_skew"].status == Status.WARN
    assert "gpu03 is 3.998 s ahead" in skewed["consistency.clock_skew"].observed
    far = _cluster(*_healthy(2), _node("gpu03", edit=ahead(-120.0)))
    assert far["consistency.clock_skew"].status == Status.FAIL


def test_name_resolving_to_loopback_or_differently_on_some_node():
    names = ["gpu01", "gpu02"]

    def resolved(mapping):
        return lambda d: d["network"].update(resolved=mapping)

    good = {"gpu01": ["10.20.1.11"], "gpu02": ["10.20.1.12"]}
    n1 = _node("gpu01", edit=resolved({**good, "gpu01": ["127.0.1.1"]}))
    n2 = _node("gpu02", edit=resolved(good))
    finding = _cluster(n1, n2)["consistency.name_resolution"]
    assert finding.status == Status.FAIL
    assert "gpu01 resolves to 127.0.1.1 on gpu01" in finding.observed
    n1 = _node("gpu01", edit=resolved(good))
    n2 = _node("gpu02", edit=resolved({**good, "gpu01": ["192.168.5.11"]}))
    assert _cluster(n1, n2)["consistency.name_resolution"].status == Status.WARN
    n2 = _node("gpu02", edit=resolved({**good, "gpu01": []}))
    assert "gpu01 does not resolve on gpu02" in _cluster(n1, n2)["consistency.name_resolution"].observed
    assert names


def test_infiniband_on_some_nodes_only():
    def no_ib(data):
        data["network"]["infiniband"] = []

    finding = _cluster(*_healthy(2), _node("gpu03", edit=no_ib))["consistency.infiniband"]
    assert finding.status == Status.WARN and "none on gpu03" in finding.observed


@pytest.fixture
def saved_cluster(tmp_path: Path) -> Path:
    folder = tmp_path / "facts"
    folder.mkdir()

    def older(data):
        data["python"]["packages"]["torch"] = "2.4.0"

    nodes = _healthy(3) + [_node("gpu04", edit=older)]
    small_shm = _node("gpu05", edit=lambda d: d["system"]["shm"].update(size_bytes=64 << 20, free_bytes=64 << 20))
    for node in [*nodes, small_shm]:
        (folder / f"{node['sweep']['target']}.json").write_text(json.dumps(node))
    return folder


def test_replay_folder_as_a_cluster_json(run_cli, saved_cluster, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("replay", str(saved_cluster), "--json")
    doc = json.loads(out)
    assert code == 1 and err == ""
    assert [n["host"] for n in doc["nodes"]] == ["gpu01", "gpu02", "gpu03", "gpu04", "gpu05"]
    assert all(n["reached"] and n["facts"]["schema_version"] == 1 for n in doc["nodes"])
    cluster = {f["id"]: f for f in doc["cluster_findings"]}
    assert cluster["consistency.torch"]["status"] == "fail"
    shm = next(f for f in doc["nodes"][4]["findings"] if f["id"] == "system.shm_size")
    assert shm["status"] == "fail"


def test_replay_folder_terminal_groups_nodes(run_cli, saved_cluster, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli("replay", str(saved_cluster))
    assert code == 1
    assert "5 node(s), 5 reached" in out
    assert "gpu04: 2.4.0" in out
    assert "NOT READY" in out


def test_replay_empty_folder_is_an_input_error(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run_cli("replay", str(empty))
    assert code == 2 and "no facts files" in err and len(err.strip().splitlines()) == 1


def test_infiniband_port_down_or_slower_on_one_node():
    def port_down(data):
        ib = next(p for p in data["network"]["infiniband"] if (p["link_layer"] or "").lower() == "infiniband")
        ib["state"] = "DOWN"

    findings = _cluster(*_healthy(2), _node("gpu03", edit=port_down))
    assert findings["net.infiniband_fabric"].status == Status.FAIL
    assert findings["net.infiniband_fabric"].observed.startswith("gpu03 ")

    def slow(data):
        for p in data["network"]["infiniband"]:
            if (p["link_layer"] or "").lower() == "infiniband":
                p["rate"] = "200 Gb/sec (4X HDR)"

    finding = _cluster(*_healthy(2), _node("gpu03", edit=slow))["net.infiniband_fabric"]
    assert finding.status == Status.WARN and "gpu03 mlx5_0/1: 200 Gb/sec" in finding.observed
