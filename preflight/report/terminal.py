"""The terminal report: a header, one table per group of checks, and a one-line verdict."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from preflight.facts import NodeFacts
from preflight.findings import Finding, Status, worst
from preflight.registry import GROUP_ORDER
from preflight.report.summary import counts, facts_summary

STYLES = {
    Status.PASS: "green",
    Status.SKIP: "dim",
    Status.WARN: "yellow",
    Status.FAIL: "bold red",
    Status.ERROR: "bold magenta",
}


def _header(command: str, facts: NodeFacts) -> Text:
    s = facts_summary(facts)
    gpus = f"{s['gpu_count']}× {', '.join(s['gpu_models'])}" if s["gpu_count"] else "no GPU"
    driver = f"driver {s['driver_version']} (CUDA {s['cuda_driver_version']})" if s["driver_version"] else ""
    torch = f"torch {s['torch']}" + (f" (CUDA {s['torch_cuda']})" if s["torch_cuda"] else "") if s["torch"] else "no torch"
    parts = [gpus, driver, f"Python {s['python']}", torch, s["os"] or ""]
    text = Text()
    text.append(f"preflight {command}: {s['node']}", style="bold")
    if command == "replay":
        text.append(f" (facts collected {s['collected_at']})")
    text.append("  " + " · ".join(p for p in parts if p))
    return text


def _details(f: Finding) -> Text:
    text = Text(f.observed)
    if f.status in (Status.PASS, Status.SKIP):
        return text
    if f.expected:
        text.append(f"\nexpected: {f.expected}", style="dim")
    if f.remediation:
        text.append("\nfix: ", style="bold")
        text.append(f.remediation)
    return text


def _table(group: str, findings: list[Finding]) -> Table:
    width = max(len(f.id) for f in findings)
    table = Table(title=group, title_justify="left", title_style="bold", expand=True, show_lines=True)
    table.add_column("status", width=6, no_wrap=True)
    table.add_column("check", style="cyan", no_wrap=True, min_width=width)
    table.add_column("observed · expected · fix", ratio=1)
    for f in findings:
        table.add_row(Text(f.status.label, style=STYLES[f.status]), f.id, _details(f))
    return table


def verdict_line(findings: list[Finding], exit_code: int, strict: bool) -> Text:
    c = counts(findings)
    verdict = worst(findings)
    if exit_code == 0:
        head = "READY" if verdict < Status.WARN else "READY, with warnings"
        style = "bold green" if verdict < Status.WARN else "bold yellow"
    else:
        head = "NOT READY" + (" (--strict: warnings fail)" if strict and verdict == Status.WARN else "")
        style = "bold red"
    text = Text(head, style=style)
    text.append(
        f"  {c['fail']} failed, {c['error']} errors, {c['warn']} warnings, "
        f"{c['pass']} passed, {c['skip']} skipped  (exit {exit_code})"
    )
    return text


def render_terminal(
    console: Console,
    command: str,
    facts: NodeFacts,
    findings: list[Finding],
    exit_code: int,
    *,
    strict: bool,
) -> None:
    console.print(_header(command, facts))
    for group in GROUP_ORDER:
        rows = [f for f in findings if f.group == group]
        if rows:
            console.print(_table(group, rows))
    console.print(verdict_line(findings, exit_code, strict))


def wheels_table(wheels: list, cc: str | None, driver: str | None) -> Table:  # list[WheelOption]
    """Official torch wheels that work on the GPU and driver asked about, newest first."""
    where = " and ".join(x for x in (f"compute capability {cc}" if cc else "", f"driver {driver}" if driver else "") if x)
    table = Table(title=f"torch wheels that work with {where}", title_justify="left", title_style="bold")
    for name in ("torch", "wheel", "GPU code", "driver"):
        table.add_column(name, no_wrap=True)
    table.add_column("install", overflow="fold")
    for w in wheels:
        table.add_row(
            w.torch,
            w.variant,
            "native" if w.code == "sass" else Text("PTX JIT only", style="yellow"),
            "native" if w.driver == "native" else Text("minor-version compat", style="yellow"),
            f"pip install 'torch=={w.torch}.*' --index-url https://download.pytorch.org/whl/{w.variant}",
        )
    return table
