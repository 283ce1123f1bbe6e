"""The benchmark in the terminal: an nccl-tests-like table, a bandwidth-vs-size chart, the pair
results, and the memory benchmark per GPU (or host)."""

from __future__ import annotations

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from preflight.bench.results import BenchResults

BAR = 40


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def _gb(value: float | None) -> str:
    return "" if value is None else f"{value / 1e9:.2f}"


def sizes_table(bench: BenchResults) -> Table:
    table = Table(title=f"all-reduce, {bench.backend}, {bench.world_size} ranks on {len(bench.nodes)} node(s) "
                  "(float32 elements; time per op; GB/s = 1e9 B/s, as nccl-tests)", title_justify="left", title_style="bold")
    for name in ("size", "count", "iters", "time us", "max us", "algbw", "busbw", "#wrong"):
        table.add_column(name, justify="right", no_wrap=True)
    for s in bench.sizes:
        table.add_row(_size(s.bytes), str(s.count), str(s.iters), f"{s.seconds_avg * 1e6:,.1f}",
                      f"{s.seconds_max * 1e6:,.1f}", _gb(s.algbw), _gb(s.busbw),
                      Text(str(s.wrong), style="red" if s.wrong else ""))
    return table


def chart(bench: BenchResults) -> Text:
    """busbw (algbw with one rank) against message size, one bar per size, with the expectation
    marked when there is one."""
    use_bus = bench.world_size > 1
    values = [(s.bytes, s.busbw if use_bus else s.algbw) for s in bench.sizes]
    if not values:
        return Text("")
    expected = bench.expected_busbw.value if bench.expected_busbw and use_bus else None
    top = max([v for _, v in values] + ([expected] if expected else [])) or 1.0
    label = "busbw" if use_bus else "algbw"
    out = Text(f"{label} vs message size" + (f" (| = expected {expected / 1e9:.2f} GB/s)" if expected else "") + "\n",
               style="bold")
    mark = int(round(expected / top * BAR)) if expected else None
    for size, value in values:
        filled = int(round(value / top * BAR))
        bar = ["█"] * filled + [" "] * (BAR - filled)
        if mark is not None and 0 <= mark < BAR:
            bar[mark] = "|" if mark >= filled else "┃"
        style = "green" if expected is None or value >= bench.expected_fraction * expected else "yellow"
        out.append(f"{_size(size):>8} ")
        out.append("".join(bar), style=style)
        out.append(f" {value / 1e9:.2f} GB/s\n")
    return out


def pairs_table(bench: BenchResults) -> Table | None:
    if not bench.pairs:
        return None
    best = max(p.busbw for p in bench.pairs)
    table = Table(title="pairwise all-reduce (nodes two at a time)", title_justify="left", title_style="bold")
    for name in ("nodes", "size", "ranks", "busbw GB/s", "of best"):
        table.add_column(name, justify="left" if name == "nodes" else "right")
    for p in bench.pairs:
        share = p.busbw / best if best else 0
        style = "yellow" if share < bench.straggler_fraction else ""
        table.add_row(" + ".join(p.nodes), _size(p.bytes), str(p.ranks), _gb(p.busbw), Text(f"{share:.0%}", style=style))
    return table


def memory_table(bench: BenchResults) -> Table | None:
    """One row per GPU (or host); only the columns some row has a value for."""
    if not bench.memory:
        return None
    columns = [
        ("name", lambda m: m.name or ""),
        ("GiB usable/target", lambda m: "" if m.usable_bytes is None
         else f"{m.usable_bytes / 2**30:.1f} / {(m.target_bytes or 0) / 2**30:.1f}"),
        ("D2D", lambda m: _gb(m.d2d_bps)),
        ("H2D", lambda m: _gb(m.h2d_bps)),
        ("D2H", lambda m: _gb(m.d2h_bps)),
        ("host copy", lambda m: _gb(m.host_bps)),
    ]
    columns = [(name, get) for name, get in columns if any(get(m) for m in bench.memory)]
    table = Table(title="memory benchmark (GB/s; a copy counts bytes read + written; GiB = 2^30 B)",
                  title_justify="left", title_style="bold")
    table.add_column("node")
    table.add_column("device")
    for name, _ in columns:
        table.add_column(name, justify="left" if name == "name" else "right")
    for m in bench.memory:
        table.add_row(m.node, m.device, *(get(m) for _, get in columns))
    return table


def render_bench(console: Console, bench: BenchResults) -> None:
    parts: list = []
    if bench.sizes:
        parts += [sizes_table(bench), chart(bench)]
    for extra in (pairs_table(bench), memory_table(bench)):
        if extra is not None:
            parts.append(extra)
    stages = ", ".join(f"{s} {t:.1f}s" for s, t in bench.stage_seconds.items() if s != "finished")
    versions = "; ".join(f"{n}: {v}" for n, v in bench.versions.items())
    parts.append(Text(f"stages (seconds from start): {stages}; total {bench.seconds:.1f} s" +
                      (f"\n{versions}" if versions else ""), style="dim"))
    console.print(Group(*parts))
