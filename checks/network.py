"""Cross-node network paths, from the tests run over SSH (``preflight.net.paths``): the
rendezvous port free and reachable, NCCL's ephemeral ports reachable between nodes, and the
interfaces NCCL would advertise. A failure names both hosts, the address and port, and the fix."""

from __future__ import annotations

from collections import Counter

from preflight.findings import Outcome, fail, passed, skip, warn
from preflight.net.address import is_address, is_loopback
from preflight.net.results import NetworkTests, PathResult
from preflight.registry import ClusterContext, check

GROUP = "Network environment"

MEANING = {
    "timeout": "timed out (a firewall drops the packets, or the address is not routable)",
    "refused": "refused (a firewall rejects it, or nothing listens)",
    "unreachable": "unreachable (no route to that address)",
    "error": "failed",
    "not-tested": "not tested (the step hung)",
    "no-answer": "connected but got no answer",
}


def _tests(ctx: ClusterContext) -> NetworkTests | Outcome:
    if ctx.network is None:
        return skip("network tests did not run (fewer than two nodes reached, or --no-network-tests)")
    return ctx.network


def _describe(p: PathResult) -> str:
    return f"{p.source} -> {p.target} {p.address}:{p.port} {MEANING.get(p.status, p.status)}"


@check("net.master_port_free", group=GROUP, title="Rendezvous port free on the master", scope="cluster")
def master_port_free(ctx: ClusterContext) -> Outcome:
    """torchrun's TCPStore binds MASTER_PORT on the master; a port held by a previous run (or
    another job) fails rank 0 with "address already in use" and leaves the others waiting."""
    tests = _tests(ctx)
    if isinstance(tests, Outcome):
        return tests
    where = f"{tests.master_port} on {tests.master}"
    if tests.port_free is None:
        return fail(f"the bind test on {tests.master} did not finish", "port free",
                    "check the node; rerun with a longer --connect-timeout")
    if not tests.port_free:
        return fail(
            f"port {where} is in use ({tests.port_message})",
            f"port {tests.master_port} free on {tests.master}",
            f"stop what holds it (`ss -ltnp 'sport = :{tests.master_port}'` on {tests.master}) or choose another "
            "port (--master-port / MASTER_PORT)",
        )
    return passed(f"port {where} is free")


@check("net.master_port_reachable", group=GROUP, title="Every node reaches MASTER_ADDR:port", scope="cluster")
def master_port_reachable(ctx: ClusterContext) -> Outcome:
    """Each node connects to MASTER_ADDR (resolved by that node) on the rendezvous port, where a
    test listener runs on the master: a firewall that drops it turns into a rendezvous timeout
    minutes into the job; refused, timed out and unreachable are told apart."""
    tests = _tests(ctx)
    if isinstance(tests, Outcome):
        return tests
    paths = [p for p in tests.paths if p.purpose == "rendezvous"]
    if not paths:
        return skip("no rendezvous listener ran (the port is in use, or a single node)")
    bad = [p for p in paths if p.status != "ok"]
    if bad:
        return fail(
            "; ".join(_describe(p) for p in bad),
            f"every node connects to {tests.master_addr}:{tests.master_port}",
            f"allow TCP {tests.master_port} into {tests.master} from the other nodes, e.g. "
            f"`sudo iptables -I INPUT -p tcp --dport {tests.master_port} -j ACCEPT` (or firewall-cmd / cloud "
            "security group), and check MASTER_ADDR resolves to the master on every node",
            nodes=sorted({p.source for p in bad}),
        )
    slowest = max(paths, key=lambda p: p.seconds or 0)
    return passed(f"{len(paths)} node(s) reach {tests.master_addr}:{tests.master_port} "
                  f"(slowest {slowest.seconds or 0:.3f} s)")


