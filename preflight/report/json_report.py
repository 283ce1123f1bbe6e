"""The ``--json`` document: one object with the facts summary, the findings and the verdict."""

from __future__ import annotations

import json
from typing import Any

from preflight.facts import NodeFacts
from preflight.findings import Finding, worst
from preflight.report.summary import counts, facts_summary

REPORT_SCHEMA_VERSION = 1


def report_document(
    command: str, facts: NodeFacts, findings: list[Finding], exit_code: int
) -> dict[str, Any]:
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "command": command,
        "facts_schema_version": facts.schema_version,
        "facts": facts_summary(facts),
        "findings": [f.to_json() for f in findings],
        "verdict": {
            "status": worst(findings).label,
            "exit_code": exit_code,
            "counts": counts(findings),
        },
    }


def render_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2)


def cluster_document(
    command: str,
    entries: list,  # list[NodeEntry]
    per_node: dict[str, list[Finding]],
    cluster: list[Finding],
    exit_code: int,
    network: Any = None,
    bench: Any = None,
) -> dict[str, Any]:
    """``nodes: [{host, reached, facts, findings}]``, the cross-node findings, the network path
    tests (when they ran) and the verdict."""
    import dataclasses

    from preflight.facts import facts_to_json

    everything = [f for findings in per_node.values() for f in findings] + cluster
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "command": command,
        "nodes": [
            {
                "host": e.name,
                "reached": e.facts is not None,
                "summary": facts_summary(e.facts) if e.facts is not None else None,
                "facts": facts_to_json(e.facts) if e.facts is not None else None,
                "findings": [f.to_json() for f in per_node[e.name]],
            }
            for e in entries
        ],
        "cluster_findings": [f.to_json() for f in cluster],
        "network_tests": dataclasses.asdict(network) if network is not None else None,
        "benchmark": dataclasses.asdict(bench) if bench is not None else None,
        "verdict": {
            "status": worst(everything).label,
            "exit_code": exit_code,
            "counts": counts(everything),
            "nodes": len(entries),
            "reached": sum(1 for e in entries if e.facts is not None),
        },
    }
