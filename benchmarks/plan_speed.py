"""How long the layout search takes for a 1024-GPU cluster (128 nodes x 8), against two baselines
measured in the same run: a bare Python start (`python -c pass`) and one memory estimate times the
number of layouts the search evaluated. Target (issue 6): the search answers in under 1 s.

In-process figures are medians of --runs searches; the fresh-process figures time the whole
`preflight plan --json` command, start-up included.

    python benchmarks/plan_speed.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from timing import wall  # benchmarks/timing.py

from preflight.plan.memory import Layout, ModelMemory, Training
from preflight.plan.model import resolve_model
from preflight.plan.params import tensor_groups
from preflight.plan.search import Cluster, Planner

CLUSTER = Cluster(nodes=128, gpus_per_node=8, gpu_memory=80 * 2**30, intra_bw=360e9, inter_bw=320e9, flops=400e12)
CASES = (("llama-3.1-70b", Training(seq_len=4096)), ("llama-3.1-8b", Training(method="lora", seq_len=4096)),
         ("deepseek-v3", Training(seq_len=4096)), ("qwen2.5-72b", Training(method="qlora", seq_len=8192)))


def median_seconds(fn, runs: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    start = statistics.median(wall([py, "-c", "pass"], args.runs))
    print(f"1024 GPUs (128 nodes x 8, 80 GiB), global batch 1024 samples; medians of {args.runs} runs")
    print(f"{'python -c pass (fresh process)':44} {start * 1000:8.1f} ms")
    worst = 0.0
    for name, training in CASES:
        spec = resolve_model(name)
        memory = ModelMemory(spec, tensor_groups(spec), training)
        planner = Planner(memory, CLUSTER, 1024)
        _, _, evaluated = planner.search()
        searched = median_seconds(planner.search, args.runs)
        one = Layout(dp=128, tp=8, sharding="zero1")
        single = median_seconds(lambda: [memory.estimate(one) for _ in range(1000)], args.runs) / 1000
        worst = max(worst, searched)
        label = f"{name} {training.method} s={training.seq_len}"
        print(f"{label:44} {searched * 1000:8.1f} ms search ({evaluated} layouts; "
              f"baseline {evaluated} x one estimate = {single * evaluated * 1000:.1f} ms)")
    command = [py, "-m", "preflight", "plan", "--model", "llama-3.1-70b", "--seq-len", "4096", "--nodes", "128",
               "--gpus-per-node", "8", "--gpu-mem", "80GiB", "--global-batch", "1024", "--json"]
    fresh = statistics.median(wall(command, args.runs))
    print(f"{'preflight plan --json (fresh process)':44} {fresh * 1000:8.1f} ms  ({fresh / start:.1f}x python -c pass)")
    print(f"\nslowest search {worst * 1000:.0f} ms (target < 1 s): {'MET' if worst < 1 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
