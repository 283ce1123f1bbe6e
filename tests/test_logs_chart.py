"""The terminal chart: a long curve is drawn by column ranges, the same picture as point by point."""

from __future__ import annotations

import math

from preflight.logs import chart
from preflight.logs.series import Series


def _curves(n: int) -> dict[str, Series]:
    steps = list(range(1, n + 1))
    loss = [2.0 * math.exp(-s / (n / 4)) + 0.3 + 0.02 * math.sin(s / 50) for s in steps]
    loss[n // 3] = float("nan")  # not drawn, and no reason to draw nothing
    lr = [2e-5 * min(1.0, s / (n * 0.03)) for s in steps]
    return {"train_loss": Series("train_loss", steps, loss),
            "eval_loss": Series("eval_loss", steps[:: n // 20], loss[:: n // 20]),
            "learning_rate": Series("learning_rate", steps, lr)}


def test_a_long_dense_curve_draws_the_same_by_column_ranges(monkeypatch) -> None:
    curves = _curves(60_000)
    by_range = chart.render_chart(curves, [30_000]).plain
    monkeypatch.setattr(chart, "EXACT_UP_TO", 10**9)
    assert chart.render_chart(curves, [30_000]).plain == by_range
    assert "•" in by_range and "◆" in by_range and "·" in by_range and "▲" in by_range


def test_nothing_finite_and_nothing_at_all() -> None:
    nan = Series("train_loss", list(range(1, 30_001)), [float("nan")] * 30_000)
    assert "no finite values" in chart.render_chart({"train_loss": nan}, []).plain
    assert "nothing to plot" in chart.render_chart({}, []).plain
