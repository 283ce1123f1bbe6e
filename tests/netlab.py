"""Real multi-host test lab: network namespaces with one sshd each, plus a loopback "many hosts" lab.

Load with ``pytest_plugins = ["netlab"]`` (tests/ is on sys.path) or ``-p netlab``.
See /work/shared/reference/test_hosts.md for the measurements behind every choice here.

Fixtures
--------
``netlab`` (session) -> :class:`Lab`
    3 hosts ``host1..host3`` = 10.77.0.1-3, each a network namespace on a private bridge with its own
    sshd on port 22, its own hostname (``unshare --uts``) and its own /etc/{hosts,resolv.conf,passwd}
    (root: ``/bin/sh``, empty home, so logins are fast and never touch pyenv).
``lab`` (function) -> the same :class:`Lab`; after the test it restarts stopped sshds, puts rotated
    host keys back and flushes iptables rules, so tests stay independent. Use this one in tests that
    break things (and break things only through the Lab helpers).
``loopback_lab`` (session) -> :class:`LoopbackLab`
    N "hosts" 127.0.0.2..127.0.0.(N+1) port 2222 (N = 200, ``--netlab-hosts N`` or env
    ``PFLAB_LOOPBACK_HOSTS``), served by ceil(N/16) sshds in the root namespace bound only to those
    loopback addresses; login as a dedicated non-root user (``pflab``, /bin/sh).

Outside pytest (benchmarks/sweep.py) the loopback hosts are a plain context manager::

    with netlab_host(), loopback_hosts(200) as lo:  # lock + prerequisites, then the hosts
        ...

Everything skips (pytest.skip) unless running as root with ``ip`` and ``unshare``; a missing sshd is
installed with apt-get (skip if that fails). All traffic stays on loopback or 10.77.0.0/24. Concurrent
pytest processes serialize on a lock file (the subnet, the port and the user name are fixed), and
leftovers of a crashed run (names starting with ``pflab``) are removed while holding that lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

logging.getLogger("paramiko").setLevel(logging.CRITICAL)

PREFIX = "pflab"
SUBNET = "10.77.0"
SAFETY_ROUTE = "10.77.0.0/16"
SSHD = "/usr/sbin/sshd"
NETNS_ETC = Path("/etc/netns")
LOCK_FILE = Path("/run/pflab.lock")
LAB_USER = "pflab"
LAB_UID = 64242  # exists only in the loopback sshds' bind-mounted passwd
LAB_USER_GECOS = "preflight netlab test user"
LOOPBACK_PORT = 2222
LISTEN_PER_SSHD = 16  # sshd's MAX_LISTEN_SOCKS
DEFAULT_LOOPBACK_HOSTS = 200
LOCK_WAIT_S = 600.0

log = logging.getLogger("netlab")


# --------------------------------------------------------------------------- helpers


def _sh(*argv: str, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:  # noqa: ANN003
    """Run a local command, capturing output; raise with stderr on failure when ``check``."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> rc {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _port_open(addr: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_port(addr: str, port: int, proc: subprocess.Popen, log_path: Path, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd for {addr}:{port} exited rc {proc.returncode}: {_tail(log_path)}")
        if _port_open(addr, port):
            return
        time.sleep(0.02)
    raise RuntimeError(f"sshd for {addr}:{port} not answering after {deadline_s}s: {_tail(log_path)}")


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _stop_proc(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        if proc is not None:
            proc.wait()
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _keygen(path: Path, comment: str) -> str:
    """Create an ed25519 key without passphrase at ``path``; return the public line ``ssh-ed25519 AAAA...``."""
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))
    return _pubkey(path)


def _pubkey(path: Path) -> str:
    kind, blob = path.with_name(path.name + ".pub").read_text().split()[:2]
    return f"{kind} {blob}"


