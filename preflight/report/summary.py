"""A short summary of a node's facts, shared by the terminal header and the JSON document."""

from __future__ import annotations

from typing import Any

from preflight.facts import NodeFacts
from preflight.findings import Finding, Status


def facts_summary(facts: NodeFacts) -> dict[str, Any]:
    gpus = facts.gpu.devices
    names = sorted({d.name or "?" for d in gpus})
    return {
        "node": facts.node,
        "collected_at": facts.probe.collected_at,
        "os": facts.system.os_name,
        "kernel": facts.system.kernel,
        "cpu": facts.system.cpu_model,
        "ram_bytes": facts.system.memory.total_bytes,
        "gpu_count": len(gpus),
        "gpu_models": names,
        "gpu_source": facts.gpu.source,
        "driver_version": facts.gpu.driver_version,
        "cuda_driver_version": facts.gpu.cuda_driver_version,
        "python": facts.python.version,
        "python_executable": facts.python.executable,
        "torch": facts.python.packages.get("torch"),
        "torch_cuda": facts.python.torch_cuda,
        "container": facts.identity.container.cgroup_runtime
        or ("docker" if facts.identity.container.dockerenv else None),
        "probe_duration_s": facts.probe.duration_s,
    }


def counts(findings: list[Finding]) -> dict[str, int]:
    return {s.label: sum(1 for f in findings if f.status == s) for s in Status}
