"""The benchmark on this machine (real gloo ranks), its arithmetic, the straggler search, and the
bench.* checks on real results recorded on an H200 (``tests/fixtures/bench/h200_single``) and on
copies of them with one fault each."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import psutil
import pytest

from preflight.bench.command import parse_size
from preflight.bench.remote.rank import bisect_rounds, busbw_factor, conclude, first_rounds
from preflight.bench.run import _aggregate

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="runs real torch.distributed ranks (torch is in the test extra)")

H200 = Path(__file__).parent / "fixtures" / "bench" / "h200_single"
MARKER = "preflight-bench"


def _leftovers() -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        argv = proc.info["cmdline"] or []
        role = next((a for a in argv[-2:] if a in ("preflight-bench-rank", "preflight-bench-launcher")), None)
        if role:
            found.append(f"{proc.info['pid']}: {role}")
    return found


def _settled_leftovers(wait_s: float = 5.0) -> list[str]:
    """Benchmark processes still there after ``wait_s``: a killed process can take a moment to go."""
    import time

    deadline = time.monotonic() + wait_s
    while (found := _leftovers()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


# --- arithmetic -------------------------------------------------------------------------------------


def test_busbw_is_nccl_tests_definition():
    assert busbw_factor(1) == 0.0
    assert busbw_factor(2) == 1.0
    assert busbw_factor(8) == pytest.approx(1.75)
    rows = {0: {"seconds": 0.010, "count": 262144, "iters": 9, "wrong": 0},
            1: {"seconds": 0.012, "count": 262144, "iters": 9, "wrong": 3}}
    (result,) = _aggregate({1 << 20: rows}, world=2)
    assert result.seconds_avg == pytest.approx(0.011) and result.seconds_max == pytest.approx(0.012)
    assert result.algbw == pytest.approx((1 << 20) / 0.011)
    assert result.busbw == pytest.approx(result.algbw * 1.0)
    assert result.wrong == 3


def test_a_size_some_rank_never_reported_is_left_out():
    rows = {0: {"seconds": 0.01, "count": 1, "iters": 1, "wrong": 0}}
    assert _aggregate({4: rows}, world=2) == []


@pytest.mark.parametrize("text,value", [("1M", 1 << 20), ("1GiB", 1 << 30), ("64m", 64 << 20), ("4096", 4096),
                                        ("0.5G", 1 << 29)])
def test_sizes_are_powers_of_two_as_nccl_tests(text, value):
    assert parse_size(text) == value


# --- straggler search ------------------------------------------------------------------------------


def test_every_node_is_paired_once_then_the_odd_one_out():
    assert first_rounds(4) == [[(0, 1), (2, 3)]]
    assert first_rounds(3) == [[(0, 1)], [(2, 0)]]
    assert first_rounds(2) == [[(0, 1)]]


def test_a_slow_node_is_told_apart_from_its_partner():
    measured = {(0, 1): 0.1, (2, 0): 0.8}  # node 1 slow, or the 0-1 link?
    assert bisect_rounds(measured, 0.6, 3) == [[(1, 2)]]
    measured[(1, 2)] = 0.1
    assert conclude(measured, 0.6) == ([1], [])


def test_a_slow_link_between_two_good_nodes():
    measured = {(0, 1): 0.1, (2, 3): 0.8, (0, 2): 0.8, (1, 3): 0.8}
    assert conclude(measured, 0.6) == ([], [(0, 1)])


def test_uniformly_slow_pairs_name_nobody():
    assert conclude({(0, 1): 0.5, (2, 3): 0.5}, 0.6) == ([], [])


# --- judging real GPU results ------------------------------------------------------------------------


def _replay(run_cli, folder: Path) -> dict:
    code, out, err = run_cli("replay", str(folder), "--json", "--only", "bench.*")
    assert "Traceback" not in err
    doc = json.loads(out)
    return {f["id"]: f for f in doc["cluster_findings"]} | {"_code": code}


def _variant(tmp_path: Path, change) -> Path:  # noqa: ANN001 - a function editing the bench document
    folder = tmp_path / "variant"
    shutil.copytree(H200, folder)
    doc = json.loads((folder / "bench.json").read_text())
    change(doc)
    (folder / "bench.json").write_text(json.dumps(doc))
    return folder


def test_real_h200_results(run_cli):
    findings = _replay(run_cli, H200)
    assert findings["bench.completed"]["status"] == "pass"
    assert findings["bench.allreduce_correct"]["status"] == "pass"
    assert findings["bench.gpu_memory_usable"]["status"] == "pass"
    assert "124.0 GiB allocated and verified" in findings["bench.gpu_memory_usable"]["observed"]
    # 4.15 TB/s device-to-device against the H200 datasheet's 4.8 TB/s
    assert findings["bench.gpu_memory_bandwidth"]["status"] == "pass"
    assert "4149.39 GB/s of 4800.00 GB/s" in findings["bench.gpu_memory_bandwidth"]["observed"]
    # pinned copies at 54.8 / 55.2 GB/s on a gen5 x16 link (63 GB/s)
    assert findings["bench.pcie_bandwidth"]["status"] == "pass"
    assert findings["bench.nccl_messages"]["status"] == "pass"  # 96 real NCCL 2.28.9 lines, sockets, no IB
    assert findings["bench.allreduce_bandwidth"]["status"] == "skip"  # one rank: nothing crosses a bus


def test_half_speed_host_copies_warn(run_cli, tmp_path):
    # what this VM really showed when the copies ran into memory freed right before (27.6 GB/s)
    finding = _replay(run_cli, _variant(tmp_path, lambda d: d["memory"][0].update(h2d_bps=27.65e9)))
    pcie = finding["bench.pcie_bandwidth"]
    assert pcie["status"] == "warn" and "H2D 27.65 GB/s" in pcie["observed"] and "gen5 x16" in pcie["observed"]


def test_wrong_sums_fail(run_cli, tmp_path):
    folder = _variant(tmp_path, lambda d: d["sizes"][-1].update(wrong=17))
    finding = _replay(run_cli, folder)["bench.allreduce_correct"]
    assert finding["status"] == "fail" and "17 wrong elements at 1073741824 B" in finding["observed"]


def test_memory_that_cannot_be_allocated_fails(run_cli, tmp_path):
    def short(doc: dict) -> None:
        doc["memory"][0].update(usable_bytes=40 << 30, allocation_error="CUDA out of memory. Tried to allocate 1.00 GiB")
    finding = _replay(run_cli, _variant(tmp_path, short))["bench.gpu_memory_usable"]
    assert finding["status"] == "fail" and "40.0 of 124.8 GiB" in finding["observed"]
    assert "out of memory" in finding["observed"]


def test_slow_device_memory_warns(run_cli, tmp_path):
    finding = _replay(run_cli, _variant(tmp_path, lambda d: d["memory"][0].update(d2d_bps=1.9e12)))
    assert finding["bench.gpu_memory_bandwidth"]["status"] == "warn"
    assert "datasheet 4800.00 GB/s" in finding["bench.gpu_memory_bandwidth"]["observed"]


def test_a_hung_stage_fails_naming_it(run_cli, tmp_path):
    def hang(doc: dict) -> None:
        doc["problems"] = [{"stage": "rendezvous", "kind": "hang", "nodes": ["vm"], "ranks": [0],
                            "message": "rendezvous did not finish within 60 s", "seconds": 60.2}]
    result = _replay(run_cli, _variant(tmp_path, hang))
    finding = result["bench.completed"]
    assert result["_code"] == 1 and finding["status"] == "fail"
    assert finding["observed"].startswith("rendezvous stage hung on vm (ranks 0) after 60.2 s")
    assert "MASTER_PORT" in finding["remediation"]


def test_nccl_sockets_where_infiniband_is_up_warns(run_cli, tmp_path):
    def sockets(doc: dict) -> None:
        doc["ib_nodes"] = ["vm"]
        doc["nccl_lines"] = {"vm": [
            "vm:1234:1234 [0] NCCL INFO NET/Socket : Using [0]eth0:10.0.0.5<0>",
            "vm:1234:1234 [0] NCCL INFO Using network Socket",
        ]}
    finding = _replay(run_cli, _variant(tmp_path, sockets))["bench.nccl_messages"]
    assert finding["status"] == "warn", finding["observed"]
    assert "NCCL_IB" in finding["remediation"] or "ibverbs" in finding["remediation"]


# --- real runs on this machine ---------------------------------------------------------------------


@needs_torch
def test_bench_runs_real_gloo_ranks_here(run_cli, tmp_path):
    code, out, err = run_cli("bench", "--cpu-ranks", "2", "--max-size", "4M", "--seconds-per-size", "0.2", "--json",
                             "--save-facts", str(tmp_path / "saved"))
    assert "Traceback" not in err
    doc = json.loads(out)
    bench = doc["benchmark"]
    assert bench["backend"] == "gloo" and bench["world_size"] == 2
    assert [s["bytes"] for s in bench["sizes"]] == [1 << 20, 4 << 20]
    assert all(s["wrong"] == 0 and s["busbw"] > 0 and s["iters"] >= 3 for s in bench["sizes"])
    assert bench["memory"][0]["device"] == "host" and bench["memory"][0]["host_bps"] > 1e8
    assert code == 0
    findings = {f["id"]: f["status"] for f in doc["cluster_findings"]}
    assert findings["bench.completed"] == "pass" and findings["bench.allreduce_correct"] == "pass"
    assert (tmp_path / "saved" / "bench.json").is_file()
    assert not _settled_leftovers()


@needs_torch
def test_a_stage_past_its_deadline_is_killed_and_named(run_cli):
    # importing torch takes seconds here: a 0.05 s import deadline must trip, and kill the ranks
    code, out, err = run_cli("bench", "--cpu-ranks", "2", "--max-size", "1M", "--json",
                             "--stage-timeout", "import=0.05")
    doc = json.loads(out)
    finding = {f["id"]: f for f in doc["cluster_findings"]}["bench.completed"]
    assert code == 1 and finding["status"] == "fail"
    assert finding["evidence"]["stage"] == "import" and finding["evidence"]["kind"] == "hang"
    assert doc["benchmark"]["killed"]
    assert not _settled_leftovers()


@needs_torch
def test_a_python_without_torch_fails_at_import(run_cli):
    python = shutil.which("python3", path="/usr/bin")
    if python is None or python == sys.executable:
        pytest.skip("no separate system python3")
    code, out, _ = run_cli("bench", "--cpu-ranks", "1", "--python", python, "--json")
    finding = {f["id"]: f for f in json.loads(out)["cluster_findings"]}["bench.completed"]
    assert code == 1 and finding["evidence"]["stage"] == "import"
    assert "torch" in finding["observed"]
    assert not _settled_leftovers()


@pytest.mark.parametrize("args,message", [
    (["--stage-timeout", "warmup=3"], "STAGE=SECONDS"),
    (["--min-size", "1G", "--max-size", "1M"], "larger than --max-size"),
    (["--max-size", "lots"], "expected a size"),
    (["--backend", "nccl"], "no GPU"),
    (["--memory-fraction", "1.5"], "--memory-fraction"),
])
def test_bad_options_are_one_line_errors(capsys, args, message):
    from preflight.cli import main

    try:
        code = main(["bench", *args])
    except SystemExit as exc:  # argparse's own usage errors exit 2 from inside parse_args
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_results_round_trip_through_json(tmp_path):
    from preflight.cluster.command import load_bench

    bench = load_bench(H200)
    folder = tmp_path / "again"
    folder.mkdir()
    (folder / "bench.json").write_text(json.dumps(dataclasses.asdict(bench)))
    assert load_bench(folder) == bench


def test_corrupt_bench_json_is_an_input_error(run_cli, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(H200, folder)
    (folder / "bench.json").write_text('{"backend": "nccl", "world_size": "two"}')
    code, _, err = run_cli("replay", str(folder))
    assert code == 2 and "bench.json" in err and "Traceback" not in err


@needs_torch
def test_ctrl_c_stops_every_rank():
    import signal
    import subprocess
    import time

    preflight = Path(sys.executable).parent / "preflight"
    proc = subprocess.Popen([str(preflight), "bench", "--cpu-ranks", "2", "--max-size", "64M",
                             "--seconds-per-size", "3", "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while len([p for p in _leftovers() if "preflight-bench-rank" in p]) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len([p for p in _leftovers() if "preflight-bench-rank" in p]) == 2, "the ranks never started"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    time.sleep(0.5)
    assert not _settled_leftovers()


# --- expectations from the node's facts -------------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures"


def test_the_default_sweep_reaches_the_size_the_sourced_figure_was_measured_at():
    from preflight.bench.command import default_gpu_sizes
    from preflight.bench.run import GPU_SIZES
    from preflight.facts import load_facts

    h100 = load_facts(FIXTURES / "h100_sxm_8x.json")
    assert default_gpu_sizes([h100]) == (*GPU_SIZES, 16 << 30)  # Azure's 8x H100 floor is at 16 GiB
    assert default_gpu_sizes([load_facts(FIXTURES / "t4_cloud_vm.json")]) == GPU_SIZES  # no figure


def test_cuda_visible_devices_narrows_the_ranks():
    from preflight.bench.command import visible_gpus
    from preflight.facts import load_facts

    h100 = load_facts(FIXTURES / "h100_sxm_8x.json")
    assert visible_gpus(h100) == 8
    h100.network.env["CUDA_VISIBLE_DEVICES"] = "0,1,2,3"
    assert visible_gpus(h100) == 4
    h100.network.env["CUDA_VISIBLE_DEVICES"] = ""
    assert visible_gpus(h100) == 0


def test_expected_busbw_one_node_and_across_infiniband():
    from preflight.bench.expected_busbw import expected_busbw
    from preflight.facts import load_facts

    h100 = load_facts(FIXTURES / "h100_sxm_8x.json")
    one, missing = expected_busbw([h100], "nccl", 16 << 30)
    assert one is not None and one.value == pytest.approx(460e9) and "azurehpc" in one.source.lower()
    below, missing = expected_busbw([h100], "nccl", 1 << 30)
    assert below is None and "measured at" in missing
    # two nodes: the ring also crosses each node's 8 NDR ports (8 x 400 Gb/s = 400 GB/s)
    two, _ = expected_busbw([h100, load_facts(FIXTURES / "h100_sxm_8x.json")], "nccl", 16 << 30)
    assert two is not None and two.value == pytest.approx(400e9) and "InfiniBand" in two.source


def test_low_busbw_on_8_h100_warns_naming_the_expected_value(run_cli, tmp_path):
    from preflight.bench.expected_busbw import expected_busbw
    from preflight.facts import load_facts

    h100 = load_facts(FIXTURES / "h100_sxm_8x.json")
    expected, _ = expected_busbw([h100], "nccl", 16 << 30)
    folder = tmp_path / "h100"
    folder.mkdir()
    shutil.copy(FIXTURES / "h100_sxm_8x.json", folder / "node.json")
    doc = json.loads((H200 / "bench.json").read_text())
    size = 16 << 30
    doc.update(world_size=8, nodes=[h100.node], ranks_per_node={h100.node: 8}, memory=[], nccl_lines={},
               expected_busbw=dataclasses.asdict(expected))
    seconds = size / 300e9 * 1.75  # busbw 300 GB/s
    doc["sizes"] = [{"bytes": size, "count": size // 4, "iters": 8, "seconds_avg": seconds, "seconds_max": seconds,
                     "algbw": size / seconds, "busbw": 300e9, "wrong": 0}]
    (folder / "bench.json").write_text(json.dumps(doc))
    finding = _replay(run_cli, folder)["bench.allreduce_bandwidth"]
    assert finding["status"] == "warn"
    assert "busbw 300.00 GB/s" in finding["observed"] and "460.00 GB/s" in finding["expected"]


def test_nccl_ib_hca_decides_which_ports_count():
    from preflight.bench.expected_busbw import compute_ports
    from preflight.facts import load_facts

    h100 = load_facts(FIXTURES / "h100_sxm_8x.json")
    everything = compute_ports(h100)
    assert len(everything) == 8  # the eight 400 Gb/s ports, not the slower storage ports
    h100.network.env["NCCL_IB_HCA"] = "=" + ",".join(d for d, _ in everything[:4])
    assert len(compute_ports(h100)) == 4