def _sshd_config(
    path: Path,
    *,
    listen: list[str],
    hostkey: Path,
    pidfile: Path,
    authorized_keys: Path,
    allow_users: str,
    permit_root: str,
) -> Path:
    lines = [
        *(f"ListenAddress {a}" for a in listen),
        f"HostKey {hostkey}",
        f"PidFile {pidfile}",
        f"PermitRootLogin {permit_root}",
        f"AllowUsers {allow_users}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        f"AuthorizedKeysFile {authorized_keys}",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "MaxStartups 200:30:400",
        "MaxSessions 64",
        "LogLevel VERBOSE",
        "Subsystem sftp internal-sftp",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _proc_cmdlines() -> Iterator[tuple[int, list[str], int]]:
    """(pid, argv, uid) of every process readable in /proc."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            uid = os.stat(f"/proc/{entry}").st_uid
        except OSError:
            continue
        yield int(entry), [a.decode(errors="replace") for a in raw.split(b"\0") if a], uid


def _kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- prerequisites, lock, stale cleanup


def _require_root_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("netlab needs root (network namespaces, sshd, iptables)")
    missing = [t for t in ("ip", "unshare", "ssh-keygen") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"netlab needs {', '.join(missing)} (iproute2 / util-linux / openssh-client)")


def _ensure_packages() -> None:
    """Install openssh-server/iptables when missing; the package must not start a system sshd."""
    if Path(SSHD).exists() and shutil.which("iptables"):
        return
    created_policy = False
    policy = Path("/usr/sbin/policy-rc.d")
    if not policy.exists():  # forbid service starts during the install
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        created_policy = True
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        upd = _sh("apt-get", "update", check=False, timeout=300, env=env)
        inst = _sh(
            "apt-get", "install", "-y", "--no-install-recommends",
            "openssh-server", "iptables", "iproute2",
            check=False, timeout=600, env=env,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"netlab: installing openssh-server failed: {exc}")
    finally:
        if created_policy:
            policy.unlink(missing_ok=True)
    if not Path(SSHD).exists():
        why = (inst.stderr or upd.stderr).strip().splitlines()[-3:]
        pytest.skip(f"netlab: {SSHD} missing and apt-get install openssh-server failed: {' | '.join(why)}")


def _cleanup_stale() -> None:
    """Remove what a crashed earlier run left behind (names starting with ``pflab`` only).

    Called while holding LOCK_FILE, so nothing named pflab* belongs to a live run.
    """
    # root-ns loopback sshds of an earlier run: config file lives in a pflab- temp dir
    # (sshd rewrites its argv into one string "sshd: /usr/sbin/sshd -D -E ... -f /tmp/pflab-.../x.conf [listener]")
    stale = [
        pid
        for pid, argv, _ in _proc_cmdlines()
        if pid != os.getpid() and SSHD in " ".join(argv) and f"/{PREFIX}-" in " ".join(argv) and ".conf" in " ".join(argv)
    ]
    _kill_pids(stale)
    for ns in _sh("ip", "netns", "list", check=False).stdout.split("\n"):
        name = ns.split(" ")[0].strip()
        if not name.startswith(PREFIX):
            continue
        pids = _sh("ip", "netns", "pids", name, check=False).stdout.split()
        _kill_pids([int(p) for p in pids if p.isdigit()])
        _sh("ip", "netns", "del", name, check=False)
    for line in _sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            name = parts[1].strip().split("@")[0]
            if name.startswith(PREFIX):
                _sh("ip", "link", "del", name, check=False)
    if NETNS_ETC.is_dir():
        for d in NETNS_ETC.glob(f"{PREFIX}*"):
            shutil.rmtree(d, ignore_errors=True)
    for d in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*"):
        shutil.rmtree(d, ignore_errors=True)
    with contextlib.suppress(KeyError):
        if pwd.getpwnam(LAB_USER).pw_gecos == LAB_USER_GECOS:
            _remove_lab_user()


@contextlib.contextmanager
def netlab_host() -> Iterator[None]:
    """Prerequisites + the machine-wide lab lock (held until exit) + stale cleanup.

    Raises ``pytest.skip.Exception`` when the machine cannot host a lab (not root, no sshd, lock busy).
    Outside pytest (benchmarks), wrap :func:`loopback_hosts` in it.
    """
    _require_root_tools()
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        end = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > end:
                    pytest.skip(f"netlab: another test run held {LOCK_FILE} for {LOCK_WAIT_S:.0f}s")
                time.sleep(0.5)
        _ensure_packages()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        _cleanup_stale()
        yield
    finally:
        os.close(fd)  # releases the lock


@pytest.fixture(scope="session")
def _netlab_host() -> Iterator[None]:
    """Prerequisites + a machine-wide lock held for the whole session + stale cleanup."""
    with netlab_host():
        yield


# --------------------------------------------------------------------------- namespace lab


@dataclass
class LabHost:
    name: str  # "host1": hostname inside the host, and resolvable in every lab host's /etc/hosts
    address: str  # "10.77.0.1"
    port: int  # 22
    namespace: str  # network namespace name (pflab<rid>n1)
    hostkey: Path  # private host key; the public one is hostkey + ".pub"
    veth: str = ""  # the root-namespace end of the host's link (its eth0 is the other end)


@dataclass
class Lab:
    hosts: list[LabHost]
    client_key: Path  # ed25519, no passphrase; authorized for root on every host
    known_hosts: Path  # exact keys, lines "10.77.0.1 ssh-ed25519 AAAA..." and "host1 ssh-ed25519 AAAA..."
    user: str
    tmp: Path
    bridge: str = ""
    setup_s: float = 0.0  # seconds the session fixture took to build the lab (after prerequisites)
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)
    _rotated: set[str] = field(default_factory=set, repr=False)
    _blocked: set[str] = field(default_factory=set, repr=False)
    _shaped: set[str] = field(default_factory=set, repr=False)

    # -- lookup
    def host(self, which: LabHost | str | int) -> LabHost:
        """A host by LabHost, name ("host2"), address ("10.77.0.2") or 0-based index."""
        if isinstance(which, LabHost):
            return which
        if isinstance(which, int):
            return self.hosts[which]
        for h in self.hosts:
            if which in (h.name, h.address, h.namespace):
                return h
        raise KeyError(which)

    def _paths(self, h: LabHost) -> tuple[Path, Path]:
        return self.tmp / "ssh" / f"sshd_{h.name}.conf", self.tmp / "logs" / f"sshd_{h.name}.log"

    # -- sshd control
    def sshd_running(self, host: LabHost | str | int) -> bool:
        p = self._procs.get(self.host(host).name)
        return p is not None and p.poll() is None

    def start_sshd(self, host: LabHost | str | int) -> None:
        """Start the host's sshd (no-op when running); returns once port 22 accepts connections."""
        h = self.host(host)
        if self.sshd_running(h):
            return
        conf, logf = self._paths(h)
        with open(logf, "ab") as err:  # sshd logs there too (-E); this catches hostname/unshare errors
            boot_id = self.tmp / f"boot_id_{h.name}"
            proc = subprocess.Popen(
                ["ip", "netns", "exec", h.namespace, "unshare", "--uts", "--mount", "--propagation", "private",
                 "sh", "-c",
                 f"hostname {h.name} && mount --bind {boot_id} /proc/sys/kernel/random/boot_id "
                 f"&& exec {SSHD} -D -E {logf} -f {conf}"],
                start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        self._procs[h.name] = proc
        _wait_port(h.address, h.port, proc, logf)

    def stop_sshd(self, host: LabHost | str | int) -> None:
        """Terminate the host's sshd listener (connections are then refused). Undone by the ``lab`` fixture."""
        h = self.host(host)
        _stop_proc(self._procs.pop(h.name, None))

    def rotate_host_key(self, host: LabHost | str | int) -> str:
        """Give the host a new host key and restart its sshd; known_hosts keeps the old key.

        Returns the new public key line. The original key is kept (``<hostkey>.orig``) and put back by
        :meth:`restore_host_key` / the ``lab`` fixture.
        """
        h = self.host(host)
        orig = h.hostkey.with_name(h.hostkey.name + ".orig")
        if h.name not in self._rotated:
            h.hostkey.rename(orig)
            h.hostkey.with_name(h.hostkey.name + ".pub").rename(orig.with_name(orig.name + ".pub"))
            self._rotated.add(h.name)
        new = _keygen(h.hostkey, f"rotated-{h.name}")
        self.stop_sshd(h)
        self.start_sshd(h)
        return new

    def restore_host_key(self, host: LabHost | str | int) -> None:
        h = self.host(host)
        if h.name not in self._rotated:
            return
        orig = h.hostkey.with_name(h.hostkey.name + ".orig")
        orig.replace(h.hostkey)
        orig.with_name(orig.name + ".pub").replace(h.hostkey.with_name(h.hostkey.name + ".pub"))
        self._rotated.discard(h.name)
        was_running = self.sshd_running(h)
        self.stop_sshd(h)
        if was_running:
            self.start_sshd(h)

    # -- commands and firewall inside a host
    def run(self, host: LabHost | str | int, argv: list[str], **kw) -> subprocess.CompletedProcess:  # noqa: ANN003
        """Run ``argv`` inside the host's network namespace (with its /etc/netns files, not its hostname).

        Defaults: capture_output=True, text=True, timeout=30, check=False (override via ``kw``).
        """
        h = self.host(host)
        opts = {"capture_output": True, "text": True, "timeout": 30, "check": False, **kw}
        return subprocess.run(["ip", "netns", "exec", h.namespace, *argv], **opts)

    def block_tcp(self, host: LabHost | str | int, port: int, action: str = "DROP") -> None:
        """Firewall incoming TCP ``port`` on the host's eth0: DROP (client times out) or REJECT (refused)."""
        if action not in ("DROP", "REJECT"):
            raise ValueError(f"action must be DROP or REJECT, not {action!r}")
        if shutil.which("iptables") is None:
            pytest.skip("netlab: iptables is not installed")
        h = self.host(host)
        extra = ["--reject-with", "tcp-reset"] if action == "REJECT" else []
        self._blocked.add(h.name)
        r = self.run(h, ["iptables", "-A", "INPUT", "-i", "eth0", "-p", "tcp", "--dport", str(port), "-j", action, *extra])
        if r.returncode != 0:
            raise RuntimeError(f"iptables in {h.name}: {r.stderr.strip()}")

    def unblock(self, host: LabHost | str | int) -> None:
        """Remove every iptables INPUT rule of the host (also ones a test added with ``run``)."""
        h = self.host(host)
        self.run(h, ["iptables", "-F", "INPUT"])
        self._blocked.discard(h.name)

    def rate_limit(self, host: LabHost | str | int, rate: str = "1gbit") -> None:
        """Slow the host's link both ways with a token bucket (``tc tbf``; this kernel has no netem):
        towards the host on its root-side veth, from the host on its eth0."""
        h = self.host(host)
        self._shaped.add(h.name)
        tbf = ["tbf", "rate", rate, "burst", "128kb", "latency", "20ms"]
        for argv in (["tc", "qdisc", "replace", "dev", h.veth, "root", *tbf],
                     ["ip", "netns", "exec", h.namespace, "tc", "qdisc", "replace", "dev", "eth0", "root", *tbf]):
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise RuntimeError(f"tc in {h.name}: {r.stderr.strip()}")

    def unshape(self, host: LabHost | str | int) -> None:
        h = self.host(host)
        subprocess.run(["tc", "qdisc", "del", "dev", h.veth, "root"], capture_output=True, timeout=30)
        self.run(h, ["tc", "qdisc", "del", "dev", "eth0", "root"])
        self._shaped.discard(h.name)

    def processes(self, host: LabHost | str | int, marker: str) -> list[str]:
        """Command lines of processes in the host's network namespace that contain ``marker``."""
        h = self.host(host)
        r = subprocess.run(["ip", "netns", "pids", h.namespace], capture_output=True, text=True, timeout=30)
        found = []
        for pid in r.stdout.split():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"{pid}: {cmdline[:120]}")
        return found

    # -- client side
    def ssh_config(self, path: Path | str, extra: str = "") -> Path:
        """Write an OpenSSH client config with one ``Host hostN`` block per host; return its path.

        ``extra`` is appended after the host blocks; if it does not start with a ``Host``/``Match`` line
        it is put under ``Host *`` (so it applies to every host; per-host values win, as in OpenSSH).
        """
        path = Path(path)
        out = []
        for h in self.hosts:
            out += [
                f"Host {h.name}",
                f"    HostName {h.address}",
                f"    Port {h.port}",
                f"    User {self.user}",
                f"    IdentityFile {self.client_key}",
                "    IdentitiesOnly yes",
                f"    UserKnownHostsFile {self.known_hosts}",
                "    StrictHostKeyChecking yes",
                "    BatchMode yes",
                "",
            ]
        extra = extra.strip("\n")
        if extra:
            first = next((ln.split()[0].lower() for ln in extra.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
            if first not in ("host", "match"):
                out.append("Host *")
            out.append(extra)
        path.write_text("\n".join(out) + "\n")
        return path

    # -- state reset (used by the ``lab`` fixture)
    def reset(self) -> None:
        """Undo what tests did through the helpers: iptables rules, rotated keys, stopped sshds."""
        for h in self.hosts:
            self.unblock(h)
            if h.name in self._shaped:
                self.unshape(h)
            self.restore_host_key(h)
            self.start_sshd(h)


def _build_lab(tmp: Path, rid: str, n: int, fin: list) -> Lab:  # noqa: C901
    """Create bridge, namespaces, keys, sshds. Every created object registers its undo in ``fin``."""
    for sub in ("ssh", "logs", "home", "run"):
        (tmp / sub).mkdir()
    bridge = f"{PREFIX}{rid}br"
    ssh = tmp / "ssh"

    _sh("ip", "route", "replace", "unreachable", SAFETY_ROUTE)
    fin.append(lambda: _sh("ip", "route", "del", "unreachable", SAFETY_ROUTE, check=False))
    fin.append(lambda: _sh("ip", "link", "del", bridge, check=False))
    fin.append(lambda: NETNS_ETC.rmdir() if NETNS_ETC.is_dir() and not any(NETNS_ETC.iterdir()) else None)
    _sh("ip", "link", "add", bridge, "type", "bridge")
    _sh("ip", "addr", "add", f"{SUBNET}.254/24", "dev", bridge)
    _sh("ip", "link", "set", bridge, "up")
    # br_netfilter sends bridged frames through the root FORWARD chain: a DROP policy (Docker) would cut the lab
    if shutil.which("iptables"):
        fwd = _sh("iptables", "-S", "FORWARD", check=False).stdout
        if "-P FORWARD DROP" in fwd:
            rule = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
            _sh("iptables", "-I", *rule)
            fin.append(lambda: _sh("iptables", "-D", *rule, check=False))

    client_key = ssh / "id_ed25519"
    (ssh / "authorized_keys").write_text(_keygen(client_key, "netlab-client") + "\n")
    names = [f"host{i}" for i in range(1, n + 1)]
    hosts_file = "127.0.0.1 localhost\n" + "".join(f"{SUBNET}.{i} {name}\n" for i, name in enumerate(names, 1))
    passwd = Path("/etc/passwd").read_text().splitlines()

    hosts: list[LabHost] = []
    known: list[str] = []
    for i, name in enumerate(names, 1):
        ns, veth = f"{PREFIX}{rid}n{i}", f"{PREFIX}{rid}v{i}"
        fin.append(lambda ns=ns: _sh("ip", "netns", "del", ns, check=False))
        fin.append(lambda veth=veth: _sh("ip", "link", "del", veth, check=False))
        fin.append(lambda ns=ns: shutil.rmtree(NETNS_ETC / ns, ignore_errors=True))
        _sh("ip", "netns", "add", ns)
        _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _sh("ip", "link", "set", veth, "master", bridge, "up")
        _sh("ip", "-n", ns, "addr", "add", f"{SUBNET}.{i}/24", "dev", "eth0")
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
        _sh("ip", "-n", ns, "link", "set", "eth0", "up")
        etc = NETNS_ETC / ns
        etc.mkdir(parents=True)
        home = tmp / "home" / name
        home.mkdir()
        (etc / "hosts").write_text(hosts_file)
        (etc / "resolv.conf").write_text("# netlab: no DNS\n")
        # each host a distinct machine to the probe: its own machine-id (bind-mounted by
        # `ip netns exec`) and, in start_sshd, its own boot id over the shared kernel's
        (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")
        (tmp / f"boot_id_{name}").write_text(str(uuid.uuid4()) + "\n")
        lines = []
        for ln in passwd:
            f = ln.split(":")
            if len(f) == 7 and f[0] == "root":
                f[5], f[6] = str(home), "/bin/sh"
                ln = ":".join(f)
            lines.append(ln)
        (etc / "passwd").write_text("\n".join(lines) + "\n")
        hostkey = ssh / f"hostkey_{name}"
        pub = _keygen(hostkey, f"netlab-{name}")
        known += [f"{SUBNET}.{i} {pub}", f"{name} {pub}"]
        _sshd_config(
            ssh / f"sshd_{name}.conf",
            listen=["0.0.0.0:22"],  # inside the namespace: only lo and the lab's eth0
            hostkey=hostkey,
            pidfile=tmp / "run" / f"sshd_{name}.pid",
            authorized_keys=ssh / "authorized_keys",
            allow_users="root",
            permit_root="prohibit-password",
        )
        hosts.append(LabHost(name, f"{SUBNET}.{i}", 22, ns, hostkey, veth))

    known_hosts = ssh / "known_hosts"
    known_hosts.write_text("\n".join(known) + "\n")
    lab = Lab(hosts=hosts, client_key=client_key, known_hosts=known_hosts, user="root", tmp=tmp, bridge=bridge)
    fin.append(lambda: [lab.stop_sshd(h) for h in lab.hosts])  # runs first: processes before namespaces
    for h in hosts:
        lab.start_sshd(h)
    return lab


def _run_finalizers(fin: list) -> None:
    errors = []
    for undo in reversed(fin):
        try:
            undo()
        except Exception as exc:  # noqa: BLE001 - keep cleaning up
            errors.append(exc)
    fin.clear()
    if errors:
        log.warning("netlab cleanup errors: %s", errors)


@pytest.fixture(scope="session")
def netlab(_netlab_host: None) -> Iterator[Lab]:
    """Session lab: host1..host3 (10.77.0.1-3), sshd on port 22 each, root login with ``client_key``."""
    rid = secrets.token_hex(3)
    tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{rid}-ns-"))
    fin: list = [lambda: shutil.rmtree(tmp, ignore_errors=True)]
    t0 = time.monotonic()
    try:
        lab = _build_lab(tmp, rid, 3, fin)
    except Exception:
        _run_finalizers(fin)
        raise
    lab.setup_s = time.monotonic() - t0
    log.info("netlab ready in %.2fs (%s)", lab.setup_s, tmp)
    try:
        yield lab
    finally:
        _run_finalizers(fin)


@pytest.fixture
def lab(netlab: Lab) -> Iterator[Lab]:
    """The session :class:`Lab`, reset after the test (sshds running, original host keys, no iptables rules)."""
    yield netlab
    netlab.reset()


@pytest.fixture
def lab_job(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A job on the three lab hosts, as a user has it: (hosts.txt naming host1..host3, the SSH
    client config reaching them), in a scratch working folder with its own HOME."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("host1\nhost2\nhost3\n")
    return hosts, lab.ssh_config(tmp_path / "ssh_config")


# --------------------------------------------------------------------------- loopback lab


@dataclass
class LoopbackLab:
    hosts: list[tuple[str, int]]  # [("127.0.0.2", 2222), ...]
    user: str  # non-root login user (shell /bin/sh)
    client_key: Path
    known_hosts: Path  # "[127.0.0.x]:2222 ssh-ed25519 AAAA..." for every address (one shared host key)
    tmp: Path
    sshd_pids: list[int] = field(default_factory=list)
    setup_s: float = 0.0  # seconds the session fixture took (after prerequisites)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--netlab-hosts",
        type=int,
        default=None,
        help=f"number of loopback_lab hosts (default: $PFLAB_LOOPBACK_HOSTS or {DEFAULT_LOOPBACK_HOSTS})",
    )


def _loopback_count(config: pytest.Config) -> int:
    n = config.getoption("--netlab-hosts", default=None)
    if n is None:
        n = int(os.environ.get("PFLAB_LOOPBACK_HOSTS", DEFAULT_LOOPBACK_HOSTS))
    if not 1 <= n <= 253:
        raise pytest.UsageError(f"loopback_lab: host count must be 1..253, not {n}")
    return n


def _remove_lab_user() -> None:
    with contextlib.suppress(KeyError):
        uid = pwd.getpwnam(LAB_USER).pw_uid
        _kill_pids([pid for pid, _, u in _proc_cmdlines() if u == uid])  # leftover sessions of the lab user only
        time.sleep(0.05)
    _sh("userdel", LAB_USER, check=False)


@contextlib.contextmanager
def loopback_hosts(n: int = DEFAULT_LOOPBACK_HOSTS) -> Iterator[LoopbackLab]:
    """N hosts 127.0.0.2..127.0.0.(N+1) port 2222 in the root namespace; login as ``pflab`` with client_key.

    Served by ceil(N/16) sshds, each in its own mount namespace (a bind-mounted passwd copy holds the
    lab user); everything is stopped and removed on exit. The caller must hold the lab lock
    (:func:`netlab_host`, or the ``_netlab_host`` fixture).
    """
    if not 1 <= n <= 253:
        raise ValueError(f"loopback_hosts: host count must be 1..253, not {n}")
    rid = secrets.token_hex(3)
    tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{rid}-lo-"))
    fin: list = [lambda: shutil.rmtree(tmp, ignore_errors=True)]
    procs: list[subprocess.Popen] = []
    t0 = time.monotonic()
    try:
        tmp.chmod(0o755)  # the lab user must reach its home and authorized_keys
        ssh, logs, home = tmp / "ssh", tmp / "logs", tmp / "home"
        for d in (ssh, logs, tmp / "run"):
            d.mkdir(mode=0o755)
        home.mkdir(mode=0o755)
        # The lab user exists only inside the sshds' own mount namespace (a bind-mounted copy of
        # /etc/passwd): never `useradd`, which would rewrite /etc/passwd and, by replacing the
        # file, detach the per-namespace passwd bind mounts of the netlab hosts.
        uid, gid = LAB_UID, 65534
        os.chown(home, uid, gid)
        passwd_copy = tmp / "run" / "passwd"
        passwd_copy.write_text(
            Path("/etc/passwd").read_text() + f"{LAB_USER}:*:{uid}:{gid}:{LAB_USER_GECOS}:{home}:/bin/sh\n"
        )
        passwd_copy.chmod(0o644)

        client_key = ssh / "id_ed25519"
        auth = ssh / "authorized_keys"
        auth.write_text(_keygen(client_key, "netlab-loopback-client") + "\n")
        auth.chmod(0o644)
        hostkey = ssh / "hostkey"
        pub = _keygen(hostkey, "netlab-loopback")
        addrs = [f"127.0.0.{i}" for i in range(2, n + 2)]
        known_hosts = ssh / "known_hosts"
        known_hosts.write_text("".join(f"[{a}]:{LOOPBACK_PORT} {pub}\n" for a in addrs))

        def stop_all() -> None:
            for p in procs:
                _stop_proc(p)

        fin.append(stop_all)
        for k in range(math.ceil(n / LISTEN_PER_SSHD)):
            group = addrs[k * LISTEN_PER_SSHD : (k + 1) * LISTEN_PER_SSHD]
            conf = _sshd_config(
                ssh / f"sshd_{k}.conf",
                listen=[f"{a}:{LOOPBACK_PORT}" for a in group],  # never 0.0.0.0: that would include the real NIC
                hostkey=hostkey,
                pidfile=tmp / "run" / f"sshd_{k}.pid",
                authorized_keys=auth,
                allow_users=LAB_USER,
                permit_root="no",
            )
            logf = logs / f"sshd_{k}.log"
            p = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 f"mount --bind {passwd_copy} /etc/passwd && exec {SSHD} -D -E {logf} -f {conf}"],
                start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(p)
            for a in (group[0], group[-1]):
                _wait_port(a, LOOPBACK_PORT, p, logf)
    except BaseException:
        _run_finalizers(fin)
        raise
    setup_s = time.monotonic() - t0
    log.info("loopback_lab (%d hosts, %d sshds) ready in %.2fs", n, len(procs), setup_s)
    try:
        yield LoopbackLab(
            hosts=[(a, LOOPBACK_PORT) for a in addrs],
            user=LAB_USER,
            client_key=client_key,
            known_hosts=known_hosts,
            tmp=tmp,
            sshd_pids=[p.pid for p in procs],
            setup_s=setup_s,
        )
    finally:
        _run_finalizers(fin)


@pytest.fixture(scope="session")
def loopback_lab(_netlab_host: None, pytestconfig: pytest.Config) -> Iterator[LoopbackLab]:
    """N hosts 127.0.0.2..127.0.0.(N+1) port 2222 in the root namespace; login as ``pflab`` with client_key."""
    with loopback_hosts(_loopback_count(pytestconfig)) as lo:
        yield lo
