"""Is preflight's all-reduce harness the bottleneck? Raw TCP throughput between network namespaces
next to preflight's gloo busbw between the same namespaces, in the same run.

Target (issue 5): busbw at the largest size >= 0.7 x the link's TCP throughput. The namespaces
(10.78.0.1, .2, .3) hang off one bridge, like the test lab; this script creates and removes them.
Measured in each round, on the same links, for 2 and for 3 ranks (one per namespace):
- ``TCP 1-way``: one Python TCP stream, 512 MiB from the first namespace to the second (iperf3
  is not assumed);
- ``TCP ring``: what a ring all-reduce does to the links, every namespace sending to the next at
  once (with 2 ranks: a stream each way), per link (the slowest flow). A ring all-reduce sends
  2(n-1)/n x S and receives as much on every rank at the same time, and busbw is defined so that
  it equals this per-link rate at best;
- ``plain``: a bare torch.distributed gloo loop (no preflight) at 64 MiB: the framework's own rate;
- ``preflight``: `preflight bench`'s controller, launcher and ranks (1 MiB .. 64 MiB, the command's
  per-size time budget), busbw at 64 MiB.
The verdict compares with the ring rate (the link an all-reduce can use); the 1-way ratio and the
ratio to the bare loop (is it the harness, or gloo?) are printed too.
Run as root: `.venv/bin/python benchmarks/allreduce_vs_link.py [--repeat N]`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from preflight.bench.run import BenchOptions, layout, run_bench
from preflight.bench.transport import LocalLaunch
from preflight.cluster.remote_probe import Interpreter

NS = ("pfbench_1", "pfbench_2", "pfbench_3")
ADDR = ("10.78.0.1", "10.78.0.2", "10.78.0.3")
BRIDGE = "pfbench_br"
TARGET = 0.7
PORT = 5201

SINK = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); total = 0; start = None
while True:
    b = c.recv(1 << 20)
    if not b: break
    if start is None: start = time.perf_counter()
    total += len(b)
print(total / (time.perf_counter() - start))
"""

SOURCE = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2]))); chunk = b"x" * (1 << 20)
for _ in range(int(sys.argv[3])): c.sendall(chunk)
c.close()
"""

PLAIN = r"""
import datetime, os, time, torch, torch.distributed as dist
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
n = dist.get_world_size()
buf = torch.zeros((64 << 20) // 4)
for _ in range(2):
    dist.all_reduce(buf)
dist.barrier(); t0 = time.perf_counter(); iters = 6
for _ in range(iters):
    dist.all_reduce(buf)
t = (time.perf_counter() - t0) / iters
if dist.get_rank() == 0:
    print((64 << 20) / t * 2 * (n - 1) / n, flush=True)  # busbw = algbw x 2(n-1)/n
os._exit(0)
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def setup() -> None:
    teardown()
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "link", "set", BRIDGE, "up")
    for i, (ns, addr) in enumerate(zip(NS, ADDR), 1):
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", f"pfbv_{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", f"pfbv_{i}", "master", BRIDGE, "up")
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def teardown() -> None:
    for i, ns in enumerate(NS, 1):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", f"pfbv_{i}"], capture_output=True, timeout=30)
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, timeout=30)


def flows(pairs: list[tuple[int, int]], mib: int = 512) -> float:
    """Bytes/s of the slowest of these concurrent TCP streams (source index -> target index)."""
    sinks = []
    for k, (_, dst) in enumerate(pairs):
        sink = subprocess.Popen(["ip", "netns", "exec", NS[dst], sys.executable, "-c", SINK, ADDR[dst], str(PORT + k)],
                                stdout=subprocess.PIPE, text=True)
        assert sink.stdout is not None
        sink.stdout.readline()
        sinks.append(sink)
    sources = [subprocess.Popen(["ip", "netns", "exec", NS[src], sys.executable, "-c", SOURCE, ADDR[dst],
                                 str(PORT + k), str(mib)]) for k, (src, dst) in enumerate(pairs)]
    for source in sources:
        source.wait(timeout=120)
    return min(float(sink.communicate(timeout=60)[0].strip()) for sink in sinks)


def ring(n: int) -> list[tuple[int, int]]:
    return [(i, (i + 1) % n) for i in range(n)]


def plain_busbw(n: int) -> float:
    """busbw of a bare torch.distributed gloo all-reduce loop at 64 MiB, no preflight involved."""
    procs = []
    for rank in range(n):
        env = {"RANK": str(rank), "WORLD_SIZE": str(n), "MASTER_ADDR": ADDR[0], "MASTER_PORT": "29532",
               "GLOO_SOCKET_IFNAME": "eth0", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
        procs.append(subprocess.Popen(["ip", "netns", "exec", NS[rank], sys.executable, "-c", PLAIN], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    out, err = procs[0].communicate(timeout=120)
    for proc in procs[1:]:
        proc.wait(timeout=60)
    if not out.strip():
        raise SystemExit(f"the plain torch.distributed loop failed: {err.strip()[-500:]}")
    return float(out.strip().splitlines()[-1])


def preflight_busbw(n: int) -> tuple[float, int]:
    """(busbw at the largest size, that size) through preflight's controller, launcher and ranks."""
    options = BenchOptions(backend="gloo", memory=False, pairwise="never")
    names = [f"ns{i + 1}" for i in range(n)]
    backend, plans = layout([(name, 0) for name in names], "gloo", 1)
    launches = {name: LocalLaunch(name, Interpreter(sys.executable), ("ip", "netns", "exec", ns))
                for name, ns in zip(names, NS)}
    results = run_bench(launches, plans, backend, options, ADDR[0], 29531, env_extra={"GLOO_SOCKET_IFNAME": "eth0"})
    if results.problems:
        raise SystemExit(f"the benchmark failed: {results.problems[0]}")
    largest = results.largest()
    assert largest is not None
    return largest.busbw, largest.bytes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    setup()
    rows: dict[int, list[tuple[float, float, float, float]]] = {2: [], 3: []}
    try:
        print(f"{'ranks':>5} {'run':>3} {'TCP 1-way':>10} {'TCP ring':>9} {'plain':>7} {'preflight':>10} "
              f"{'/ring':>6} {'/1-way':>7} {'/plain':>7}   (GB/s, 64 MiB)")
        for i in range(args.repeat):
            for n in (2, 3):
                one, per_link, plain = flows([(0, 1)]), flows(ring(n)), plain_busbw(n)
                bus, _ = preflight_busbw(n)
                rows[n].append((one, per_link, plain, bus))
                print(f"{n:>5} {i + 1:>3} {one / 1e9:>10.2f} {per_link / 1e9:>9.2f} {plain / 1e9:>7.2f} "
                      f"{bus / 1e9:>10.2f} {bus / per_link:>6.2f} {bus / one:>7.2f} {bus / plain:>7.2f}")
    finally:
        teardown()
    met = True
    for n, data in rows.items():
        one, per_link, plain, bus = (statistics.median(col) for col in zip(*data))
        ratio = bus / per_link
        met &= ratio >= TARGET
        print(f"{n} ranks, medians: TCP 1-way {one / 1e9:.2f}, ring {per_link / 1e9:.2f} per link, bare torch "
              f"{plain / 1e9:.2f}, preflight {bus / 1e9:.2f} GB/s; preflight / ring = {ratio:.2f} "
              f"(target >= {TARGET}: {'met' if ratio >= TARGET else 'NOT met'}); / 1-way = {bus / one:.2f}; "
              f"/ bare torch = {bus / plain:.2f}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
