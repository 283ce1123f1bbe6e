"""Open one authenticated, host-key-verified SSH connection to a node (through jump hosts).

``ProxyJump`` is implemented here (paramiko parses but does not implement it): each hop is
connected and verified like any host, then a ``direct-tcpip`` channel through it carries the next
connection. ``ProxyCommand`` uses paramiko's own support. Authentication uses ssh-agent, the
identity files given or configured, and the default keys; no password is ever asked for or sent.
Every failure becomes a ``ConnectFailure`` naming the stage and a fix.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from preflight.cluster.host_keys import (
    HostKeyPolicy,
    UnknownHostKey,
    fingerprint,
    known_hosts_name,
    load_known_hosts,
    user_known_hosts,
)
from preflight.cluster.hosts import Host
from preflight.cluster.ssh_config import Endpoint, Overrides, resolve


@dataclass(frozen=True)
class ConnectOptions:
    connect_timeout: float = 10.0
    accept_new_host_keys: bool = False
    overrides: Overrides = field(default_factory=Overrides)


@dataclass(frozen=True)
class ConnectFailure:
    """Why a node could not be reached: ``kind`` is a stable id suffix (``ssh.<kind>``)."""

    kind: str
    message: str
    remediation: str


class ConnectError(Exception):
    def __init__(self, failure: ConnectFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass
class Connection:
    """An open connection, and the jump hosts it goes through (closed with it)."""

    endpoint: Endpoint
    client: paramiko.SSHClient
    hops: list[paramiko.SSHClient]

    def close(self) -> None:
        for client in [self.client, *reversed(self.hops)]:
            client.close()


def _auth_methods(endpoint: Endpoint) -> str:
    tried = []
    if os.environ.get("SSH_AUTH_SOCK"):
        tried.append("ssh-agent")
    if endpoint.identity_files:
        tried.append("keys " + ", ".join(Path(p).name for p in endpoint.identity_files))
    tried.append("default keys in ~/.ssh")
    return "; ".join(tried)


def classify(exc: BaseException, endpoint: Endpoint, timeout: float) -> ConnectFailure:
    """A connection error as a failure with its fix."""
    where = endpoint.display
    name = known_hosts_name(endpoint.hostname, endpoint.port)
    if isinstance(exc, UnknownHostKey):
        keyscan = f"ssh-keyscan -t {exc.key.get_name()} -p {endpoint.port} {endpoint.hostname} >> ~/.ssh/known_hosts"
        return ConnectFailure(
            "host_key_unknown",
            f"{name}: unknown host key {exc.key.get_name()} {fingerprint(exc.key)}",
            f"check the fingerprint with the node's administrator, then `{keyscan}`; "
            "or rerun with --accept-new-host-keys to record it",
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        return ConnectFailure(
            "host_key_changed",
            f"{name}: HOST KEY CHANGED: got {fingerprint(exc.key)}, known_hosts has "
            f"{fingerprint(exc.expected_key)}; refusing to connect (possible man-in-the-middle)",
            f"if the node was reinstalled, confirm the new key with its administrator, then "
            f"`ssh-keygen -R '{name}'` and connect once with ssh to record it",
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return ConnectFailure(
            "auth",
            f"{where}: authentication failed (tried {_auth_methods(endpoint)})",
            "check the user (-l), the key (-i) and that its public key is in the node's "
            "~/.ssh/authorized_keys; load a passphrase-protected key into ssh-agent",
        )
    if isinstance(exc, socket.gaierror):
        return ConnectFailure(
            "unresolved",
            f"{endpoint.hostname} does not resolve: {exc.strerror or exc}",
            "fix the name in the hosts file, /etc/hosts or DNS (or use the node's IP address)",
        )
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        codes = {getattr(e, "errno", None) for e in exc.errors.values()}
        if errno.ECONNREFUSED in codes:
            return ConnectFailure(
                "refused",
                f"{where}: connection refused (no sshd listening on port {endpoint.port})",
                "start sshd on the node (`systemctl start ssh`) or give the right port (-p)",
            )
        return ConnectFailure("unreachable", f"{where}: {exc}", "check the node is up and routable from here")
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return ConnectFailure(
            "unreachable",
            f"{where}: {os.strerror(exc.errno)}",
            "check the node is up and that this machine has a route to it",
        )
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return ConnectFailure(
            "timeout",
            f"{where}: no answer within {timeout:g} s",
            "check the node is up and that a firewall allows SSH from here; raise --connect-timeout "
            "for slow links",
        )
    if isinstance(exc, paramiko.SSHException) and "banner" in str(exc).lower():
        return ConnectFailure(
            "banner",
            f"{where}: the SSH server accepted the connection but sent no banner ({exc})",
            "sshd is overloaded or hung: lower --parallel, raise MaxStartups in sshd_config, or check the node",
        )
    return ConnectFailure("error", f"{where}: {type(exc).__name__}: {exc}", "try `ssh` to the node by hand")


def _hop(spec: str) -> Host:
    user, _, rest = spec.rpartition("@")
    name, _, port = rest.partition(":")
    return Host(name=name, user=user or None, port=int(port) if port else None, slots=None, source="ProxyJump")


def _client(endpoint: Endpoint, accept_new: bool) -> paramiko.SSHClient:
    """A client that knows this endpoint's known_hosts files and records new keys only there."""
    client = paramiko.SSHClient()
    load_known_hosts(client, endpoint.known_hosts_files, known_hosts_name(endpoint.hostname, endpoint.port))
    record_to = user_known_hosts(endpoint.known_hosts_files)
    client.set_missing_host_key_policy(HostKeyPolicy(accept_new=accept_new, record_to=record_to))
    return client


