"""Checks and their registry: the ``@check`` decorator, selection by id or glob, and the runner.

A check is a pure function ``(ctx: CheckContext) -> Outcome`` in one module of ``checks/``,
declared with ``@check(id, group, title, thresholds={...})``. The registry is built by scanning
those modules, so adding a check is adding one decorated function.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from preflight.compat import Matrix, shipped_matrix
from preflight.errors import InputError
from preflight.facts import NodeFacts
from preflight.findings import Finding, Outcome, Status
from preflight.settings import Threshold

CHECK_MODULES = ("gpu", "driver", "packages", "versions", "system", "network_env", "network", "consistency", "bench")
BENCH_PREFIX = "bench."

GROUP_ORDER = (
    "Reaching the nodes",
    "GPUs",
    "Driver and CUDA",
    "Python packages",
    "System",
    "Network environment",
    "Cluster consistency",
    "Benchmarks",
)
CLUSTER_NODE = "cluster"



@dataclass(frozen=True)
class RunOptions:
    """What does not come from the node: what the user told us to expect, and the knowledge
    to judge with (``matrix``: None means the compatibility data shipped with this release)."""

    expect_gpus: int | None = None
    matrix: Matrix | None = None
    use: tuple[str, ...] = ()  # features the job will use (--use bf16,fp8,...)


@dataclass(frozen=True)
class CheckContext:
    facts: NodeFacts
    thresholds: dict[str, Threshold]
    options: RunOptions = field(default_factory=RunOptions)

    @property
    def matrix(self) -> Matrix:
        return self.options.matrix or shipped_matrix()


@dataclass(frozen=True)
class ClusterContext:
    """What a cross-node check sees: the facts of every node that answered."""

    nodes: list[NodeFacts]
    thresholds: dict[str, Threshold]
    options: RunOptions = field(default_factory=RunOptions)
    network: Any = None  # preflight.net.paths.NetworkTests, when the path tests ran
    bench: Any = None  # preflight.bench.results.BenchResults, when the benchmarks ran


@dataclass(frozen=True)
class CheckSpec:
    id: str
    group: str
    title: str
    func: Callable[[Any], Outcome]
    thresholds: dict[str, Threshold]
    scope: str = "node"  # "node": once per node; "cluster": once across all nodes

    @property
    def doc(self) -> str:
        return " ".join((self.func.__doc__ or "").split())


def check(
    check_id: str,
    *,
    group: str,
    title: str,
    thresholds: dict[str, Threshold] | None = None,
    scope: str = "node",
) -> Callable[[Callable[[Any], Outcome]], Callable[[Any], Outcome]]:
    """Declare a check; the function is returned unchanged, with its spec attached.

    ``scope="node"`` checks take a ``CheckContext`` and run once per node; ``scope="cluster"``
    checks take a ``ClusterContext`` and run once across the nodes of a cluster run.
    """
    if group not in GROUP_ORDER:
        raise ValueError(f"unknown group {group!r} for {check_id}")
    if scope not in ("node", "cluster"):
        raise ValueError(f"unknown scope {scope!r} for {check_id}")

    def wrap(func: Callable[[Any], Outcome]) -> Callable[[Any], Outcome]:
        func.__preflight_check__ = CheckSpec(  # type: ignore[attr-defined]
            check_id, group, title, func, dict(thresholds or {}), scope
        )
        return func

    return wrap


def load_checks() -> dict[str, CheckSpec]:
    """Every check shipped in ``preflight.checks``, by id, in module then definition order."""
    specs: dict[str, CheckSpec] = {}
    for name in CHECK_MODULES:
        module = importlib.import_module(f"preflight.checks.{name}")
        for value in vars(module).values():
            spec = getattr(value, "__preflight_check__", None)
            if isinstance(spec, CheckSpec):
                if spec.id in specs:
                    raise ValueError(f"duplicate check id {spec.id}")
                specs[spec.id] = spec
    return specs


def select(
    specs: dict[str, CheckSpec], only: Iterable[str], skip: Iterable[str], *, source: str
) -> list[CheckSpec]:
    """Checks left after ``--only`` and ``--skip`` (ids or globs); a pattern matching nothing is an error."""
    only, skip = list(only), list(skip)
    for pattern in [*only, *skip]:
        if not any(fnmatch.fnmatchcase(cid, pattern) for cid in specs):
            raise InputError(f"unknown check id {pattern!r} (see `preflight checks`)", source=source)
    chosen = [
        s for cid, s in specs.items() if not only or any(fnmatch.fnmatchcase(cid, p) for p in only)
    ]
    return [s for s in chosen if not any(fnmatch.fnmatchcase(s.id, p) for p in skip)]


def _finding(spec: CheckSpec, node: str, outcome: Outcome) -> Finding:
    return Finding(
        spec.id,
        outcome.status,
        node,
        spec.title,
        spec.group,
        outcome.observed,
        outcome.expected,
        outcome.remediation,
        _jsonable(outcome.evidence),
    )


def _safely(spec: CheckSpec, ctx: Any) -> Outcome:
    """Run one check; a check that raises becomes an ``error`` outcome, never a crash."""
    try:
        return spec.func(ctx)
    except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
        return Outcome(
            Status.ERROR,
            f"the check raised {type(exc).__name__}: {exc}",
            "",
            "report this as a preflight bug, with the facts file (--save-facts)",
        )


def run_checks(
    facts: NodeFacts,
    specs: Iterable[CheckSpec],
    overrides: dict[str, dict[str, Threshold]],
    options: RunOptions,
) -> list[Finding]:
    """Run the node-scope checks on one node's facts."""
    findings = []
    for spec in specs:
        if spec.scope != "node":
            continue
        thresholds = {**spec.thresholds, **overrides.get(spec.id, {})}
        findings.append(_finding(spec, facts.node, _safely(spec, CheckContext(facts, thresholds, options))))
    return findings


def run_cluster_checks(
    nodes: list[NodeFacts],
    specs: Iterable[CheckSpec],
    overrides: dict[str, dict[str, Threshold]],
    options: RunOptions,
    network: Any = None,
    bench: Any = None,
) -> list[Finding]:
    """Run the cluster-scope checks once across all nodes that answered. The benchmark checks
    run only when the benchmarks did (they are asked for, not skipped otherwise)."""
    findings = []
    for spec in specs:
        if spec.scope != "cluster" or (bench is None and spec.id.startswith(BENCH_PREFIX)):
            continue
        thresholds = {**spec.thresholds, **overrides.get(spec.id, {})}
        ctx = ClusterContext(nodes, thresholds, options, network, bench)
        findings.append(_finding(spec, CLUSTER_NODE, _safely(spec, ctx)))
    return findings


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
