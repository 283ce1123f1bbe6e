"""How long `preflight logs` takes on a one-million-point log, against a plain `json.load`.

A run that logs every step for a million steps: a `trainer_state.json` whose `log_history` holds
1,000,000 training points (loss, learning rate, grad norm, epoch) and an evaluation every 10,000
steps. Target (issue 9): analysed in under 2 s. Both figures are medians of fresh processes.

    python benchmarks/logs_speed.py [--points 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from pathlib import Path


from timing import wall  # noqa: E402 - benchmarks/timing.py


def write_state(path: Path, points: int) -> None:
    history = []
    for step in range(1, points + 1):
        lr = 2e-5 * min(1.0, step / (points * 0.03)) * 0.5 * (1 + math.cos(math.pi * step / points))
        history.append({"epoch": round(step / points * 3, 4), "grad_norm": 1.0 + (step % 7) / 10,
                        "learning_rate": lr, "loss": 2.0 * math.exp(-step / (points / 4)) + 0.3, "step": step})
        if step % 10_000 == 0:
            history.append({"epoch": round(step / points * 3, 4), "eval_loss": 2.0 * math.exp(-step / (points / 4)) + 0.35,
                            "step": step})
    path.write_text(json.dumps({"global_step": points, "max_steps": points, "log_history": history}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trainer_state.json"
        write_state(path, args.points)
        size = path.stat().st_size / 1e6
        py = sys.executable
        baseline = wall([py, "-c", f"import json; json.load(open({str(path)!r}))"], args.runs)
        ours = wall([py, "-m", "preflight", "logs", str(path), "--json"], args.runs)
    b, o = statistics.median(baseline), statistics.median(ours)
    print(f"{args.points:,} points, {size:.0f} MB trainer_state.json, median of {args.runs} fresh processes")
    print(f"{'plain json.load':32} {b:6.2f} s")
    print(f"{'preflight logs --json':32} {o:6.2f} s   ({o / b:.2f}x json.load)")
    print(f"\npreflight logs {o:.2f} s (target < 2 s): {'MET' if o < 2 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
