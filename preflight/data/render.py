"""The report of ``preflight data``: terminal (statistics, a token-length histogram, one table of
problems, a verdict) and one JSON document."""

from __future__ import annotations

import json
from typing import Any

from preflight.data.analysis import DataReport
from preflight.data.scan import SplitScan
from preflight.findings import Status, worst


def _split_json(scan: SplitScan) -> dict[str, Any]:
    files = getattr(scan.path, "paths", None)  # several files read as one split (a folder, --dataset a,b)
    return {"path": str(scan.path), **({"files": [str(p) for p in files]} if files else {}),
            "format": scan.schema.to_json(), "stats": scan.stats.to_json(),
            "chat_template_counted": scan.schema.format != "text"}


def render_json(report: DataReport, code: int) -> str:
    counts = {s.label: sum(1 for f in report.findings if f.status == s) for s in Status}
    return json.dumps({
        "schema_version": 1,
        "command": "data",
        "splits": {"train": _split_json(report.train),
                   **({"eval": _split_json(report.eval)} if report.eval is not None else {})},
        "tokens": {"exact": report.tokens.exact, "how": report.tokens.label, "max_tokens": report.max_tokens,
                   "template": {"per_turn": report.tokens.per_turn, "per_sample": report.tokens.per_sample,
                                "how": report.tokens.template}},
        "near_duplicates": report.near,
        "fix": report.fixed,
        "seconds": round(report.seconds, 3),
        "findings": [f.to_json() for f in report.findings],
        "verdict": {"status": worst(report.findings).label, "exit_code": code, "counts": counts},
    }, indent=2, ensure_ascii=False)


def _stats_table(report: DataReport):  # noqa: ANN202 - a rich Table
    from rich.table import Table

    kind = "exact" if report.tokens.exact else "estimated"
    table = Table(title="Statistics", title_justify="left", title_style="bold", expand=False)
    for column in ("split", "format", "records", "samples", f"tokens ({kind}) p50 / p95 / max",
                   "turns", "scripts"):
        table.add_column(column, justify="right" if column in ("records", "samples") else "left")
    for name, scan in (("train", report.train), ("eval", report.eval)):
        if scan is None:
            continue
        st = scan.stats
        tokens = f"{st.percentile(0.5):,} / {st.percentile(0.95):,} / {st.percentile(1.0):,}"
        turns = ", ".join(f"{k}: {v:,}" for k, v in sorted(st.turns.items())[:6])
        total = sum(st.scripts.values()) or 1
        scripts = ", ".join(f"{k} {v * 100 / total:.0f}%" for k, v in st.scripts.most_common(4))
        table.add_row(name, scan.schema.format, f"{st.records:,}", f"{st.samples:,}", tokens, turns, scripts)
    return table


def _histogram(report: DataReport, width: int):  # noqa: ANN202 - rich Text
    from rich.text import Text

    rows = report.train.stats.histogram()
    text = Text()
    kind = "exact" if report.tokens.exact else "estimated"
    text.append(f"tokens per sample ({kind}), train\n", style="bold")
    peak = max((c for _, _, c in rows), default=0) or 1
    bar_width = max(10, width - 30)
    limit = report.max_tokens
    for label, edge, count in rows:
        bar = "█" * max(1 if count else 0, round(count / peak * bar_width))
        over = limit is not None and (edge is None or edge > limit)
        text.append(f"{label:>8} ")
        text.append(bar, style="red" if over else "cyan")
        text.append(f" {count:,}\n")
    return text


def _labels(report: DataReport):  # noqa: ANN202 - rich Text or None
    from rich.text import Text

    st = report.train.stats
    if not st.classification_like():
        return None
    text = Text("labels (classification-like data), train: ", style="bold")
    text.append(", ".join(f"{k!r} {v:,}" for k, v in st.labels.most_common(10)))
    if len(st.labels) > 10:
        text.append(f", … {len(st.labels) - 10} more")
    return text


def _details(f):  # noqa: ANN001, ANN202 - a Finding; rich Text
    """The count, then one location per line (its detail beside it), then how many more."""
    from rich.text import Text

    locations = f.evidence.get("locations") or []
    if not locations:
        return Text(f.observed)
    count = f.evidence.get("count", len(locations))
    text = Text(f"{count:,} record{'s' if count != 1 else ''}")
    for loc in locations:
        text.append("\n")
        text.append(loc["at"], style="bold")
        text.append(f" {loc['detail']}")
    if count > len(locations):
        text.append(f"\n… and {count - len(locations):,} more", style="dim")
    return text


def render_terminal(console, report: DataReport, code: int, strict: bool) -> None:  # noqa: ANN001 - rich Console
    from rich.table import Table
    from rich.text import Text

    from preflight.report.terminal import STYLES, verdict_line

    head = Text("preflight data: ", style="bold")
    for name, scan in (("train", report.train), ("eval", report.eval)):
        if scan is not None:
            head.append(f"{name} {scan.path} ", style="bold")
            head.append(f"({scan.schema.format}; {scan.schema.how})  ")
    console.print(head)
    console.print(_stats_table(report))
    console.print(_histogram(report, min(console.width, 100)))
    labels = _labels(report)
    if labels is not None:
        console.print(labels)
    if not report.tokens.exact:
        console.print(Text(f"token counts are an {report.tokens.label}; --tokenizer PATH counts exactly", style="dim"))
    else:
        plain = all(scan.schema.format == "text" for scan in (report.train, report.eval) if scan is not None)
        template = "none (plain text is trained as written)" if plain else report.tokens.template
        console.print(Text(f"token counts are {report.tokens.label}, chat template {template}", style="dim"))
    problems = sorted((f for f in report.findings if f.status >= Status.WARN), key=lambda f: -f.status)
    if problems:
        table = Table(title="Problems", title_justify="left", title_style="bold", expand=True, show_lines=True)
        table.add_column("status", width=6, no_wrap=True)
        table.add_column("check", style="cyan", no_wrap=True)
        table.add_column("where · observed · fix", ratio=1)
        for f in problems:
            details = _details(f)
            details.append("\nfix: ", style="bold")
            details.append(f.remediation)
            table.add_row(Text(f.status.label, style=STYLES[f.status]), f.id, details)
        console.print(table)
    passed = [f.id for f in report.findings if f.status == Status.PASS]
    skipped = [f for f in report.findings if f.status == Status.SKIP]
    if passed:
        console.print(Text(f"passed: {', '.join(passed)}", style="green"))
    for f in skipped:
        console.print(Text(f"skipped {f.id}: {f.observed}", style="dim"))
    if report.fixed:
        console.print(Text(f"--fix: wrote {report.fixed['written']:,} records to {report.fixed['path']} "
                           f"({report.fixed['dropped']:,} dropped; the input is unchanged)", style="bold"))
    console.print(verdict_line(report.findings, code, strict))
