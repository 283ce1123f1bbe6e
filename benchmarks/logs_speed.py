"""How long `preflight logs` takes on a one-million-point log, against a plain `json.load`.

A run that logs every step for a million steps: a `trainer_state.json` whose `log_history` holds
1,000,000 training points (loss, learning rate, grad norm, epoch) and an evaluation every 10,000
steps. Target (issue 9): analysed in under 2 s. Also the same run as LLaMA-Factory writes it, a
1,000,000-line `trainer_log.jsonl`, against a `json.loads` loop over its lines. All figures are
medians of fresh processes taking turns.

    python benchmarks/logs_speed.py [--points 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import load, wall_interleaved  # noqa: E402 - benchmarks/timing.py

# The same command with orjson made unimportable, so both configurations are timed in one run
# (preflight parses with orjson when the optional [fast] extra installed it).
WITHOUT_ORJSON = ("import sys; sys.modules['orjson'] = None; from preflight.cli import main; "
                  "sys.exit(main(['logs', sys.argv[1], '--json']))")


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


def write_llamafactory(path: Path, points: int) -> None:
    """The run as LLaMA-Factory's LogCallback writes it: one line per logging step."""
    with path.open("w") as f:
        for step in range(1, points + 1):
            f.write(json.dumps({"current_steps": step, "total_steps": points,
                                "loss": 2.0 * math.exp(-step / (points / 4)) + 0.3, "lr": 2e-5,
                                "epoch": round(step / points * 3, 4), "percentage": round(step / points * 100, 2),
                                "elapsed_time": "1:00:00", "remaining_time": "1:00:00"}) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trainer_state.json"
        write_state(path, args.points)
        size = path.stat().st_size / 1e6
        lines = Path(tmp) / "trainer_log.jsonl"
        write_llamafactory(lines, args.points)
        lines_size = lines.stat().st_size / 1e6
        py = sys.executable
        cmds = {
            "plain json.load": [py, "-c", f"import json; json.load(open({str(path)!r}))"],
            "preflight logs --json": [py, "-m", "preflight", "logs", str(path), "--json"],
            "json.loads loop, trainer_log.jsonl": [py, "-c", f"import json\nfor line in open({str(lines)!r}, 'rb'):"
                                                   " json.loads(line)"],
            "preflight logs trainer_log.jsonl": [py, "-m", "preflight", "logs", str(lines), "--json"],
        }
        has_orjson = subprocess.run([py, "-c", "import orjson"], capture_output=True).returncode == 0
        if has_orjson:
            cmds["plain orjson.loads"] = [py, "-c", f"import orjson; orjson.loads(open({str(path)!r}, 'rb').read())"]
            cmds["preflight logs --json, without orjson"] = [py, "-c", WITHOUT_ORJSON, str(path)]
        before = load()
        times = wall_interleaved(cmds, args.runs)
    print(f"{args.points:,} points, {size:.0f} MB trainer_state.json ({lines_size:.0f} MB as trainer_log.jsonl),"
          f" median of {args.runs} fresh processes taking"
          f" turns; {before} (before), {load()} (after); orjson {'installed' if has_orjson else 'not installed'}")
    base = statistics.median(times["plain json.load"])
    for name, t in times.items():
        m = statistics.median(t)
        print(f"{name:40} {m:6.2f} s   ({m / base:.2f}x json.load, min {min(t):.2f} s)")
    print()
    for name in ("preflight logs --json", "preflight logs --json, without orjson", "preflight logs trainer_log.jsonl"):
        if name in times:
            m = statistics.median(times[name])
            config = "stdlib json" if "without" in name or not has_orjson else "orjson"
            print(f"{name} [{config}]: {m:.2f} s (target < 2 s): {'MET' if m < 2 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