@check("net.nccl_ports", group=GROUP, title="Nodes reach each other's NCCL ports", scope="cluster")
def nccl_ports(ctx: ClusterContext) -> Outcome:
    """NCCL's socket transport and bootstrap listen on ephemeral ports of the address each node
    advertises; a firewall that allows 29500 but not that range makes the job hang after the
    rendezvous. Each node listens on a fresh ephemeral port and the next node connects to it."""
    tests = _tests(ctx)
    if isinstance(tests, Outcome):
        return tests
    paths = [p for p in tests.paths if p.purpose == "nccl"]
    if not paths:
        return skip("fewer than two nodes with an interface NCCL would use")
    bad = [p for p in paths if p.status != "ok"]
    if bad:
        ranges = {p.target: tests.port_ranges.get(p.target) or "the ephemeral range" for p in bad}
        opens = "; ".join(f"on {node} allow TCP {r.replace('-', ':')} from the other nodes" for node, r in ranges.items())
        return fail(
            "; ".join(_describe(p) for p in bad),
            "every node reaches the others' ephemeral ports",
            f"{opens} (e.g. `sudo iptables -I INPUT -p tcp -s <cluster subnet> --dport "
            f"{next(iter(ranges.values())).replace('-', ':')} -j ACCEPT`)",
            nodes=sorted({p.target for p in bad}),
        )
    return passed(f"{len(paths)} node-to-node path(s) open on ephemeral ports")


@check("net.nccl_interfaces", group=GROUP, title="NCCL and gloo use a routable interface on every node",
       scope="cluster")
def nccl_interfaces(ctx: ClusterContext) -> Outcome:
    """The interface and address NCCL would advertise on each node (its own selection rules):
    none, or loopback in a multi-node job, cannot work; different interface names or MTUs across
    nodes usually mean a copied NCCL_SOCKET_IFNAME or a mismatched fabric."""
    tests = _tests(ctx)
    if isinstance(tests, Outcome):
        return tests
    names = [n.node for n in ctx.nodes]
    missing = [n for n in names if n not in tests.advertised]
    loop = [n for n, (iface, _) in tests.advertised.items() if iface == "lo"]
    chosen = {n: f"{iface} {addr}" for n, (iface, addr) in tests.advertised.items()}
    if missing or loop:
        what = [f"{n}: no usable interface" for n in missing] + [f"{n}: only loopback" for n in loop]
        return fail("; ".join(what), "a routable interface on every node",
                    "set NCCL_SOCKET_IFNAME to the interface of the cluster network on every node",
                    advertised=chosen, nodes=missing + loop)
    chosen = {n: c + (f", gloo {tests.gloo[n]}" if n in tests.gloo else "") for n, c in chosen.items()}
    loop_gloo = [n for n, a in tests.gloo.items() if is_loopback(a)]
    if loop_gloo:
        return fail(
            "; ".join(f"{n}: gloo would use {tests.gloo[n]}" for n in loop_gloo),
            "gloo on a routable address on every node",
            "set GLOO_SOCKET_IFNAME to the cluster interface, or fix the hostname's /etc/hosts entry",
            advertised=chosen, nodes=loop_gloo,
        )
    interfaces = {n: iface for n, (iface, _) in tests.advertised.items()}
    mtus = {}
    for node in ctx.nodes:
        iface = interfaces.get(node.node)
        match = next((i for i in node.network.interfaces if i.name == iface), None)
        if match is not None and match.mtu is not None:
            mtus[node.node] = match.mtu
    notes = []
    if len(set(interfaces.values())) > 1:
        common = Counter(interfaces.values()).most_common(1)[0][0]
        notes.append("interface names differ: " + ", ".join(f"{n} {i}" for n, i in interfaces.items() if i != common))
    if len(set(mtus.values())) > 1:
        notes.append("MTUs differ: " + ", ".join(f"{n} {m}" for n, m in mtus.items()))
    if notes:
        return warn("; ".join(notes), "the same interface and MTU on every node",
                    "check NCCL_SOCKET_IFNAME and the MTU (`ip link`) on the odd nodes", advertised=chosen)
    return passed("; ".join(f"{n}: {c}" for n, c in chosen.items()), advertised=chosen)


@check("net.steps_finished", group=GROUP, title="Every network test step finished", scope="cluster")
def steps_finished(ctx: ClusterContext) -> Outcome:
    """A step that hangs (a listener that never starts, a connect that never returns) points at
    the node named; the other steps still report."""
    tests = _tests(ctx)
    if isinstance(tests, Outcome):
        return tests
    if tests.hung:
        return fail("; ".join(f"{h} hung" for h in tests.hung), "every step finishes within its timeout",
                    "look at that node: a hung sshd, a full process table, or a Python that does not start")
    return passed(f"all steps finished in {tests.seconds:.1f} s")


