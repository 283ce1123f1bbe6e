"""How long `preflight node` takes, against `python -m torch.utils.collect_env` on the same machine.

Target (issue 2): `preflight node` at most 0.25x collect_env's wall time; the probe alone under
0.3 s. Every number is a median of wall-clock runs of a fresh process, measured here in one run:

    python benchmarks/node_latency.py [--runs 7]

Needs torch installed in the same Python (the CPU wheel is enough) for the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from timing import wall  # noqa: E402 - benchmarks/timing.py


def probe_in_process(runs: int) -> list[float]:
    from preflight.probe import collect

    times = []
    for _ in range(runs):
        start = time.perf_counter()
        collect()
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    py = sys.executable
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed in this Python: no baseline to compare against", file=sys.stderr)
        return 2
    wall([py, "-m", "preflight", "node", "--json"], 1)  # warm the page cache once for both sides
    wall([py, "-m", "torch.utils.collect_env"], 1)
    rows = {
        "probe, in process (collect())": probe_in_process(args.runs),
        "probe, fresh process (python -m preflight.probe)": wall([py, "-m", "preflight.probe"], args.runs),
        "preflight node (terminal report)": wall([py, "-m", "preflight", "node"], args.runs),
        "preflight node --json": wall([py, "-m", "preflight", "node", "--json"], args.runs),
        "baseline: python -m torch.utils.collect_env": wall([py, "-m", "torch.utils.collect_env"], args.runs),
    }
    baseline = statistics.median(rows["baseline: python -m torch.utils.collect_env"])
    print(f"{'what':52} {'median s':>9} {'min s':>7} {'x baseline':>10}   ({args.runs} runs each)")
    for name, times in rows.items():
        med = statistics.median(times)
        print(f"{name:52} {med:9.3f} {min(times):7.3f} {med / baseline:10.3f}")
    node = statistics.median(rows["preflight node (terminal report)"])
    probe = statistics.median(rows["probe, in process (collect())"])
    print()
    print(f"preflight node / collect_env = {node / baseline:.3f} (target <= 0.25): "
          f"{'MET' if node / baseline <= 0.25 else 'MISSED'}")
    print(f"probe alone = {probe:.3f} s (target < 0.3 s): {'MET' if probe < 0.3 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
