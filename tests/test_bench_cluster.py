"""`preflight cluster --bench` across three real SSH hosts in network namespaces: gloo ranks started
through the same SSH path users use, a link slowed with ``tc tbf`` in one namespace named as the
straggler, a blocked rendezvous port failing in the rendezvous stage within its deadline, and no
benchmark process left on any host afterwards."""

from __future__ import annotations

import json
import sys
import time

import pytest

pytest.importorskip("torch", reason="the benchmark runs real torch.distributed ranks (torch is in the test extra)")

MARKER = "preflight-bench"


@pytest.fixture
def bench(lab, lab_job, run_cli):  # noqa: ANN001, ANN201
    hosts, config = lab_job

    def run(*extra: str):  # noqa: ANN202
        start = time.monotonic()
        code, out, err = run_cli(
            "cluster", str(hosts), "--ssh-config", str(config), "--json", "--connect-timeout", "3",
            "--python", sys.executable, "--bench", "--cpu-ranks", "1", "--max-size", "16M",
            "--seconds-per-size", "0.3", *extra,
        )
        assert "Traceback" not in err
        doc = json.loads(out)
        findings = {f["id"]: f for f in doc["cluster_findings"]}
        return code, findings, doc["benchmark"], time.monotonic() - start

    yield run
    left = {h.name: lab.processes(h, MARKER) for h in lab.hosts}
    assert not any(left.values()), f"benchmark processes left behind: {left}"


def test_gloo_allreduce_over_ssh_on_three_hosts(bench):
    code, findings, result, seconds = bench("--pairwise", "never")
    assert findings["bench.completed"]["status"] == "pass", findings["bench.completed"]["observed"]
    assert findings["bench.allreduce_correct"]["status"] == "pass"
    assert result["backend"] == "gloo" and result["world_size"] == 3
    assert result["nodes"][0] == "host1"  # the master's node holds rank 0
    sizes = [s["bytes"] for s in result["sizes"]]
    assert sizes == [1 << 20, 4 << 20, 16 << 20]
    largest = result["sizes"][-1]
    assert largest["wrong"] == 0 and largest["busbw"] > 0
    # the ring crosses 10 Gb/s veths: the expectation names the slowest node's link
    assert "Mb/s" in result["expected_busbw"]["source"]
    assert result["memory"] and all(m["device"] == "host" and m["host_bps"] > 0 for m in result["memory"])
    assert seconds < 60  # issue budget: the whole --bench phase of a small job in under a minute
    assert code in (0, 1)


def test_slow_link_is_named_as_the_straggler(lab, bench):
    lab.rate_limit("host2", "1gbit")
    code, findings, result, _ = bench("--no-memory")
    finding = findings["bench.straggler"]
    assert finding["status"] == "warn", finding["observed"]
    assert "slow node(s): host2" in finding["observed"]
    assert finding["evidence"]["stragglers"] == ["host2"]
    pairs = {"+".join(p["nodes"]): p["busbw"] for p in result["pairs"]}
    assert len(pairs) >= 3  # each node paired once, then host2 against a node that was fine
    assert findings["bench.allreduce_bandwidth"]["status"] == "warn", findings["bench.allreduce_bandwidth"]["observed"]


def test_blocked_rendezvous_port_fails_in_that_stage_within_its_deadline(lab, bench):
    lab.block_tcp("host1", 29517, "DROP")
    start = time.monotonic()
    code, findings, result, _ = bench("--master-port", "29517", "--no-network-tests",
                                      "--stage-timeout", "rendezvous=8", "--no-memory")
    elapsed = time.monotonic() - start
    finding = findings["bench.completed"]
    assert code == 1 and finding["status"] == "fail"
    assert finding["evidence"]["stage"] == "rendezvous", finding["observed"]
    assert "host2" in finding["observed"] or "host3" in finding["observed"]
    assert "MASTER_PORT" in finding["remediation"]
    assert set(result["killed"]) == {"host1", "host2", "host3"}
    assert elapsed < 8 * 2.5 + 20  # the deadline (torch may report first), startup, and the kill


def test_known_blockers_stop_the_benchmark_before_it_waits(lab, bench, run_cli, tmp_path):
    """A rendezvous port the network tests found blocked, or a training Python without torch:
    the benchmark is not started (no deadline to wait for), and the finding says why."""
    lab.block_tcp("host1", 29518, "REJECT")
    code, findings, result, seconds = bench("--master-port", "29518")
    finding = findings["bench.completed"]
    assert code == 1 and finding["status"] == "fail" and finding["observed"].startswith("not run:")
    assert "cannot reach host1:29518" in finding["observed"] and "net.master_port_reachable" in finding["observed"]
    assert result["sizes"] == [] and seconds < 30
    lab.unblock("host1")
    # the system Python of the hosts has no torch
    hosts = tmp_path / "hosts.txt"
    code, out, err = run_cli("cluster", str(hosts), "--ssh-config", str(tmp_path / "ssh_config"), "--json",
                             "--python", "/usr/bin/python3", "--bench", "--no-network-tests")
    finding = {f["id"]: f for f in json.loads(out)["cluster_findings"]}["bench.completed"]
    assert finding["observed"].startswith("not run: torch is not installed in the training Python on host1")
