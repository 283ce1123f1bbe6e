"""Network environment of one node: hostname resolution, socket interface variables, MASTER_ADDR,
and NCCL variables that contradict the hardware. Cross-node tests live in the cluster command."""

from __future__ import annotations

from preflight.findings import Outcome, fail, passed, skip, warn
from preflight.net.address import is_loopback
from preflight.net.ifname import gloo_names, nccl_matches, parse_nccl_ifname
from preflight.registry import CheckContext, check

GROUP = "Network environment"


@check("net.hostname_loopback", group=GROUP, title="Hostname resolves to a routable address")
def hostname_loopback(ctx: CheckContext) -> Outcome:
    """Debian and Ubuntu map the hostname to 127.0.1.1 in /etc/hosts. torchrun, gloo and NCCL's
    bootstrap then advertise a loopback address, and the other nodes hang connecting to it.
    A single-node job is unaffected, hence a warning here (the cluster command fails it)."""
    ident = ctx.facts.identity
    if not ident.addresses:
        return warn(
            ident.unavailable.get("addresses", f"hostname {ident.hostname!r} does not resolve"),
            "the hostname resolves to this node's network address",
            f"add `<node IP> {ident.hostname}` to /etc/hosts or fix DNS",
        )
    if all(is_loopback(a) for a in ident.addresses):
        return warn(
            f"{ident.hostname} resolves only to {', '.join(ident.addresses)}",
            "a non-loopback address the other nodes can reach",
            f"in /etc/hosts replace the `{ident.addresses[0]} {ident.hostname}` line with "
            f"`<node IP> {ident.hostname}`, or set MASTER_ADDR/GLOO_SOCKET_IFNAME/NCCL_SOCKET_IFNAME explicitly",
        )
    return passed(f"{ident.hostname} -> {', '.join(ident.addresses)}")


def _up_interfaces(ctx: CheckContext) -> list[str]:
    return [i.name for i in ctx.facts.network.interfaces if i.up]


@check("net.nccl_socket_ifname", group=GROUP, title="NCCL_SOCKET_IFNAME matches an up interface")
def nccl_socket_ifname(ctx: CheckContext) -> Outcome:
    """NCCL_SOCKET_IFNAME with NCCL's own rules (prefixes, ``^`` to exclude, ``=`` for exact
    names). Matching nothing fails NCCL's bootstrap ("no socket interface found"); a prefix that
    also matches a VLAN or bond sub-interface (``bond0`` matches ``bond0.2973``) may pick the
    wrong one."""
    value = ctx.facts.network.env.get("NCCL_SOCKET_IFNAME")
    if value is None:
        return skip("NCCL_SOCKET_IFNAME is not set (NCCL picks an interface itself)")
    if not ctx.facts.network.interfaces:
        return skip(ctx.facts.network.unavailable.get("interfaces", "interfaces unreadable"))
    up = _up_interfaces(ctx)
    chosen = nccl_matches(value, up)
    everything = nccl_matches(value, [i.name for i in ctx.facts.network.interfaces])
    if not chosen:
        suggestion = ctx.facts.network.default_route_interface or (up[0] if up else "eth0")
        down = [n for n in everything if n not in up]
        extra = f" ({', '.join(down)} matched but is down)" if down else ""
        return fail(
            f"NCCL_SOCKET_IFNAME={value} matches no up interface{extra}",
            f"one of: {', '.join(up)}",
            "set NCCL_SOCKET_IFNAME to the interface that carries the nodes' network, e.g. "
            f"NCCL_SOCKET_IFNAME=={suggestion}",
            up_interfaces=up,
        )
    if len(chosen) > 1 and not value.lstrip("^").startswith("="):
        return warn(
            f"NCCL_SOCKET_IFNAME={value} matches {', '.join(chosen)}",
            "exactly one interface",
            f"name one exactly: NCCL_SOCKET_IFNAME=={chosen[0]}",
            matched=chosen,
        )
    return passed(f"NCCL_SOCKET_IFNAME={value} selects {', '.join(chosen)}")


@check("net.gloo_socket_ifname", group=GROUP, title="GLOO_SOCKET_IFNAME names up interfaces")
def gloo_socket_ifname(ctx: CheckContext) -> Outcome:
    """gloo (torch's CPU backend, also used by torchrun's store and DeepSpeed's launcher in places)
    takes exact interface names; a missing or down one fails process-group creation."""
    value = ctx.facts.network.env.get("GLOO_SOCKET_IFNAME")
    if value is None:
        return skip("GLOO_SOCKET_IFNAME is not set (gloo uses the hostname's address)")
    if not ctx.facts.network.interfaces:
        return skip(ctx.facts.network.unavailable.get("interfaces", "interfaces unreadable"))
    up = _up_interfaces(ctx)
    missing = [n for n in gloo_names(value) if n not in up]
    if missing or not gloo_names(value):
        return fail(
            f"GLOO_SOCKET_IFNAME={value}: {', '.join(missing) or 'empty'} not an up interface",
            f"exact names among: {', '.join(up)}",
            "set GLOO_SOCKET_IFNAME to the exact name of the interface that carries the nodes' network",
            up_interfaces=up,
        )
    return passed(f"GLOO_SOCKET_IFNAME={value}")


