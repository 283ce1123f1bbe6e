"""NCCL's and gloo's rules for choosing a socket interface, reproduced as pure functions.

NCCL (docs.nvidia.com/deeplearning/nccl/user-guide/docs/env.html, NCCL_SOCKET_IFNAME): a
comma-separated list of interface-name *prefixes*; a leading ``^`` excludes the listed prefixes
instead; a leading ``=`` (after any ``^``) makes the names exact instead of prefixes. Without the
variable NCCL prefers interfaces other than ``docker*`` and ``lo``, using ``lo`` last.
gloo (torch ``GLOO_SOCKET_IFNAME``): a comma-separated list of exact interface names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IfnameSpec:
    names: tuple[str, ...]
    exclude: bool
    exact: bool


def parse_nccl_ifname(value: str) -> IfnameSpec:
    """Parse an ``NCCL_SOCKET_IFNAME`` value.

    >>> parse_nccl_ifname("^=docker0,lo")
    IfnameSpec(names=('docker0', 'lo'), exclude=True, exact=True)
    >>> parse_nccl_ifname("eth,ib")
    IfnameSpec(names=('eth', 'ib'), exclude=False, exact=False)
    """
    text = value.strip()
    exclude = text.startswith("^")
    if exclude:
        text = text[1:]
    exact = text.startswith("=")
    if exact:
        text = text[1:]
    return IfnameSpec(tuple(n.strip() for n in text.split(",") if n.strip()), exclude, exact)


def _hit(spec: IfnameSpec, name: str) -> bool:
    if spec.exact:
        return name in spec.names
    return any(name.startswith(prefix) for prefix in spec.names)


def nccl_matches(value: str, interfaces: list[str]) -> list[str]:
    """The interfaces an ``NCCL_SOCKET_IFNAME`` value selects among ``interfaces``.

    >>> nccl_matches("bond0", ["lo", "bond0", "bond0.2973", "eth0"])
    ['bond0', 'bond0.2973']
    >>> nccl_matches("=bond0", ["bond0", "bond0.2973"])
    ['bond0']
    >>> nccl_matches("^docker,lo", ["lo", "docker0", "eth0"])
    ['eth0']
    """
    spec = parse_nccl_ifname(value)
    return [n for n in interfaces if _hit(spec, n) != spec.exclude]


def gloo_names(value: str) -> list[str]:
    """The exact interface names a ``GLOO_SOCKET_IFNAME`` value lists.

    >>> gloo_names("eth0, eth1")
    ['eth0', 'eth1']
    """
    return [n.strip() for n in value.split(",") if n.strip()]


def _first_address(addresses: list[str]) -> str | None:
    """NCCL advertises one address per interface: IPv4 first, else a non-link-local IPv6."""
    v4 = [a for a in addresses if ":" not in a]
    v6 = [a for a in addresses if ":" in a and not a.lower().startswith("fe80")]
    return (v4 or v6 or [None])[0]


def nccl_interface(interfaces: list, env: dict[str, str]) -> tuple[str, str] | None:
    """(interface, address) NCCL's socket transport would pick on a node (NCCL ``socket.cc``,
    ``ncclFindInterfaces``): ``NCCL_SOCKET_IFNAME`` when set; otherwise ``ib*`` interfaces first,
    then any interface but ``docker*`` and ``lo``, then ``docker*``, then ``lo``. ``interfaces``
    are ``NetInterface`` facts; only up interfaces with an address count."""
    usable = [i for i in interfaces if i.up and _first_address(i.addresses)]
    names = [i.name for i in usable]
    value = env.get("NCCL_SOCKET_IFNAME")
    if value:
        chosen = nccl_matches(value, names)
    else:
        chosen = (
            nccl_matches("ib", names)
            or nccl_matches("^docker,lo", names)
            or nccl_matches("docker", names)
            or nccl_matches("lo", names)
        )
    if not chosen:
        return None
    pick = next(i for i in usable if i.name == chosen[0])
    address = _first_address(pick.addresses)
    return (pick.name, address) if address else None


def gloo_address(interfaces: list, env: dict[str, str], hostname_addresses: list[str]) -> str | None:
    """The address gloo (torch's CPU backend, also the rendezvous side of many launchers) binds:
    the first named interface of ``GLOO_SOCKET_IFNAME``, else what the hostname resolves to."""
    value = env.get("GLOO_SOCKET_IFNAME")
    if value:
        wanted = gloo_names(value)
        match = next((i for i in interfaces if wanted and i.name == wanted[0] and i.up), None)
        return _first_address(match.addresses) if match is not None else None
    return _first_address(hostname_addresses)
