"""`preflight cluster` against real OpenSSH servers in network namespaces (tests/netlab.py).

Every fault is real: a stopped sshd, a wrong key, a changed or unknown host key, a probe that
hangs in a fake nvidia-smi, a missing Python, one node with another torch, one machine listed twice.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest


@pytest.fixture
def cluster(lab, tmp_path, monkeypatch, run_cli):  # noqa: ANN001, ANN201
    """Run `preflight cluster` on the lab; returns (exit code, JSON document, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # never read or write the real ~/.ssh
    config = lab.ssh_config(tmp_path / "ssh_config")

    def run(hosts: str, *extra: str, config_path: Path = config):  # noqa: ANN202
        hosts_file = tmp_path / "hosts.txt"
        hosts_file.write_text(hosts)
        code, out, err = run_cli(
            "cluster", str(hosts_file), "--ssh-config", str(config_path), "--json",
            "--connect-timeout", "3", *extra,
        )
        return code, (json.loads(out) if out.strip() else None), err

    return run


def _node(doc: dict, host: str) -> dict:
    return next(n for n in doc["nodes"] if n["host"] == host)


def _finding(findings: list[dict], check_id: str) -> dict:
    return next(f for f in findings if f["id"] == check_id)


def _cluster_finding(doc: dict, check_id: str) -> dict:
    return _finding(doc["cluster_findings"], check_id)


def test_healthy_sweep_reaches_every_node_and_saves_facts(cluster, run_cli, tmp_path):
    code, doc, err = cluster("host1\nhost2\nhost3\n", "--save-facts", str(tmp_path / "facts"))
    assert err == ""
    assert [n["host"] for n in doc["nodes"]] == ["host1", "host2", "host3"]
    assert all(n["reached"] for n in doc["nodes"])
    assert [n["facts"]["identity"]["hostname"] for n in doc["nodes"]] == ["host1", "host2", "host3"]
    for check_id in ("consistency.distinct_machines", "consistency.name_resolution", "consistency.clock_skew",
                     "consistency.python", "consistency.packages"):
        assert _cluster_finding(doc, check_id)["status"] == "pass", check_id
    sweep = doc["nodes"][0]["facts"]["sweep"]
    assert sweep["target"] == "host1" and 0 < sweep["rtt_s"] < 1 and abs(sweep["clock_offset_s"]) < 0.5
    # the saved folder replays to the same findings
    replay_code, replay_out, _ = run_cli("replay", str(tmp_path / "facts"), "--json")
    replayed = json.loads(replay_out)
    assert replay_code == code
    assert replayed["cluster_findings"] == doc["cluster_findings"]
    assert [n["findings"] for n in replayed["nodes"]] == [n["findings"] for n in doc["nodes"]]


def test_stopped_sshd_is_refused_and_the_others_still_answer(lab, cluster):
    lab.stop_sshd("host2")
    code, doc, _ = cluster("host1\nhost2\nhost3\n")
    assert code == 1
    failure = _node(doc, "host2")["findings"][0]
    assert failure["id"] == "ssh.refused" and "connection refused" in failure["observed"]
    assert _node(doc, "host1")["reached"] and _node(doc, "host3")["reached"]
    assert doc["verdict"]["reached"] == 2


def test_firewalled_ssh_times_out_within_the_connect_timeout(lab, cluster):
    lab.block_tcp("host3", 22, "DROP")
    start = time.monotonic()
    _, doc, _ = cluster("host1\nhost3\n")
    assert time.monotonic() - start < 15
    assert _node(doc, "host3")["findings"][0]["id"] == "ssh.timeout"


def test_wrong_key_is_an_authentication_failure(lab, cluster, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    config = tmp_path / "wrong_key_config"
    config.write_text(lab.ssh_config(tmp_path / "c").read_text().replace(str(lab.client_key), str(other)))
    _, doc, _ = cluster("host1\n", config_path=config)
    failure = _node(doc, "host1")["findings"][0]
    assert failure["id"] == "ssh.auth"
    assert "other_key" in failure["observed"]
    assert "PRIVATE KEY" not in json.dumps(doc)


def test_changed_host_key_is_refused_loudly(lab, cluster):
    lab.rotate_host_key("host1")
    code, doc, _ = cluster("host1\nhost2\n", "--accept-new-host-keys")
    failure = _node(doc, "host1")["findings"][0]
    assert code == 1
    assert failure["id"] == "ssh.host_key_changed"
    assert "HOST KEY CHANGED" in failure["observed"] and "SHA256:" in failure["observed"]
    assert "ssh-keygen -R" in failure["remediation"]


def test_unknown_host_key_refused_then_recorded_with_opt_in(lab, cluster, tmp_path):
    known = tmp_path / "known_hosts_empty"
    known.write_text("")
    config = tmp_path / "unknown_config"
    config.write_text(lab.ssh_config(tmp_path / "c").read_text().replace(str(lab.known_hosts), str(known)))
    _, doc, _ = cluster("host2\n", config_path=config)
    failure = _node(doc, "host2")["findings"][0]
    assert failure["id"] == "ssh.host_key_unknown"
    pub = (Path(str(lab.host("host2").hostkey) + ".pub")).read_text().split()[1]
    assert "SHA256:" in failure["observed"] and "ssh-keyscan" in failure["remediation"]
    assert known.read_text() == ""
    _, doc, _ = cluster("host2\n", "--accept-new-host-keys", config_path=config)
    assert _node(doc, "host2")["reached"]
    assert known.read_text().split() == ["10.77.0.2", "ssh-ed25519", pub]


def test_a_probe_hanging_in_nvidia_smi_is_killed_on_the_node(lab, cluster, tmp_path):
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    (fakebin / "nvidia-smi").write_text("#!/bin/sh\nexec sleep 301.5\n")
    (fakebin / "nvidia-smi").chmod(0o755)
    start = time.monotonic()
    _, doc, _ = cluster("host1\n", "--command-timeout", "2", "--env", f"export PATH={fakebin}:$PATH")
    assert time.monotonic() - start < 15
    failure = _node(doc, "host1")["findings"][0]
    assert failure["id"] == "probe.timeout" and "2 s" in failure["observed"]
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", "sleep 301.5"], capture_output=True, text=True)
    assert left.stdout.strip() == "", "the hung nvidia-smi was left running on the node"


def test_missing_python_is_named(cluster):
    _, doc, _ = cluster("host1\n", "--python", "/opt/nowhere/bin/python3")
    failure = _node(doc, "host1")["findings"][0]
    assert failure["id"] == "probe.python_missing"
    assert "/opt/nowhere/bin/python3" in failure["observed"] and "--python" in failure["remediation"]


def test_failing_env_activation_is_named(cluster):
    _, doc, _ = cluster("host1\n", "--env", "source /opt/venv/bin/activate")
    failure = _node(doc, "host1")["findings"][0]
    assert failure["id"] == "probe.env_failed"


def test_one_node_with_another_torch_is_the_odd_one_out(cluster, tmp_path):
    for version in ("2.5.1", "2.4.0"):
        (tmp_path / f"site-{version}" / f"torch-{version}.dist-info").mkdir(parents=True)
    env = (
        f'if [ "$(hostname)" = host2 ]; then export PYTHONPATH={tmp_path}/site-2.4.0; '
        f"else export PYTHONPATH={tmp_path}/site-2.5.1; fi"
    )
    code, doc, _ = cluster("host1\nhost2\nhost3\n", "--env", env)
    finding = _cluster_finding(doc, "consistency.torch")
    assert code == 1 and finding["status"] == "fail"
    assert finding["observed"].startswith("host2: 2.4.0") and "majority: 2.5.1" in finding["observed"]


def test_one_machine_listed_twice_is_caught_by_boot_id(lab, cluster, tmp_path):
    config = lab.ssh_config(
        tmp_path / "any_config", f"IdentityFile {lab.client_key}\nUserKnownHostsFile {lab.known_hosts}"
    )
    _, doc, _ = cluster("host1\nroot@10.77.0.1\nhost2\n", config_path=config)
    assert doc["verdict"]["reached"] == 3, [n["findings"][0]["observed"] for n in doc["nodes"]]
    finding = _cluster_finding(doc, "consistency.distinct_machines")
    assert finding["status"] == "fail"
    assert "host1 and root@10.77.0.1 are the same machine" in finding["observed"]


def test_proxyjump_through_another_node(lab, cluster, tmp_path):
    # host3 refuses SSH from the controller itself; only the jump through host1 gets there
    lab.run("host3", ["iptables", "-A", "INPUT", "-s", "10.77.0.254", "-p", "tcp", "--dport", "22", "-j", "DROP"])
    try:
        _jump_through_host1(lab, cluster, tmp_path)
    finally:
        lab.unblock("host3")


def _jump_through_host1(lab, cluster, tmp_path):  # noqa: ANN001, ANN202
    direct = tmp_path / "direct_config"
    lab.ssh_config(direct)
    _, doc, _ = cluster("host3\n", config_path=direct)
    assert _node(doc, "host3")["findings"][0]["id"] == "ssh.timeout"
    jump = tmp_path / "jump_config"
    include = tmp_path / "jump.conf"
    include.write_text("Host host3\n    ProxyJump host1\n")
    jump.write_text(f"Include {include}\n" + direct.read_text())
    _, doc, _ = cluster("host3\n", config_path=jump)
    assert _node(doc, "host3")["reached"], _node(doc, "host3")["findings"]
    assert _node(doc, "host3")["facts"]["identity"]["hostname"] == "host3"


def test_slots_are_compared_with_gpus(cluster):
    code, doc, _ = cluster("host1 slots=8\nhost2 slots=8\n")
    finding = _finding(_node(doc, "host1")["findings"], "consistency.slots_vs_gpus")
    assert finding["status"] == "fail" and "slots=8 but 0 GPU(s)" in finding["observed"]


def test_parallel_sweep_of_many_loopback_hosts(loopback_lab, tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    hosts = loopback_lab.hosts[:40]
    hosts_file = tmp_path / "hosts.txt"
    hosts_file.write_text("".join(f"{loopback_lab.user}@{a}:{p}\n" for a, p in hosts))
    config = tmp_path / "ssh_config"
    config.write_text(f"Host *\n    IdentityFile {loopback_lab.client_key}\n    UserKnownHostsFile {loopback_lab.known_hosts}\n")
    code, out, err = run_cli("cluster", str(hosts_file), "--ssh-config", str(config), "--json", "--parallel", "16")
    doc = json.loads(out)
    assert err == ""
    assert doc["verdict"]["reached"] == 40, [n["findings"][0]["observed"] for n in doc["nodes"] if not n["reached"]]
    # one machine behind 40 addresses: the boot-id check must say so
    assert _cluster_finding(doc, "consistency.distinct_machines")["status"] == "fail"


def test_slurm_nodelist_from_the_environment(lab, tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SLURM_JOB_NODELIST", "host[1-3]")
    config = lab.ssh_config(tmp_path / "ssh_config")
    code, out, err = run_cli("cluster", "--slurm", "--ssh-config", str(config), "--json")
    doc = json.loads(out)
    assert [n["host"] for n in doc["nodes"]] == ["host1", "host2", "host3"]
    assert doc["verdict"]["reached"] == 3


def test_proxycommand_through_openssh(lab, cluster, tmp_path):
    lab.run("host3", ["iptables", "-A", "INPUT", "-s", "10.77.0.254", "-p", "tcp", "--dport", "22", "-j", "DROP"])
    try:
        config = tmp_path / "proxycommand_config"
        jump = (
            f"ssh -W %h:%p -i {lab.client_key} -o UserKnownHostsFile={lab.known_hosts} "
            "-o StrictHostKeyChecking=yes -o BatchMode=yes root@10.77.0.1"
        )
        config.write_text(f"Host host3\n    ProxyCommand {jump}\n" + lab.ssh_config(tmp_path / "c").read_text())
        _, doc, _ = cluster("host3\n", config_path=config)
        assert _node(doc, "host3")["reached"], _node(doc, "host3")["findings"]
    finally:
        lab.unblock("host3")


def test_ssh_agent_and_command_line_user_and_identity(lab, tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = tmp_path / "bare_config"
    config.write_text(f"Host *\n    UserKnownHostsFile {lab.known_hosts}\n")
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("10.77.0.1\n10.77.0.2\n")
    # flags: -l and -i
    code, out, _ = run_cli("cluster", str(hosts), "--ssh-config", str(config), "--json",
                           "-l", "root", "-i", str(lab.client_key))
    assert json.loads(out)["verdict"]["reached"] == 2
    # ssh-agent: no key given anywhere, only loaded in the agent
    agent = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True).stdout
    env = dict(line.split(";")[0].split("=", 1) for line in agent.splitlines() if "=" in line.split(";")[0])
    try:
        monkeypatch.setenv("SSH_AUTH_SOCK", env["SSH_AUTH_SOCK"])
        subprocess.run(["ssh-add", str(lab.client_key)], check=True, capture_output=True,
                       env={**env, "PATH": "/usr/bin:/bin"})
        code, out, _ = run_cli("cluster", str(hosts), "--ssh-config", str(config), "--json", "-l", "root")
        assert json.loads(out)["verdict"]["reached"] == 2
    finally:
        subprocess.run(["kill", env["SSH_AGENT_PID"]], check=False)


def test_no_route_to_host_is_told_apart(cluster):
    start = time.monotonic()
    _, doc, _ = cluster("10.77.1.5\n")  # outside the lab bridge: the safety route makes it unreachable
    failure = doc["nodes"][0]["findings"][0]
    assert failure["id"] in ("ssh.unreachable", "ssh.timeout")
    assert failure["id"] == "ssh.unreachable", failure["observed"]
    assert time.monotonic() - start < 5


def test_ctrl_c_stops_cleanly_and_kills_remote_probes(lab, tmp_path):
    import os
    import signal
    import sys

    fakebin = tmp_path / "fakebin"
    fakebin.mkdir()
    (fakebin / "nvidia-smi").write_text("#!/bin/sh\nexec sleep 302.5\n")
    (fakebin / "nvidia-smi").chmod(0o755)
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("host1\nhost2\nhost3\n")
    config = lab.ssh_config(tmp_path / "ssh_config")
    proc = subprocess.Popen(
        [sys.executable, "-m", "preflight", "cluster", str(hosts), "--ssh-config", str(config), "--json",
         "--env", f"export PATH={fakebin}:$PATH"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if len(subprocess.run(["pgrep", "-f", "sleep 302.5"], capture_output=True, text=True).stdout.split()) == 3:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "Traceback" not in err and "interrupted" in err
    time.sleep(0.5)
    assert subprocess.run(["pgrep", "-f", "sleep 302.5"], capture_output=True, text=True).stdout.strip() == ""
