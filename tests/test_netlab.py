"""Sanity tests of the netlab harness itself (tests/netlab.py): real sshds, real SSH via paramiko."""

from __future__ import annotations

import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

paramiko = pytest.importorskip("paramiko")

if TYPE_CHECKING:  # not imported at run time: pytest must import the plugin itself (assertion rewriting)
    from netlab import Lab, LoopbackLab

# Loads the fixtures even before tests/conftest.py lists the plugin (a no-op once it does).


def ssh_run(
    address: str, port: int, user: str, key: Path, known_hosts: Path, command: str, timeout: float = 5.0
) -> tuple[int, str, str]:
    """One SSH command with strict host key checking; returns (exit status, stdout, stderr)."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            address,
            port=port,
            username=user,
            key_filename=str(key),
            timeout=timeout,
            banner_timeout=timeout / 2,
            auth_timeout=timeout,
            channel_timeout=timeout,
            look_for_keys=False,
            allow_agent=False,
        )
        _, stdout, stderr = client.exec_command(command, timeout=timeout)
        out, err = stdout.read().decode(), stderr.read().decode()
        if not stdout.channel.status_event.wait(timeout):
            raise TimeoutError(f"no exit status from {address} after {timeout}s")
        return stdout.channel.exit_status, out, err
    finally:
        client.close()


def lab_ssh(lab: Lab, host, command: str, timeout: float = 5.0) -> tuple[int, str, str]:  # noqa: ANN001
    h = lab.host(host)
    return ssh_run(h.address, h.port, lab.user, lab.client_key, lab.known_hosts, command, timeout)


def test_hosts_have_own_hostname_and_system_python(netlab: Lab) -> None:
    assert [h.name for h in netlab.hosts] == ["host1", "host2", "host3"]
    assert [h.address for h in netlab.hosts] == ["10.77.0.1", "10.77.0.2", "10.77.0.3"]
    for h in netlab.hosts:
        assert lab_ssh(netlab, h, "hostname") == (0, f"{h.name}\n", "")
        rc, out, err = lab_ssh(netlab, h, "python3 -c 'import sys; print(sys.version_info[:2], sys.executable)'")
        assert (rc, err) == (0, ""), err
        assert out.startswith("(3, ") and "/usr/bin/python3" in out, out
        assert lab_ssh(netlab, h, 'echo "$SHELL $HOME"')[1].startswith("/bin/sh ")


def test_known_hosts_has_names_and_addresses(netlab: Lab) -> None:
    keys = paramiko.HostKeys(str(netlab.known_hosts))
    for h in netlab.hosts:
        assert keys.lookup(h.address)["ssh-ed25519"] == keys.lookup(h.name)["ssh-ed25519"]
    assert paramiko.Ed25519Key.from_private_key_file(str(netlab.client_key))


def test_hosts_reach_each_other_by_name(netlab: Lab) -> None:
    probe = "import socket; socket.create_connection(('host2', 22), 2).close(); print('ok')"
    r = netlab.run("host1", ["/usr/bin/python3", "-c", probe])
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr
    r = netlab.run("host1", ["ip", "-o", "-4", "addr", "show", "eth0"])
    assert "10.77.0.1/24" in r.stdout


def test_ssh_config_works_with_openssh(netlab: Lab, tmp_path: Path) -> None:
    cfg = netlab.ssh_config(tmp_path / "ssh_config", extra="ConnectTimeout 5")
    parsed = paramiko.SSHConfig.from_path(str(cfg)).lookup("host2")
    assert parsed["hostname"] == "10.77.0.2" and parsed["user"] == "root" and parsed["connecttimeout"] == "5"
    if shutil.which("ssh") is None:
        pytest.skip("no OpenSSH client")
    r = subprocess.run(
        ["ssh", "-F", str(cfg), "-o", "KexAlgorithms=curve25519-sha256", "host3", "hostname"],
        capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert (r.returncode, r.stdout) == (0, "host3\n"), r.stderr


def test_stop_sshd_refuses_then_start_works(lab: Lab) -> None:
    lab.stop_sshd("host2")
    t0 = time.monotonic()
    with pytest.raises(paramiko.ssh_exception.NoValidConnectionsError) as exc:
        lab_ssh(lab, "host2", "true")
    assert time.monotonic() - t0 < 2
    assert all(isinstance(e, ConnectionRefusedError) for e in exc.value.errors.values())
    lab.start_sshd("host2")
    assert lab_ssh(lab, "host2", "hostname")[1] == "host2\n"


def test_stopped_sshd_is_restarted_by_fixture_part1(lab: Lab) -> None:
    lab.stop_sshd("host3")  # left stopped on purpose: the ``lab`` fixture must restart it


def test_stopped_sshd_is_restarted_by_fixture_part2(lab: Lab) -> None:
    assert lab_ssh(lab, "host3", "hostname")[1] == "host3\n"


def test_rotated_host_key_is_rejected(lab: Lab) -> None:
    lab.rotate_host_key("host1")
    with pytest.raises(paramiko.BadHostKeyException) as exc:
        lab_ssh(lab, "host1", "true")
    assert exc.value.hostname == "10.77.0.1"
    # the original key is kept aside and put back by the fixture
    assert lab.hosts[0].hostkey.with_name(lab.hosts[0].hostkey.name + ".orig").exists()


def test_host_key_restored_after_rotation(lab: Lab) -> None:
    assert lab_ssh(lab, "host1", "hostname") == (0, "host1\n", "")


def test_blocked_port_drop_times_out_reject_refuses(lab: Lab) -> None:
    lab.block_tcp("host3", 22, "DROP")
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        lab_ssh(lab, "host3", "true", timeout=1.0)
    assert 0.9 < time.monotonic() - t0 < 3
    assert lab_ssh(lab, "host2", "hostname")[1] == "host2\n"  # other hosts unaffected
    lab.unblock("host3")
    lab.block_tcp("host3", 22, "REJECT")
    with pytest.raises(paramiko.ssh_exception.NoValidConnectionsError):
        lab_ssh(lab, "host3", "true", timeout=1.0)


def test_block_is_undone_by_fixture(lab: Lab) -> None:
    assert lab_ssh(lab, "host3", "hostname")[1] == "host3\n"


def test_loopback_lab_parallel_logins(loopback_lab: LoopbackLab) -> None:
    lo = loopback_lab
    assert lo.user != "root"
    assert all(addr.startswith("127.0.0.") and port == 2222 for addr, port in lo.hosts)
    sample = lo.hosts[:: max(1, len(lo.hosts) // 20)][:20]
    assert len(sample) == min(20, len(lo.hosts))

    def one(hp: tuple[str, int]) -> tuple[int, str, str]:
        return ssh_run(hp[0], hp[1], lo.user, lo.client_key, lo.known_hosts, "echo ok", timeout=15)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, sample))
    assert results == [(0, "ok\n", "")] * len(sample)


def test_loopback_lab_listens_only_on_its_addresses(loopback_lab: LoopbackLab) -> None:
    import socket

    last = int(loopback_lab.hosts[-1][0].rsplit(".", 1)[1])
    for addr in ("127.0.0.1", f"127.0.0.{last + 1}"):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((addr, 2222), 1).close()
