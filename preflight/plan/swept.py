"""The cluster as ``preflight cluster`` swept it, for the planner: nodes, GPUs and their memory,
the links inside and between nodes, host RAM, and a benchmark's measured bus bandwidth."""

from __future__ import annotations

import re
from typing import Any

from preflight.errors import InputError
from preflight.plan.search import DEFAULT_INTER_BW, DEFAULT_INTRA_BW, Cluster

NVLINK_LINK_BYTES = 25e9  # NVLink 3 and 4: 25 GB/s per link per direction (A100 12 links = 300 GB/s, H100 18 = 450)
PCIE_LANE_BYTES = {3: 0.985e9, 4: 1.969e9, 5: 3.938e9, 6: 7.563e9}  # PCI-SIG per-lane rates after encoding
LINK_EFFICIENCY = 0.8  # achievable bus bandwidth against the link rate (nccl-tests runs reach 75-90 %)


def cluster_from_facts(facts_list: list[Any], *, measured_inter_bus_bw: float | None = None,
                       tflops: float) -> Cluster:
    """The cluster as the sweep saw it: nodes reached, the fewest GPUs and the smallest GPU memory
    of any node, NVLink (links up x 25 GB/s per direction) or the PCIe link inside a node, the
    InfiniBand ports that are ACTIVE (else the fastest Ethernet interface) across nodes. A measured
    bus bandwidth (``preflight cluster --bench``) replaces the inter-node figure."""
    with_gpus = [f for f in facts_list if f is not None and f.gpu.devices]
    if not with_gpus:
        raise InputError("--plan: no swept node reported a GPU (NVML / nvidia-smi), so there is nothing to plan on")
    gpus_per_node = min(len(f.gpu.devices) for f in with_gpus)
    memories = [d.memory_total_bytes for f in with_gpus for d in f.gpu.devices if d.memory_total_bytes]
    if not memories:
        raise InputError("--plan: the nodes did not report GPU memory")
    sources: dict[str, str] = {"gpu_memory": "smallest GPU memory the nodes reported (NVML)"}
    intra, intra_src = [], []
    for f in with_gpus:
        links = [d.nvlink_up for d in f.gpu.devices if d.nvlink_up]
        if links:
            intra.append(min(links) * NVLINK_LINK_BYTES * LINK_EFFICIENCY)
            intra_src.append(f"NVLink, {min(links)} links up")
        else:
            lanes = [PCIE_LANE_BYTES.get(d.pcie_gen_current or 0, 0) * (d.pcie_width_current or 0)
                     for d in f.gpu.devices]
            if lanes and min(lanes) > 0:
                intra.append(min(lanes) * LINK_EFFICIENCY)
                intra_src.append("PCIe link (no NVLink up)")
    if intra:
        intra_bw = min(intra)
        sources["intra_bw"] = f"{intra_src[intra.index(intra_bw)]}, x{LINK_EFFICIENCY} achievable"
    else:
        intra_bw = DEFAULT_INTRA_BW
        sources["intra_bw"] = "assumed: the facts show neither NVLink nor the PCIe link"
    if measured_inter_bus_bw:
        inter_bw = measured_inter_bus_bw
        sources["inter_bw"] = "measured bus bandwidth (benchmark)"
    else:
        per_node = [_node_network_bytes(f) for f in with_gpus]
        known = [v for v in per_node if v]
        if known:
            inter_bw = min(known) * LINK_EFFICIENCY
            sources["inter_bw"] = f"node NICs (InfiniBand ports ACTIVE, else Ethernet speed), x{LINK_EFFICIENCY} achievable"
        else:
            inter_bw = DEFAULT_INTER_BW
            sources["inter_bw"] = "assumed: the facts show no link speed"
    hosts = [f.system.memory.total_bytes for f in with_gpus if f.system.memory.total_bytes]
    return Cluster(nodes=len(with_gpus), gpus_per_node=gpus_per_node, gpu_memory=min(memories),
                   intra_bw=intra_bw, inter_bw=inter_bw, flops=tflops * 1e12,
                   host_memory=min(hosts) if hosts else None, gpu_name=with_gpus[0].gpu.devices[0].name,
                   sources=sources)


def _node_network_bytes(facts: Any) -> float:
    """A node's network bytes/s: the sum of its ACTIVE InfiniBand ports (RoCE ports when it has no
    InfiniBand ones: Ethernet-layer ports beside InfiniBand are the front-end network), else its
    fastest NIC."""
    total = 0.0
    active = [p for p in facts.network.infiniband if p.state and "ACTIVE" in p.state.upper() and p.rate]
    infiniband = [p for p in active if (p.link_layer or "").lower() == "infiniband"]
    for port in infiniband or active:
        match = re.match(r"\s*([0-9.]+)\s*Gb", port.rate)
        if match:
            total += float(match.group(1)) * 1e9 / 8
    if total:
        return total
    speeds = [i.speed_mbps for i in facts.network.interfaces if i.up and i.speed_mbps and i.name != "lo"]
    return max(speeds) * 1e6 / 8 if speeds else 0.0


def measured_bus_bandwidth(bench: Any) -> tuple[float | None, float | None]:
    """(intra-node, inter-node) bus bandwidth in bytes/s from a completed ``--bench`` all-reduce:
    its largest message size, which spans every node (inter) or one node (intra)."""
    if bench is None or not getattr(bench, "completed", False):
        return None, None
    largest = bench.largest()
    if largest is None or largest.busbw <= 0:
        return None, None
    return (None, largest.busbw) if len(bench.nodes) > 1 else (largest.busbw, None)
