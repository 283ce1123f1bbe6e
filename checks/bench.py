"""Benchmarks (``preflight bench``, ``preflight cluster --bench``): did the all-reduce run, give
right sums and the bandwidth this hardware should give; which node or link is slow; did NCCL
say why; is every GPU's memory usable and as fast as its datasheet; are the host links healthy.

Bandwidths are decimal GB/s (1e9 B/s), as nccl-tests prints them. These checks run only when the
benchmarks ran; the measurements are ``BenchResults`` facts (``bench.json`` beside saved facts).
"""

from __future__ import annotations

import statistics

from preflight.bench.results import BenchResults, MemoryResult
from preflight.findings import Outcome, fail, passed, skip, warn
from preflight.registry import ClusterContext, check

GROUP = "Benchmarks"

STAGE_FIX = {
    "start": "check that the node's --python exists and its --env/--conda activation works over SSH",
    "import": "run `python -c 'import torch'` with the node's training Python; fix the install or use --python",
    "rendezvous": "open MASTER_PORT on the master to the other nodes (see net.master_port_reachable), "
                  "check MASTER_ADDR resolves to the master's cluster address, or pick a free --master-port",
    "first": "allow the ephemeral ports between nodes (net.nccl_ports) and set NCCL_SOCKET_IFNAME / "
             "GLOO_SOCKET_IFNAME to the cluster interface",
    "sweep": "rerun with NCCL_DEBUG=INFO; check link state (`ip -s link`, `ibstat`) on the named nodes",
    "pairwise": "rerun; check the links of the named nodes",
    "memory": "check the GPU with `nvidia-smi -q -d ECC,PAGE_RETIREMENT` and for other processes using it",
    "done": "check the named nodes' load",
}


def gbps(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 1e9:.2f} GB/s"


def _results(ctx: ClusterContext) -> BenchResults | Outcome:
    if ctx.bench is None:
        return skip("the benchmarks did not run (--bench)")
    return ctx.bench


@check("bench.completed", group=GROUP, title="Benchmark ran to the end on every rank", scope="cluster")
def completed(ctx: ClusterContext) -> Outcome:
    """Every rank started, met the others at MASTER_ADDR:MASTER_PORT, completed the first
    collective and the sweep. A failure names the stage (start, import, rendezvous, first
    collective, sweep, pairwise, memory), whether it failed or hung past its deadline, and the
    nodes and ranks; every rank was killed afterwards."""
    bench = _results(ctx)
    if isinstance(bench, Outcome):
        return bench
    if bench.problems:
        first = bench.problems[0]
        where = ", ".join(first.nodes) or "?"
        ranks = f" (ranks {', '.join(map(str, sorted(set(first.ranks))))})" if first.ranks else ""
        if first.kind == "not-run":
            return fail(
                f"not run: {first.message}", "every rank completes the benchmark",
                STAGE_FIX.get(first.stage, "fix the finding named above, then rerun"),
                stage=first.stage, kind=first.kind, nodes=first.nodes,
                problems=[f"{p.stage}/{p.kind} on {', '.join(p.nodes)}: {p.message}" for p in bench.problems],
            )
        verb = "hung" if first.kind == "hang" else "failed"
        more = f"; {len(bench.problems) - 1} more problem(s)" if len(bench.problems) > 1 else ""
        return fail(
            f"{first.stage} stage {verb} on {where}{ranks} after {first.seconds:.1f} s: {first.message}{more}",
            "every rank completes the benchmark",
            STAGE_FIX.get(first.stage, "rerun with NCCL_DEBUG=INFO"),
            stage=first.stage, kind=first.kind, nodes=first.nodes, killed=bench.killed,
            problems=[f"{p.stage}/{p.kind} on {', '.join(p.nodes)}: {p.message}" for p in bench.problems],
        )
    if not bench.sizes:
        return fail("no all-reduce result came back", "a result per message size", "rerun with --json and report it")
    return passed(f"{bench.world_size} ranks on {len(bench.nodes)} node(s), {bench.backend}, {bench.seconds:.1f} s",
                  stage_seconds=bench.stage_seconds)


@check("bench.allreduce_correct", group=GROUP, title="All-reduce sums are right", scope="cluster")
def allreduce_correct(ctx: ClusterContext) -> Outcome:
    """Each rank contributes ``rank + 1`` in every element; every element of the result must be
    ``n(n+1)/2`` (nccl-tests' ``#wrong`` column). A wrong sum is silent data corruption: a bad
    GPU, NVLink or NIC, or a broken NCCL/driver combination."""
    bench = _results(ctx)
    if isinstance(bench, Outcome):
        return bench
    if not bench.sizes:
        return skip("no all-reduce result")
    bad = [s for s in bench.sizes if s.wrong]
    if bad:
        return fail(
            ", ".join(f"{s.wrong} wrong elements at {s.bytes} B" for s in bad),
            "0 wrong elements",
            "find the node: rerun with --pairwise always; then run `dcgmi diag -r 2` on its GPUs",
        )
    return passed(f"every element right at {len(bench.sizes)} sizes")


