"""Judge a cluster: per-node checks on every node that answered, a finding for every node that did
not, and the cross-node checks across the rest. Pure: facts in, findings out."""

from __future__ import annotations

from dataclasses import dataclass

from preflight.facts import NodeFacts
from preflight.findings import Finding, Status
from preflight.registry import CheckSpec, RunOptions, Threshold, run_checks, run_cluster_checks

REACH_GROUP = "Reaching the nodes"
FAILURE_TITLES = {"ssh": "Node reachable over SSH", "probe": "Probe ran on the node"}


@dataclass(frozen=True)
class NodeEntry:
    """One node of the run: its name, and either its facts or why there are none."""

    name: str
    facts: NodeFacts | None
    failure_id: str | None = None
    failure_message: str = ""
    failure_remediation: str = ""


def failure_finding(entry: NodeEntry) -> Finding:
    assert entry.failure_id is not None
    return Finding(
        entry.failure_id,
        Status.FAIL,
        entry.name,
        FAILURE_TITLES[entry.failure_id.split(".", 1)[0]],
        REACH_GROUP,
        entry.failure_message,
        "",
        entry.failure_remediation,
        {},
    )


def judge_cluster(
    entries: list[NodeEntry],
    specs: list[CheckSpec],
    overrides: dict[str, dict[str, Threshold]],
    options: RunOptions,
    network: object = None,
    bench: object = None,
) -> tuple[dict[str, list[Finding]], list[Finding]]:
    """Findings per node (in the entries' order) and the cross-node findings."""
    per_node: dict[str, list[Finding]] = {}
    for entry in entries:
        if entry.facts is None:
            per_node[entry.name] = [failure_finding(entry)]
        else:
            per_node[entry.name] = run_checks(entry.facts, specs, overrides, options)
    answered = [e.facts for e in entries if e.facts is not None]
    return per_node, run_cluster_checks(answered, specs, overrides, options, network, bench)