def _open(endpoint: Endpoint, accept_new: bool, timeout: float, sock=None) -> paramiko.SSHClient:  # noqa: ANN001
    client = _client(endpoint, accept_new)
    if sock is None and endpoint.proxy_command:
        sock = paramiko.ProxyCommand(endpoint.proxy_command)
    try:
        client.connect(
            endpoint.hostname,
            port=endpoint.port,
            username=endpoint.user,
            key_filename=list(endpoint.identity_files) or None,
            timeout=timeout,
            banner_timeout=max(1.0, timeout * 0.8),  # below timeout: a hung sshd reads as "no banner"
            auth_timeout=timeout,
            channel_timeout=timeout,
            allow_agent=True,
            look_for_keys=True,
            sock=sock,
        )
    except BaseException:
        client.close()
        raise
    return client


def connect(host: Host, config: paramiko.SSHConfig, options: ConnectOptions) -> Connection:
    """Connect to ``host``, through each ProxyJump hop in turn; raises ``ConnectError``."""
    endpoint = resolve(host, config, options.overrides)
    chain = [resolve(_hop(spec), config, Overrides()) for spec in endpoint.proxy_jump] + [endpoint]
    opened: list[paramiko.SSHClient] = []
    current = chain[0]
    try:
        sock = None
        for position, current in enumerate(chain):
            opened.append(_open(current, options.accept_new_host_keys, options.connect_timeout, sock))
            if position + 1 < len(chain):
                transport = opened[-1].get_transport()
                target = chain[position + 1]
                if transport is None:
                    raise paramiko.SSHException("jump host connection closed")
                sock = transport.open_channel(
                    "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0),
                    timeout=options.connect_timeout,
                )
    except Exception as exc:  # noqa: BLE001 - every failure is reported per host
        for client in reversed(opened):
            client.close()
        failure = classify(exc, current, options.connect_timeout)
        if current is not endpoint:
            failure = ConnectFailure(
                failure.kind, f"via jump host {current.display}: {failure.message}", failure.remediation
            )
        raise ConnectError(failure) from exc
    return Connection(endpoint, opened[-1], opened[:-1])
