"""Finding, Status and Outcome: the one result type every command renders.

A check returns an ``Outcome`` (status, observed, expected, remediation, evidence); the runner
stamps it with the check's stable id, title and the node's name to make a ``Finding``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Status(enum.IntEnum):
    """Ordered from best to worst; a verdict is the worst status present."""

    PASS = 0
    SKIP = 1
    WARN = 2
    FAIL = 3
    ERROR = 4  # the check itself could not run

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Outcome:
    status: Status
    observed: str = ""
    expected: str = ""
    remediation: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


def passed(observed: str, expected: str = "", **evidence: Any) -> Outcome:
    return Outcome(Status.PASS, observed, expected, "", evidence)


def warn(observed: str, expected: str, remediation: str, **evidence: Any) -> Outcome:
    return Outcome(Status.WARN, observed, expected, remediation, evidence)


def fail(observed: str, expected: str, remediation: str, **evidence: Any) -> Outcome:
    return Outcome(Status.FAIL, observed, expected, remediation, evidence)


def skip(reason: str, **evidence: Any) -> Outcome:
    return Outcome(Status.SKIP, reason, "", "", evidence)


@dataclass(frozen=True)
class Finding:
    id: str
    status: Status
    node: str
    title: str
    group: str
    observed: str
    expected: str
    remediation: str
    evidence: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.label,
            "node": self.node,
            "title": self.title,
            "group": self.group,
            "observed": self.observed,
            "expected": self.expected,
            "remediation": self.remediation,
            "evidence": self.evidence,
        }


def worst(findings: list[Finding]) -> Status:
    """The verdict: the worst status, where a skipped check counts as nothing wrong."""
    return max((f.status for f in findings if f.status != Status.SKIP), default=Status.PASS)


def exit_code(findings: list[Finding], *, strict: bool) -> int:
    """0 when nothing failed (warnings allowed unless strict), else 1."""
    verdict = worst(findings)
    if verdict >= Status.FAIL or (strict and verdict == Status.WARN):
        return 1
    return 0