@check("bench.allreduce_bandwidth", group=GROUP, title="All-reduce bus bandwidth as expected",
       thresholds={"min_fraction": 0.8}, scope="cluster")
def allreduce_bandwidth(ctx: ClusterContext) -> Outcome:
    """busbw at the largest size against the expectation for this hardware: sourced figures per
    GPU system (``compat_matrix/bench.toml``), or for several nodes the slowest node's network
    rate (the ring crosses every node's NICs). Below ``min_fraction`` of it is a warning: a NIC
    negotiated at a lower rate, NCCL on sockets instead of InfiniBand, GPUDirect off, a
    downtrained link."""
    bench = _results(ctx)
    if isinstance(bench, Outcome):
        return bench
    largest = bench.largest()
    if largest is None:
        return skip("no all-reduce result")
    if bench.world_size < 2:
        return skip("one rank: no bus traffic to measure (a single-rank all-reduce moves no data)")
    observed = f"busbw {gbps(largest.busbw)} at {largest.bytes} B ({bench.world_size} ranks, {bench.backend})"
    expected = bench.expected_busbw
    if expected is None:
        return passed(observed + f"; not compared: {bench.expected_missing or 'no sourced expectation'}")
    floor = float(ctx.thresholds["min_fraction"]) * expected.value
    want = f">= {gbps(floor)} ({ctx.thresholds['min_fraction']} x {gbps(expected.value)}: {expected.source})"
    if expected.note:
        want += f"; {expected.note}"
    if largest.busbw < floor:
        return warn(
            observed, want,
            "check each node's NIC rate (`ethtool IFACE`, `ibstat`), that NCCL uses InfiniBand (bench.nccl_messages), "
            "and the pairwise results (bench.straggler)",
            busbw=largest.busbw, expected_busbw=expected.value,
        )
    return passed(observed, want)


@check("bench.straggler", group=GROUP, title="No slow node or link", thresholds={"min_fraction_of_best": 0.6},
       scope="cluster")
def straggler(ctx: ClusterContext) -> Outcome:
    """When the whole-cluster bandwidth is low (or with ``--pairwise always``), every node is
    paired once with another, then each node of a slow pair with a node that was fine: a node
    slow with every partner is a straggler; a pair slow together while both are fine with others
    is a bad link. A pair is slow below ``min_fraction_of_best`` of the best pair."""
    from preflight.bench.remote.rank import conclude

    bench = _results(ctx)
    if isinstance(bench, Outcome):
        return bench
    if not bench.pairs:
        if len(bench.nodes) < 3:
            return skip("fewer than three nodes: a slow node cannot be told apart from its partner")
        return skip("pairwise tests not run (the cluster bandwidth was not low; --pairwise always forces them)")
    index = {n: i for i, n in enumerate(bench.nodes)}
    measured = {(index[p.nodes[0]], index[p.nodes[1]]): p.busbw for p in bench.pairs}
    stragglers, links = conclude(measured, float(ctx.thresholds["min_fraction_of_best"]))
    table = {f"{p.nodes[0]}+{p.nodes[1]}": round(p.busbw / 1e9, 3) for p in bench.pairs}
    best = max(p.busbw for p in bench.pairs)
    if stragglers or links:
        names = [bench.nodes[i] for i in stragglers]
        pairs = [f"{bench.nodes[a]}<->{bench.nodes[b]}" for a, b in links]
        slow = ", ".join(f"{k} {v} GB/s" for k, v in table.items() if v * 1e9 < ctx.thresholds["min_fraction_of_best"] * best)
        what = (f"slow node(s): {', '.join(names)}" if names else "") + ("; " if names and pairs else "") + \
               (f"slow link(s): {', '.join(pairs)}" if pairs else "")
        return warn(
            f"{what} ({slow}; best pair {gbps(best)})",
            f"every pair >= {ctx.thresholds['min_fraction_of_best']} x the best pair",
            "on the named node(s): check the NIC rate and errors (`ethtool -S`, `ibstat`, `ip -s link`), a traffic "
            "shaper (`tc qdisc show`), CPU load; exclude the node from the job until fixed",
            pairs_gbps=table, stragglers=names, links=pairs,
        )
    return passed(f"{len(bench.pairs)} pairs, all within {ctx.thresholds['min_fraction_of_best']} x the best "
                  f"({gbps(best)})", pairs_gbps=table)


