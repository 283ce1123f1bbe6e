"""A terminal chart of loss and learning rate against step, with the diagnosed events marked.

Drawn with rich on a character grid (no plotting dependency): train loss ``•``, eval loss ``◆``,
and a second, smaller panel for the learning rate; a ``▲`` under the axis marks each step where a
diagnosis fired.
"""

from __future__ import annotations

import math

from rich.text import Text

from preflight.logs.series import Series


def _finite(series: Series) -> list[tuple[int, float]]:
    return [(s, v) for s, v in zip(series.steps, series.values) if math.isfinite(v)]


def _panel(rows: list[tuple[Series, str, str]], width: int, height: int, lo_step: int, hi_step: int) -> Text:
    points = [(s, v) for series, _, _ in rows for s, v in _finite(series)]
    if not points:
        return Text("(no finite values)\n", style="dim")
    lo, hi = min(v for _, v in points), max(v for _, v in points)
    hi = hi if hi > lo else lo + 1.0
    grid = [[(" ", "")] * width for _ in range(height)]
    span = max(1, hi_step - lo_step)
    for series, mark, style in rows:
        for step, value in _finite(series):
            x = min(width - 1, int((step - lo_step) / span * (width - 1)))
            y = min(height - 1, int((hi - value) / (hi - lo) * (height - 1)))
            grid[y][x] = (mark, style)
    text = Text()
    for i, row in enumerate(grid):
        label = hi if i == 0 else lo if i == height - 1 else None
        text.append(f"{label:>9.3g} ┤" if label is not None else " " * 9 + " │", style="dim")
        for char, style in row:
            text.append(char, style=style)
        text.append("\n")
    return text


def render_chart(series: dict[str, Series], marks: list[int], width: int = 72) -> Text:
    """Loss panel, learning-rate panel, event marks and the step axis."""
    all_steps = [s for x in series.values() for s in x.steps]
    if not all_steps:
        return Text("(nothing to plot)\n", style="dim")
    lo_step, hi_step = min(all_steps), max(all_steps)
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
