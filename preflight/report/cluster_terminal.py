"""The cluster report: one row per node, then findings grouped by check with the affected nodes
listed together ("12 nodes: /dev/shm 64 MiB"), then the verdict."""

from __future__ import annotations

from collections import defaultdict

from rich.console import Console
from rich.table import Table
from rich.text import Text

from preflight.cluster.judge import NodeEntry
from preflight.findings import Finding, Status, worst
from preflight.registry import CLUSTER_NODE, GROUP_ORDER
from preflight.report.terminal import STYLES, verdict_line

MAX_NAMES = 6


def _names(nodes: list[str]) -> str:
    shown = ", ".join(nodes[:MAX_NAMES])
    more = f" and {len(nodes) - MAX_NAMES} more" if len(nodes) > MAX_NAMES else ""
    return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''} ({shown}{more})" if len(nodes) > 1 else nodes[0]


def _nccl(entry: NodeEntry) -> str:
    assert entry.facts is not None
    wheels = [v for k, v in entry.facts.python.packages.items() if k.startswith("nvidia-nccl-")]
    return ", ".join(wheels) or "-"


def node_status(name: str, own: list[Finding], cluster: list[Finding]) -> Status:
    """A node's worst finding, counting the cross-node findings that name it as the odd one out."""
    blamed = [f for f in cluster if name in f.evidence.get("nodes", [])]
    return worst(own + blamed)


def node_table(entries: list[NodeEntry], per_node: dict[str, list[Finding]], cluster: list[Finding]) -> Table:
    table = Table(title="Nodes", title_justify="left", title_style="bold", expand=True)
    for name in ("host", "GPUs", "driver", "CUDA", "torch", "NCCL", "status"):
        table.add_column(name, no_wrap=name in ("host", "status"))
    for entry in entries:
        status = node_status(entry.name, per_node[entry.name], cluster)
        label = Text(status.label, style=STYLES[status])
        if entry.facts is None:
            table.add_row(entry.name, "-", "-", "-", "-", "-", Text("unreached", style=STYLES[Status.FAIL]))
            continue
        f = entry.facts
        models = sorted({d.name or "?" for d in f.gpu.devices})
        gpus = f"{len(f.gpu.devices)}× {', '.join(models)}" if f.gpu.devices else "none"
        table.add_row(
            entry.name,
            gpus,
            f.gpu.driver_version or "-",
            f.gpu.cuda_driver_version or "-",
            f.python.packages.get("torch", "-"),
            _nccl(entry),
            label,
        )
    return table


def _grouped_details(findings: list[Finding]) -> Text:
    """Nodes with the same status and observation are listed together."""
    buckets: dict[tuple[Status, str], list[Finding]] = defaultdict(list)
    for f in findings:
        buckets[(f.status, f.observed)].append(f)
    text = Text()
    for (status, observed), group in sorted(buckets.items(), key=lambda kv: -kv[0][0]):
        if text:
            text.append("\n")
        text.append(f"{status.label}: ", style=STYLES[status])
        nodes = [g.node for g in group if g.node != CLUSTER_NODE]
        text.append(f"{_names(nodes)}: {observed}" if nodes else observed)
        if status not in (Status.PASS, Status.SKIP):
            if group[0].expected:
                text.append(f"\n  expected: {group[0].expected}", style="dim")
            if group[0].remediation:
                text.append("\n  fix: ", style="bold")
                text.append(group[0].remediation)
    return text


def _check_rows(findings: list[Finding]) -> list[tuple[str, Status, Text]]:
    by_check: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_check[f.id].append(f)
    rows = []
    for check_id, group in by_check.items():
        status = max(f.status for f in group)
        if status in (Status.PASS, Status.SKIP) and len({f.observed for f in group}) > 1:
            details = Text(f"{status.label} on {_names([f.node for f in group])}")
        else:
            details = _grouped_details(group)
        rows.append((check_id, status, details))
    return rows


def _merge_passes(rows: list[tuple[str, Status, Text]], nodes: int) -> list[tuple[str, Status, Text]]:
    """Checks that passed everywhere share one row: the report is about what is wrong."""
    passing = [r for r in rows if r[1] == Status.PASS]
    if len(passing) < 2:
        return rows
    where = "the cluster" if nodes > 1 else "this node"
    details = Text(f"passed on {where}: ", style="green")
    details.append(", ".join(r[0] for r in passing), style="dim")
    return [r for r in rows if r[1] != Status.PASS] + [(f"{len(passing)} checks", Status.PASS, details)]


def _merge_skips(rows: list[tuple[str, Status, Text]]) -> list[tuple[str, Status, Text]]:
    """Skipped checks that give the same reason share one row."""
    kept = [r for r in rows if r[1] != Status.SKIP]
    by_reason: dict[str, list[tuple[str, Status, Text]]] = defaultdict(list)
    for row in rows:
        if row[1] == Status.SKIP:
            by_reason[str(row[2])].append(row)
    for same in by_reason.values():
        if len(same) == 1:
            kept.append(same[0])
            continue
        details = Text(", ".join(r[0] for r in same) + "\n", style="dim")
        details.append_text(same[0][2])
        kept.append((f"{len(same)} checks", Status.SKIP, details))
    return kept


def render_cluster_terminal(
    console: Console,
    command: str,
    entries: list[NodeEntry],
    per_node: dict[str, list[Finding]],
    cluster: list[Finding],
    exit_code: int,
    *,
    strict: bool,
) -> None:
    reached = sum(1 for e in entries if e.facts is not None)
    console.print(Text(f"preflight {command}: {len(entries)} node(s), {reached} reached", style="bold"))
    console.print(node_table(entries, per_node, cluster))
    everything = [f for findings in per_node.values() for f in findings] + cluster
    for group in GROUP_ORDER:
        rows = _check_rows([f for f in everything if f.group == group])
        if not rows:
            continue
        rows = _merge_passes(_merge_skips(rows), len(entries))
        table = Table(title=group, title_justify="left", title_style="bold", expand=True, show_lines=True)
        table.add_column("status", width=6, no_wrap=True)
        table.add_column("check", style="cyan", no_wrap=True, min_width=max(len(r[0]) for r in rows))
        table.add_column("nodes · observed · fix", ratio=1)
        for check_id, status, details in rows:
            table.add_row(Text(status.label, style=STYLES[status]), check_id, details)
        console.print(table)
    console.print(verdict_line(everything, exit_code, strict))