@check("bench.nccl_messages", group=GROUP, title="NCCL reported no known problem", scope="cluster")
def nccl_messages(ctx: ClusterContext) -> Outcome:
    """NCCL's own log lines (captured with ``NCCL_DEBUG=INFO`` for the INIT and NET subsystems)
    turned into causes and fixes: /dev/shm too small, memlock limit (``ibv_reg_mr``), socket
    connect failures, sockets used where InfiniBand is up, GPUDirect RDMA disabled."""
    from preflight.bench.nccl_log import diagnose

    bench = _results(ctx)
    if isinstance(bench, Outcome):
        return bench
    if bench.backend != "nccl":
        return skip(f"backend {bench.backend}: no NCCL log")
    found = []
    for node, lines in bench.nccl_lines.items():
        for issue in diagnose(lines, ib_expected=node in bench.ib_nodes):
            found.append((node, issue))
    if not found:
        return passed(f"{sum(len(v) for v in bench.nccl_lines.values())} NCCL lines, no known problem")
    severe = {"shm", "memlock", "socket_connect", "ib_error"}
    node, first = next(((n, i) for n, i in found if i.kind in severe), found[0])
    more = f"; {len(found) - 1} more" if len(found) > 1 else ""
    outcome = fail if first.kind in severe else warn
    return outcome(
        f"{node}: {first.message}{more}", "no NCCL warnings", first.remediation,
        issues=[f"{n}: {i.kind}: {i.message}" for n, i in found], evidence_lines=list(first.evidence),
    )


def _gpu_facts(ctx: ClusterContext, m: MemoryResult):  # noqa: ANN202 - GpuDevice | None
    facts = next((f for f in ctx.nodes if f.node == m.node), None)
    if facts is None or not m.device.startswith("gpu"):
        return None
    index = int(m.device[3:])
    return next((d for d in facts.gpu.devices if d.index == index), None)


def _gpu_rows(ctx: ClusterContext) -> list[MemoryResult] | Outcome:
    bench = _results(ctx)
    if isinstance(bench, Outcome):
        return bench
    rows = [m for m in bench.memory if m.device.startswith("gpu")]
    if not rows:
        return skip("no GPU memory benchmark (no GPUs, or --no-memory)")
    return rows


@check("bench.gpu_memory_usable", group=GROUP, title="GPU memory really usable", thresholds={"min_fraction": 0.9},
       scope="cluster")
def gpu_memory_usable(ctx: ClusterContext) -> Outcome:
    """Each GPU allocates chunks up to a fraction of its free memory, writes a pattern and reads
    it back. An allocation that fails early (another process, fragmentation, a MIG slice) or a
    pattern that reads back wrong (bad memory) fails here before training does."""
    rows = _gpu_rows(ctx)
    if isinstance(rows, Outcome):
        return rows
    bad = []
    for m in rows:
        target = m.target_bytes or 0
        if m.mismatched_chunks:
            bad.append(f"{m.node}/{m.device}: {m.mismatched_chunks} chunk(s) read back wrong")
        elif target and (m.usable_bytes or 0) < float(ctx.thresholds["min_fraction"]) * target:
            bad.append(f"{m.node}/{m.device}: {(m.usable_bytes or 0) / 2**30:.1f} of {target / 2**30:.1f} GiB "
                       f"allocated ({m.allocation_error or 'stopped early'})")
    if bad:
        return fail("; ".join(bad), f"every GPU allocates >= {ctx.thresholds['min_fraction']} x its target and "
                    "reads the pattern back", "stop other processes on the GPU (gpu.memory_in_use); if the pattern "
                    "reads back wrong, drain the GPU and run `dcgmi diag -r 3`")
    total = sum(m.usable_bytes or 0 for m in rows)
    return passed(f"{len(rows)} GPU(s), {total / 2**30:.1f} GiB allocated and verified")


@check("bench.gpu_memory_bandwidth", group=GROUP, title="GPU memory bandwidth as expected",
       thresholds={"min_fraction": 0.7}, scope="cluster")
