"""Network paths between real SSH hosts in network namespaces, with real firewall faults:
the rendezvous port dropped, rejected or already bound, NCCL's ephemeral range blocked, a wrong
NCCL_SOCKET_IFNAME on one node. Each test asserts the finding and that it came within its budget."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest


@pytest.fixture
def paths(lab_job, run_cli):  # noqa: ANN001, ANN201
    hosts, config = lab_job

    def run(*extra: str):  # noqa: ANN202
        start = time.monotonic()
        code, out, err = run_cli("cluster", str(hosts), "--ssh-config", str(config), "--json",
                                 "--connect-timeout", "3", *extra)
        doc = json.loads(out)
        return code, {f["id"]: f for f in doc["cluster_findings"]}, time.monotonic() - start

    return run


def test_open_network_passes_within_budget(paths):
    code, findings, seconds = paths()
    for check_id in ("net.master_port_free", "net.master_port_reachable", "net.nccl_ports",
                     "net.nccl_interfaces", "net.steps_finished"):
        assert findings[check_id]["status"] == "pass", (check_id, findings[check_id]["observed"])
    assert "host1: eth0 10.77.0.1" in findings["net.nccl_interfaces"]["observed"]
    assert seconds < 10  # issue budget: all network checks for 8 nodes under 10 s


def test_master_port_dropped_times_out_and_names_both_hosts(lab, paths):
    lab.block_tcp("host1", 29500, "DROP")
    code, findings, seconds = paths()
    finding = findings["net.master_port_reachable"]
    assert code == 1 and finding["status"] == "fail"
    assert "host2 -> host1 host1:29500 timed out" in finding["observed"]
    assert "--dport 29500" in finding["remediation"]
    assert findings["net.nccl_ports"]["status"] == "pass"  # only the master port is blocked
    assert seconds < 20


def test_master_port_rejected_is_told_apart(lab, paths):
    lab.block_tcp("host1", 29500, "REJECT")
    _, findings, _ = paths()
    assert "refused" in findings["net.master_port_reachable"]["observed"]


def test_ephemeral_range_blocked_but_not_the_master_port(lab, paths):
    # new connections only (--syn): replies to host2's own outgoing connections still arrive
    lab.run("host2", ["iptables", "-A", "INPUT", "-i", "eth0", "-p", "tcp", "--syn", "--dport", "32768:60999", "-j", "DROP"])
    try:
        _, findings, _ = paths("--master-port", "29501")
    finally:
        lab.unblock("host2")
    assert findings["net.master_port_reachable"]["status"] == "pass"
    finding = findings["net.nccl_ports"]
    assert finding["status"] == "fail" and "-> host2 10.77.0.2:" in finding["observed"]
    assert "32768:60999" in finding["remediation"]


def test_master_port_already_bound(lab, paths):
    holder = subprocess.Popen(
        ["ip", "netns", "exec", lab.host("host1").namespace, sys.executable, "-c",
         "import socket,time; s=socket.socket(); s.bind(('0.0.0.0', 29502)); s.listen(); time.sleep(60)"],
    )
    try:
        time.sleep(0.5)
        _, findings, _ = paths("--master-port", "29502")
    finally:
        holder.kill()
        holder.wait()
    finding = findings["net.master_port_free"]
    assert finding["status"] == "fail" and "port 29502 on host1 is in use" in finding["observed"]
    assert "ss -ltnp" in finding["remediation"]


def test_nccl_socket_ifname_missing_on_one_node(paths):
    env = 'if [ "$(hostname)" = host3 ]; then export NCCL_SOCKET_IFNAME=ib0; else export NCCL_SOCKET_IFNAME=eth0; fi'
    code, findings, _ = paths("--env", env)
    finding = findings["net.nccl_interfaces"]
    assert code == 1 and finding["status"] == "fail" and "host3: no usable interface" in finding["observed"]


def test_no_network_tests_flag_skips_them(paths):
    _, findings, _ = paths("--no-network-tests")
    assert findings["net.nccl_ports"]["status"] == "skip"


def test_own_name_resolving_to_127_0_1_1_on_one_node(lab, paths):
    hosts_file = f"/etc/netns/{lab.host('host2').namespace}/hosts"
    original = open(hosts_file).read()
    with open(hosts_file, "w") as handle:  # in place: the bind mount inside the namespace sees it
        handle.write("127.0.1.1 host2\n" + original.replace("10.77.0.2 host2\n", ""))
    try:
        _, findings, _ = paths()
    finally:
        with open(hosts_file, "w") as handle:
            handle.write(original)
    finding = findings["consistency.name_resolution"]
    assert finding["status"] == "fail" and "host2 resolves to 127.0.1.1 on host2" in finding["observed"]


def test_master_addr_must_be_the_master_on_every_node(lab, paths):
    _, findings, _ = paths("--master-addr", "host1")
    assert findings["net.master_addr_consistent"]["status"] == "pass"
    _, findings, _ = paths("--master-addr", "10.77.0.2")  # host2's address while host1 is first: the master is host2
    assert findings["net.master_addr_consistent"]["status"] == "pass"
    assert "host2" in findings["net.master_addr_consistent"]["observed"]


def test_a_link_set_down_is_reported_and_the_others_still_tested(lab, paths):
    ns = lab.host("host3").namespace
    subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "down"], check=True)
    try:
        start = time.monotonic()
        code, findings, _ = paths()
        elapsed = time.monotonic() - start
    finally:
        subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "up"], check=True)
    assert code == 1 and elapsed < 20
    assert findings["net.master_port_reachable"]["status"] == "pass"  # host2 still reaches host1
    assert findings["net.nccl_ports"]["status"] == "pass"  # the ring of the two nodes left


def test_master_name_resolving_to_loopback_on_the_master(lab, paths):
    hosts_file = f"/etc/netns/{lab.host('host1').namespace}/hosts"
    original = open(hosts_file).read()
    with open(hosts_file, "w") as handle:
        handle.write("127.0.1.1 host1\n" + original.replace("10.77.0.1 host1\n", ""))
    try:
        code, findings, _ = paths("--master-addr", "host1")
    finally:
        with open(hosts_file, "w") as handle:
            handle.write(original)
    assert code == 1
    consistent = findings["net.master_addr_consistent"]
    assert consistent["status"] == "fail" and "loopback address 127.0.1.1" in consistent["observed"]
    reach = findings["net.master_port_reachable"]
    assert reach["status"] == "fail" and "refused" in reach["observed"]  # the listener sits on loopback


def test_rendezvous_from_an_accelerate_config(lab, paths, tmp_path):
    config = tmp_path / "accelerate.yaml"
    config.write_text(  # as `accelerate config` writes it
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nmachine_rank: 0\n"
        "main_process_ip: 10.77.0.2\nmain_process_port: 29503\nmain_training_function: main\n"
        "num_machines: 3\nnum_processes: 3\n"
    )
    _, findings, _ = paths("--launcher-config", str(config))
    reach = findings["net.master_port_reachable"]
    assert reach["status"] == "pass" and "10.77.0.2:29503" in reach["observed"]


def test_launcher_config_errors(run_cli, tmp_path):
    from preflight.errors import InputError
    from preflight.net.launcher_config import rendezvous_from_config

    bad = tmp_path / "a.yaml"
    bad.write_text("main_process_port: ninety\n")
    with pytest.raises(InputError, match="not a port"):
        rendezvous_from_config(bad)
    empty = tmp_path / "b.yaml"
    empty.write_text("num_machines: 2\n")
    with pytest.raises(InputError, match="names neither"):
        rendezvous_from_config(empty)
    with pytest.raises(InputError, match="not found"):
        rendezvous_from_config(tmp_path / "missing.yaml")
