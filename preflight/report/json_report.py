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
