"""Host-key verification: known keys are checked, unknown keys refused unless the user opts in,
changed keys always refused.

Keys come from ``~/.ssh/known_hosts``, ``/etc/ssh/ssh_known_hosts`` and any
``UserKnownHostsFile`` named in the SSH config. With ``--accept-new-host-keys`` an unknown key is
appended to the user's known_hosts (OpenSSH's ``StrictHostKeyChecking=accept-new``); a key that
differs from the recorded one is refused whatever the options, as paramiko does
(``BadHostKeyException``).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from pathlib import Path

import paramiko

SYSTEM_KNOWN_HOSTS = Path("/etc/ssh/ssh_known_hosts")


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a public key (``SHA256:…``, unpadded base64)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(hostname: str, port: int) -> str:
    """The name OpenSSH records for a host: ``host`` on port 22, else ``[host]:port``."""
    return hostname if port == 22 else f"[{hostname}]:{port}"


class UnknownHostKey(paramiko.SSHException):
    """The server's key is in no known_hosts file and the user did not opt in to accept it."""

    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(f"unknown host key for {hostname}: {key.get_name()} {fingerprint(key)}")
        self.hostname = hostname
        self.key = key


_RECORD_LOCK = threading.Lock()  # one writer at a time to a known_hosts file, across sweep threads


class HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown keys (the default) or record them in ``record_to`` (``accept_new``)."""

    def __init__(self, *, accept_new: bool, record_to: Path) -> None:
        self.accept_new = accept_new
        self.record_to = record_to

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if not self.accept_new:
            raise UnknownHostKey(hostname, key)
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with _RECORD_LOCK:
            self.record_to.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(self.record_to, "a", encoding="utf-8") as handle:
                handle.write(line)
        client.get_host_keys().add(hostname, key.get_name(), key)


def user_known_hosts(configured: tuple[str, ...]) -> Path:
    """Where accepted keys are recorded: the first configured UserKnownHostsFile, else ~/.ssh/known_hosts."""
    return Path(configured[0]) if configured else Path.home() / ".ssh" / "known_hosts"


_PARSED: dict[tuple[str, int, int], list[paramiko.hostkeys.HostKeyEntry]] = {}
_PARSED_LOCK = threading.Lock()


def _entries(path: Path) -> list[paramiko.hostkeys.HostKeyEntry]:
    """The entries of one known_hosts file, parsed once per version of the file.

    paramiko's own loader compares every line with all earlier ones (quadratic in the file) and
    a sweep would pay that once per host; here each file is read once, and a file changed by
    ``--accept-new-host-keys`` (new mtime) is read again.
    """
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _PARSED_LOCK:
        cached = _PARSED.get(key)
        if cached is None:
            cached = []
            with open(path, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    try:
                        entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
                    except (paramiko.SSHException, ValueError):
                        continue  # a malformed line is skipped, as OpenSSH and paramiko do
                    if entry is not None:
                        cached.append(entry)
            _PARSED[key] = cached
        return cached


def _matches(name: str, pattern: str) -> bool:
    if pattern.startswith("|1|"):
        return paramiko.HostKeys.hash_host(name, pattern) == pattern
    return pattern == name


def load_known_hosts(client: paramiko.SSHClient, configured: tuple[str, ...], name: str) -> None:
    """Give ``client`` the recorded keys of ``name`` (``host`` or ``[host]:port``) from every
    known_hosts file that exists; missing files are simply empty."""
    files = [Path(p) for p in configured] or [Path.home() / ".ssh" / "known_hosts"]
    keys = client.get_host_keys()
    for path in [SYSTEM_KNOWN_HOSTS, *files]:
        if not path.is_file():
            continue
        for entry in _entries(path):
            if entry.key is not None and any(_matches(name, h) for h in entry.hostnames):
                keys.add(name, entry.key.get_name(), entry.key)