@check("net.master_addr_consistent", group=GROUP, title="MASTER_ADDR is the master, seen alike from every node",
       scope="cluster")
def master_addr_consistent(ctx: ClusterContext) -> Outcome:
    """MASTER_ADDR must resolve to the same address on every node, and that address must be one of
    the master's own: otherwise some ranks knock on another machine (or on themselves, when a name
    resolves to 127.0.1.1 locally) and the rendezvous never completes."""
    tests = _tests(ctx)
    if isinstance(tests, Outcome):
        return tests
    name = tests.master_addr
    master = next((n for n in ctx.nodes if n.node == tests.master), None)
    if master is None:
        return skip(f"the master {tests.master} did not answer")
    own = {a.split("%")[0] for i in master.network.interfaces for a in i.addresses}
    if is_address(name):
        views = {n.node: [name] for n in ctx.nodes}
    else:
        views = {n.node: sorted(n.network.resolved.get(name, [])) for n in ctx.nodes if name in n.network.resolved}
    if not views:
        return skip(f"{name} was not looked up on the nodes")
    loopback = sorted({a for v in views.values() for a in v if is_loopback(a)})
    if loopback and len(ctx.nodes) > 1:
        return fail(
            f"{name} resolves to the loopback address {', '.join(loopback)}: every node would connect to itself",
            f"{tests.master}'s cluster address",
            f"set MASTER_ADDR (or --master-addr) to {tests.master}'s address on the cluster network",
            views=views,
        )
    broken = [f"{node}: {', '.join(a) or 'does not resolve'}" for node, a in views.items() if not set(a) & own]
    if broken:
        return fail(
            f"{name} is not {tests.master} everywhere: " + "; ".join(broken),
            f"{name} resolving to one of {tests.master}'s addresses ({', '.join(sorted(own))}) on every node",
            f"use {tests.master}'s cluster IP as MASTER_ADDR, or fix /etc/hosts or DNS on the nodes listed",
            views=views,
        )
    return passed(f"{name} resolves to {tests.master} on all {len(views)} node(s)", views=views)


@check("net.infiniband_fabric", group=GROUP, title="InfiniBand ports active with equal rates", scope="cluster")
def infiniband_fabric(ctx: ClusterContext) -> Outcome:
    """On RDMA clusters every node should show its InfiniBand/RoCE ports ACTIVE at the same rate;
    a port down or trained at a lower rate makes that node the bottleneck of every all-reduce."""
    nodes = [n for n in ctx.nodes if n.network.infiniband]
    if not nodes:
        return skip("no InfiniBand/RoCE device on any node")
    down, rates = [], {}
    for n in nodes:
        for p in n.network.infiniband:
            if (p.link_layer or "").lower() == "ethernet" and (p.state or "").upper() != "ACTIVE":
                continue  # an unused second port of an Ethernet NIC
            if (p.state or "").upper() != "ACTIVE":
                down.append(f"{n.node} {p.device}/{p.port} {p.state}")
            elif p.rate:
                rates.setdefault(f"{p.device}/{p.port}", {})[n.node] = p.rate
    if down:
        return fail("; ".join(down), "every InfiniBand port ACTIVE",
                    "check the cable and switch port (`ibstat`, `ibportstate`), or exclude the device with NCCL_IB_HCA",
                    nodes=sorted({d.split()[0] for d in down}))
    odd, slower = [], set()
    for port, by_node in rates.items():  # the same device and port compared across nodes
        if len(set(by_node.values())) > 1:
            common = max(set(by_node.values()), key=list(by_node.values()).count)
            for node, rate in by_node.items():
                if rate != common:
                    odd.append(f"{node} {port}: {rate} (others {common})")
                    slower.add(node)
    if odd:
        return warn("; ".join(odd), "each port at the same rate on every node",
                    "reseat or replace the cable/transceiver of those ports", nodes=sorted(slower))
    count = sum(len(v) for v in rates.values())
    return passed(f"{count} port(s) ACTIVE, each at the same rate on every node")
