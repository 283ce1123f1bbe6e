"""Shared test helpers: load fixtures of real machines, run the CLI in-process."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from preflight.facts import NodeFacts, parse_facts
from preflight.findings import Finding
from preflight.registry import RunOptions, load_checks, run_checks

FIXTURES = Path(__file__).parent / "fixtures"

# real sshd hosts in network namespaces (tests/netlab.py); skipped where not root
pytest_plugins = ["netlab"]


def fixture_data(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def fixture_facts(name: str, edit=None) -> NodeFacts:  # noqa: ANN001 - optional dict mutator
    """Facts of a recorded machine, optionally changed by ``edit(data)`` before loading."""
    data = copy.deepcopy(fixture_data(name))
    if edit is not None:
        edit(data)
    return parse_facts(data, f"{name}.json")


def judge(facts: NodeFacts, *, expect_gpus: int | None = None, thresholds=None) -> dict[str, Finding]:  # noqa: ANN001
    findings = run_checks(facts, load_checks().values(), thresholds or {}, RunOptions(expect_gpus))
    return {f.id: f for f in findings}


@pytest.fixture
def run_cli(capsys):  # noqa: ANN001, ANN201
    """Run ``preflight ARGS`` in-process; returns (exit code, stdout, stderr)."""
    from preflight.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