def gpu_memory_bandwidth(ctx: ClusterContext) -> Outcome:
    """Device-to-device copy bandwidth (bytes read + written per second, as STREAM counts a copy)
    against the GPU's datasheet memory bandwidth (``compat_matrix/bench.toml``). A copy reaches
    well under the datasheet peak on every GPU; below ``min_fraction`` of it points at clocks held
    down (power or thermal throttling), another process, or a faulty GPU."""
    rows = _gpu_rows(ctx)
    if isinstance(rows, Outcome):
        return rows
    from preflight.bench.expectations import load_expectations

    exp = load_expectations(None)
    low, seen, unknown = [], [], []
    for m in rows:
        name = m.name or ""
        expected = exp.memory_bandwidth(name) if name else None
        if m.d2d_bps is None:
            continue
        if expected is None:
            unknown.append(name or m.device)
            continue
        seen.append(f"{m.node}/{m.device} {gbps(m.d2d_bps)} of {gbps(expected.value)}")
        if m.d2d_bps < float(ctx.thresholds["min_fraction"]) * expected.value:
            low.append(f"{m.node}/{m.device} ({name}): {gbps(m.d2d_bps)}, datasheet {gbps(expected.value)} "
                       f"[{expected.source}]")
    if low:
        return warn("; ".join(low), f">= {ctx.thresholds['min_fraction']} x the datasheet bandwidth",
                    "check clocks and throttling (`nvidia-smi -q -d PERFORMANCE,CLOCK`), other processes, and run "
                    "`dcgmi diag -r 3` (memory_bandwidth) on that GPU")
    if not seen:
        return skip(f"no datasheet bandwidth for {', '.join(sorted(set(unknown)))}; measured "
                    + ", ".join(f"{m.device} {gbps(m.d2d_bps)}" for m in rows))
    return passed("; ".join(seen[:4]) + (f" (+{len(seen) - 4} more)" if len(seen) > 4 else ""))


@check("bench.pcie_bandwidth", group=GROUP, title="Host-GPU copies as fast as the PCIe link",
       thresholds={"min_fraction": 0.6}, scope="cluster")
def pcie_bandwidth(ctx: ClusterContext) -> Outcome:
    """Pinned host-to-device and device-to-host copy bandwidth against the theoretical rate of the
    GPU's PCIe link at its maximum generation and width (from the node's facts). Below
    ``min_fraction`` of it: a link trained down (gen or width), a GPU behind the wrong CPU socket
    (NUMA), or a saturated PCIe switch."""
    rows = _gpu_rows(ctx)
    if isinstance(rows, Outcome):
        return rows
    from preflight.bench.expectations import load_expectations

    exp = load_expectations(None)
    low, seen = [], []
    for m in rows:
        device = _gpu_facts(ctx, m)
        if device is None or not device.pcie_gen_max or not device.pcie_width_max or m.h2d_bps is None:
            continue
        expected = exp.pcie_bandwidth(device.pcie_gen_max, device.pcie_width_max)
        if expected is None:
            continue
        worst = min(m.h2d_bps, m.d2h_bps or m.h2d_bps)
        seen.append(m)
        if worst < float(ctx.thresholds["min_fraction"]) * expected.value:
            link = f"gen{device.pcie_gen_current} x{device.pcie_width_current}"
            low.append(f"{m.node}/{m.device}: H2D {gbps(m.h2d_bps)}, D2H {gbps(m.d2h_bps)} vs {gbps(expected.value)} "
                       f"for gen{device.pcie_gen_max} x{device.pcie_width_max} (link now {link})")
    if low:
        return warn("; ".join(low), f">= {ctx.thresholds['min_fraction']} x the link's theoretical rate",
                    "check the link (`nvidia-smi -q -d PCIE`, `lspci -vv`: LnkSta vs LnkCap) and NUMA placement "
                    "(`nvidia-smi topo -m`); reseat or replace a downtrained card")
    if not seen:
        return skip("no PCIe link facts for the benchmarked GPUs")
    return passed(", ".join(f"{m.node}/{m.device} H2D {gbps(m.h2d_bps)} D2H {gbps(m.d2h_bps)}" for m in seen[:4]))


@check("bench.host_memory_bandwidth", group=GROUP, title="Host memory bandwidth alike on every node",
       thresholds={"min_fraction_of_median": 0.7}, scope="cluster")
def host_memory_bandwidth(ctx: ClusterContext) -> Outcome:
    """On nodes without GPUs, a host memory copy (bytes read + written per second). Host memory
    speed depends on the CPU and its memory channels, so the expectation is the cluster's own
    median: a node below ``min_fraction_of_median`` of it has fewer populated channels, a
    throttled CPU or a noisy neighbour."""
    bench = _results(ctx)
    if isinstance(bench, Outcome):
        return bench
    rows = [m for m in bench.memory if m.device == "host" and m.host_bps]
    if not rows:
        return skip("no host memory benchmark (GPU nodes, or --no-memory)")
    median = statistics.median(m.host_bps for m in rows)  # type: ignore[misc]
    low = [m for m in rows if m.host_bps < float(ctx.thresholds["min_fraction_of_median"]) * median]  # type: ignore[operator]
    listing = ", ".join(f"{m.node} {gbps(m.host_bps)}" for m in rows)
    if low:
        return warn(listing, f">= {ctx.thresholds['min_fraction_of_median']} x the median {gbps(median)}",
                    f"check {', '.join(m.node for m in low)}: memory configuration (`dmidecode -t memory`), "
                    "CPU frequency scaling, other load")
    if len(rows) == 1:
        return passed(f"{listing} (one node: nothing to compare with)")
    return passed(listing)
