"""A terminal chart of loss and learning rate against step, with the diagnosed events marked.

Drawn with rich on a character grid (no plotting dependency): train loss ``•``, eval loss ``◆``,
and a second, smaller panel for the learning rate; a ``▲`` under the axis marks each step where a
diagnosis fired.
"""

from __future__ import annotations

import bisect
import math
from itertools import compress

from rich.text import Text

from preflight.logs.series import Series

# Up to this many points a panel is drawn point by point. Above, each column shows the range of
# its points (a C-level min and max over its slice of the series): a million-point log draws in
# milliseconds instead of seconds, and on a dense curve the two pictures are the same.
EXACT_UP_TO = 20_000


def _finite(series: Series) -> tuple[list[int], list[float]]:
    """The steps and values of the finite points (a NaN or inf loss is not drawn)."""
    if math.isfinite(sum(series.values)):  # one C-level pass: a NaN or inf anywhere shows
        return series.steps, series.values
    keep = list(map(math.isfinite, series.values))
    return list(compress(series.steps, keep)), list(compress(series.values, keep))


def _panel(rows: list[tuple[Series, str, str]], width: int, height: int, lo_step: int, hi_step: int) -> Text:
    span = max(1, hi_step - lo_step)

    def column(step: int) -> int:
        return min(width - 1, int((step - lo_step) / span * (width - 1)))

    # per series: its points, or (above EXACT_UP_TO) per column (x, lowest, highest)
    drawn: list[tuple[list, bool, str, str]] = []
    lows, highs = [], []
    for series, mark, style in rows:
        steps, vals = _finite(series)
        if not vals:
            continue
        if len(vals) <= EXACT_UP_TO:
            drawn.append((list(zip(steps, vals)), False, mark, style))
            lows.append(min(vals))
            highs.append(max(vals))
            continue
        ranges, start = [], 0
        for x in range(width):  # steps ascend: each column is one slice, found by bisection
            stop = bisect.bisect_left(steps, x + 1, lo=start, key=column)
            if stop > start:
                part = vals[start:stop]
                ranges.append((x, min(part), max(part)))
            start = stop
        drawn.append((ranges, True, mark, style))
        lows.append(min(low for _, low, _ in ranges))
        highs.append(max(high for _, _, high in ranges))
    if not drawn:
        return Text("(no finite values)\n", style="dim")
    lo, hi = min(lows), max(highs)
    hi = hi if hi > lo else lo + 1.0

    def row(value: float) -> int:
        return min(height - 1, int((hi - value) / (hi - lo) * (height - 1)))

    grid = [[(" ", "")] * width for _ in range(height)]
    for points, ranged, mark, style in drawn:
        if ranged:
            for x, low, high in points:
                for y in range(row(high), row(low) + 1):
                    grid[y][x] = (mark, style)
        else:
            for step, value in points:
                grid[row(value)][column(step)] = (mark, style)
    text = Text()
    for i, cells in enumerate(grid):
        label = hi if i == 0 else lo if i == height - 1 else None
        text.append(f"{label:>9.3g} ┤" if label is not None else " " * 9 + " │", style="dim")
        for char, style in cells:
            text.append(char, style=style)
        text.append("\n")
    return text


def render_chart(series: dict[str, Series], marks: list[int], width: int = 72) -> Text:
    """Loss panel, learning-rate panel, event marks and the step axis."""
    drawn = [x for x in series.values() if x.steps]
    if not drawn:
        return Text("(nothing to plot)\n", style="dim")
    lo_step, hi_step = min(x.steps[0] for x in drawn), max(x.steps[-1] for x in drawn)  # steps ascend
    out = Text()
    losses = [(series[n], m, st) for n, m, st in (("train_loss", "•", "cyan"), ("eval_loss", "◆", "magenta")) if n in series]
    if losses:
        out.append("loss  " + "  ".join(f"{mark} {s.name}" for s, mark, _ in losses) + "\n", style="bold")
        out.append_text(_panel(losses, width, 12, lo_step, hi_step))
    if "learning_rate" in series:
        out.append("learning rate\n", style="bold")
        out.append_text(_panel([(series["learning_rate"], "·", "green")], width, 5, lo_step, hi_step))
    axis = [" "] * width
    span = max(1, hi_step - lo_step)
    for step in marks:
        axis[min(width - 1, int((step - lo_step) / span * (width - 1)))] = "▲"
    out.append(" " * 10 + "└" + "".join(axis) + "\n", style="red")
    out.append(" " * 11 + f"step {lo_step}" + " " * max(1, width - 10 - len(str(lo_step)) - len(str(hi_step)))
               + f"{hi_step}\n", style="dim")
    return out