@check("net.master_addr", group=GROUP, title="MASTER_ADDR resolves")
def master_addr(ctx: CheckContext) -> Outcome:
    """A MASTER_ADDR that does not resolve on this node makes every rank here wait for the
    rendezvous timeout (10 to 30 minutes by default) before failing."""
    net = ctx.facts.network
    value = net.env.get("MASTER_ADDR")
    if value is None:
        return skip("MASTER_ADDR is not set")
    if not net.master_addr_addresses:
        return fail(
            net.unavailable.get("master_addr_addresses", f"MASTER_ADDR={value} does not resolve"),
            "a name or address every node resolves to the master node",
            "use the master's IP address, or add it to /etc/hosts on every node",
        )
    return passed(f"MASTER_ADDR={value} -> {', '.join(net.master_addr_addresses)}")


def _env_on(env: dict[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@check("net.nccl_env_contradictions", group=GROUP, title="NCCL variables fit the hardware")
def nccl_env_contradictions(ctx: CheckContext) -> Outcome:
    """NCCL variables copied from another cluster that switch off this node's fast paths:
    ``NCCL_P2P_DISABLE=1`` on an NVLink node (traffic goes through host memory),
    ``NCCL_IB_DISABLE=1`` with active InfiniBand ports (traffic goes over TCP sockets)."""
    env = ctx.facts.network.env
    problems = []
    if _env_on(env, "NCCL_P2P_DISABLE") and any(d.nvlink_up for d in ctx.facts.gpu.devices):
        problems.append(("NCCL_P2P_DISABLE=1 on a node whose GPUs have NVLink", "unset NCCL_P2P_DISABLE"))
    active = [p for p in ctx.facts.network.infiniband if (p.state or "").upper() == "ACTIVE"]
    if _env_on(env, "NCCL_IB_DISABLE") and active:
        problems.append(
            (f"NCCL_IB_DISABLE=1 with {len(active)} active RDMA port(s)", "unset NCCL_IB_DISABLE")
        )
    if not any(k.startswith("NCCL_") for k in env):
        return skip("no NCCL_* variable set")
    if problems:
        return warn(
            "; ".join(p for p, _ in problems),
            "NCCL variables that leave NVLink and InfiniBand in use",
            "; ".join(f for _, f in problems) + " (unless you are debugging on purpose)",
        )
    return passed("no NCCL variable disables an available transport")


@check("net.nccl_ib_hca", group=GROUP, title="NCCL_IB_HCA names existing devices")
def nccl_ib_hca(ctx: CheckContext) -> Outcome:
    """NCCL_IB_HCA (prefixes, ``^`` to exclude, ``=`` exact, ``:port`` suffixes) that matches no
    RDMA device makes NCCL fall back to TCP sockets silently; one that names a missing device is
    usually a copy from another cluster. With InfiniBand present and GPUDirect RDMA expected, the
    ``nvidia_peermem`` module must be loaded (else NCCL stages through host memory)."""
    net = ctx.facts.network
    value = net.env.get("NCCL_IB_HCA")
    devices = sorted({p.device for p in net.infiniband})
    if not devices:
        return skip("no InfiniBand/RoCE device on this node")
    problems = []
    if value:
        spec = parse_nccl_ifname(value)  # same grammar as NCCL_SOCKET_IFNAME, plus ":port" suffixes
        names = [n.split(":")[0] for n in spec.names]
        prefix = ("^" if spec.exclude else "") + ("=" if spec.exact else "")
        if not nccl_matches(prefix + ",".join(names), devices):
            problems.append(f"NCCL_IB_HCA={value} matches none of {', '.join(devices)}")
        elif not spec.exclude:
            missing = [n for n in names if not nccl_matches(("=" if spec.exact else "") + n, devices)]
            if missing:
                problems.append(f"NCCL_IB_HCA names {', '.join(missing)}, not present here ({', '.join(devices)})")
    gpus = bool(ctx.facts.gpu.devices)
    active = any((p.state or "").upper() == "ACTIVE" and (p.link_layer or "").lower() != "ethernet" for p in net.infiniband)
    peermem = ctx.facts.system.kernel_modules.get("nvidia_peermem") or ctx.facts.system.kernel_modules.get("nv_peer_mem")
    if gpus and active and not peermem:
        problems.append("nvidia_peermem is not loaded: GPUDirect RDMA is off")
    if problems:
        return warn("; ".join(problems), "NCCL_IB_HCA matching this node's devices; nvidia_peermem loaded",
                    "fix NCCL_IB_HCA (`ibv_devices` lists the devices); `sudo modprobe nvidia_peermem`",
                    devices=devices)
    return passed(f"{len(devices)} RDMA device(s)" + (f", NCCL_IB_HCA={value}" if value else ""), devices=devices)
