"""What the user already configured for SSH: ``~/.ssh/config`` (with ``Include``), resolved per host.

paramiko parses the OpenSSH client config but neither follows ``Include`` nor implements
``ProxyJump``; we expand ``Include`` in place (which is how OpenSSH applies it, inside the
``Host`` block it appears in) and hand ``ProxyJump`` to ``preflight.cluster.connect``.
Precedence, most specific first: the hosts-file entry (``user@host:port``), the command-line
flags (``-l``, ``-p``, ``-i``), the SSH config, then the defaults.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from preflight.cluster.hosts import Host
from preflight.errors import InputError

MAX_INCLUDE_DEPTH = 16


@dataclass(frozen=True)
class Overrides:
    """Command-line flags that override the SSH config for every host."""

    user: str | None = None
    port: int | None = None
    identity: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    """Everything needed to reach one host."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    proxy_command: str | None = None
    proxy_jump: tuple[str, ...] = ()
    known_hosts_files: tuple[str, ...] = field(default_factory=tuple)

    @property
    def display(self) -> str:
        port = "" if self.port == 22 else f":{self.port}"
        return f"{self.user}@{self.hostname}{port}"


def _expand_includes(path: Path, depth: int = 0) -> str:
    if depth > MAX_INCLUDE_DEPTH:
        raise InputError("Include nested too deeply (a loop?)", source=str(path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read SSH config: {exc.strerror or exc}", source=str(path)) from None
    out = []
    for line in lines:
        words = line.strip().split(None, 1)
        if words and words[0].lower() == "include" and len(words) == 2:
            for pattern in words[1].split():
                pattern = os.path.expanduser(pattern)
                if not os.path.isabs(pattern):
                    pattern = str(Path.home() / ".ssh" / pattern)
                for match in sorted(glob.glob(pattern)):
                    out.append(_expand_includes(Path(match), depth + 1))
        else:
            out.append(line)
    return "\n".join(out)


def load_ssh_config(path: Path | None) -> paramiko.SSHConfig:
    """The user's SSH client config (``~/.ssh/config`` by default); empty when there is none."""
    if path is None:
        default = Path.home() / ".ssh" / "config"
        if not default.is_file():
            return paramiko.SSHConfig()
        path = default
    elif not path.is_file():
        raise InputError("SSH config not found", source=str(path))
    try:
        return paramiko.SSHConfig.from_text(_expand_includes(path))
    except Exception as exc:  # noqa: BLE001 - paramiko raises assorted errors on bad configs
        raise InputError(f"invalid SSH config: {exc}", source=str(path)) from None


def _default_user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "root")


def resolve(host: Host, config: paramiko.SSHConfig, overrides: Overrides) -> Endpoint:
    """Where and how to connect to ``host``."""
    entry = config.lookup(host.name)
    port = host.port or overrides.port or int(entry.get("port", 22))
    user = host.user or overrides.user or entry.get("user") or _default_user()
    identity = overrides.identity or tuple(os.path.expanduser(p) for p in entry.get("identityfile", []))
    jump = entry.get("proxyjump")
    proxy_jump = () if not jump or jump.lower() == "none" else tuple(j.strip() for j in jump.split(","))
    command = entry.get("proxycommand")
    known = entry.get("userknownhostsfile")
    known_files = tuple(os.path.expanduser(k) for k in known.split()) if known else ()
    return Endpoint(
        alias=host.name,
        hostname=entry.get("hostname", host.name),
        port=port,
        user=user,
        identity_files=identity,
        proxy_command=None if not command or command.lower() == "none" else command,
        proxy_jump=proxy_jump,
        known_hosts_files=known_files,
    )
