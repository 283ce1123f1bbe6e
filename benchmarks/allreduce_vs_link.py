"""Is preflight's all-reduce harness the bottleneck? Raw TCP throughput between two network
namespaces next to preflight's gloo busbw between the same two, in the same run.

Target (issue 5): busbw at the largest size >= 0.7 x the link's TCP throughput. The link is a
veth pair between two namespaces this script creates (10.78.0.1 <-> 10.78.0.2) and removes.
Measured in each round, on the same link:
- ``TCP 1-way``: one Python TCP stream, 1 GiB from A to B (iperf3 is not assumed);
- ``TCP 2-way``: a stream each way at once, per direction. A 2-rank all-reduce sends S and
  receives S on every rank at the same time (busbw = S / t), so this is the link rate an
  all-reduce can reach; on a CPU-bound veth the two directions share the cores;
- ``plain``: a bare torch.distributed gloo loop (no preflight) at 64 MiB: the framework's own rate;
- ``preflight``: `preflight bench`'s controller, launcher and ranks (one gloo rank per namespace,
  1 MiB .. 64 MiB, the command's per-size time budget), busbw at 64 MiB.
The verdict uses the 2-way rate (what an all-reduce can use); the 1-way ratio is printed too.
Run as root: `.venv/bin/python benchmarks/allreduce_vs_link.py [--repeat N]`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from preflight.bench.run import BenchOptions, layout, run_bench
from preflight.bench.transport import LocalLaunch
from preflight.cluster.remote_probe import Interpreter

NS = ("pfbench_a", "pfbench_b")
ADDR = ("10.78.0.1", "10.78.0.2")
TARGET = 0.7

SINK = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5201)); s.listen(1); print("ready", flush=True)
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
c = socket.create_connection((sys.argv[1], 5201)); chunk = b"x" * (1 << 20)
for _ in range(int(sys.argv[2])): c.sendall(chunk)
c.close()
"""


PLAIN = r"""
import datetime, os, time, torch, torch.distributed as dist
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
buf = torch.zeros((64 << 20) // 4)
for _ in range(2):
    dist.all_reduce(buf)
dist.barrier(); t0 = time.perf_counter(); n = 6
for _ in range(n):
    dist.all_reduce(buf)
t = (time.perf_counter() - t0) / n
if dist.get_rank() == 0:
    print((64 << 20) / t, flush=True)  # busbw with 2 ranks: algbw x 2(n-1)/n = algbw
os._exit(0)
"""


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def setup() -> None:
    teardown()
    for ns in NS:
        sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", "pfbv_a", "type", "veth", "peer", "name", "pfbv_b")
    for ns, end, addr in zip(NS, ("pfbv_a", "pfbv_b"), ADDR):
        sh("ip", "link", "set", end, "netns", ns)
        sh("ip", "-n", ns, "link", "set", end, "name", "eth0")
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def teardown() -> None:
    for ns in NS:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    subprocess.run(["ip", "link", "del", "pfbv_a"], capture_output=True, timeout=30)


def tcp_throughput(mib: int = 1024) -> float:
    """Bytes/s of one TCP stream from A to B."""
    sink = subprocess.Popen(["ip", "netns", "exec", NS[1], sys.executable, "-c", SINK, ADDR[1]],
                            stdout=subprocess.PIPE, text=True)
    assert sink.stdout is not None
    sink.stdout.readline()
    subprocess.run(["ip", "netns", "exec", NS[0], sys.executable, "-c", SOURCE, ADDR[1], str(mib)], check=True,
                   timeout=120)
    out, _ = sink.communicate(timeout=60)
    return float(out.strip())


def tcp_both_ways(mib: int = 512) -> float:
    """Bytes/s per direction with a stream each way at once (the slower direction)."""
    sinks = [subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SINK, addr],
                              stdout=subprocess.PIPE, text=True) for ns, addr in zip(NS, ADDR)]
    for sink in sinks:
        assert sink.stdout is not None
        sink.stdout.readline()
    sources = [subprocess.Popen(["ip", "netns", "exec", NS[0], sys.executable, "-c", SOURCE, ADDR[1], str(mib)]),
               subprocess.Popen(["ip", "netns", "exec", NS[1], sys.executable, "-c", SOURCE, ADDR[0], str(mib)])]
    for source in sources:
        source.wait(timeout=120)
    return min(float(sink.communicate(timeout=60)[0].strip()) for sink in sinks)


def plain_busbw() -> float:
    """busbw of a bare torch.distributed gloo all-reduce loop at 64 MiB, no preflight involved."""
    procs = []
    for rank, ns in enumerate(NS):
        env = {"RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": ADDR[0], "MASTER_PORT": "29532",
               "GLOO_SOCKET_IFNAME": "eth0", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", PLAIN], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    out, err = procs[0].communicate(timeout=120)
    procs[1].wait(timeout=60)
    if not out.strip():
        raise SystemExit(f"the plain torch.distributed loop failed: {err.strip()[-500:]}")
    return float(out.strip().splitlines()[-1])


def allreduce_busbw() -> tuple[float, int, float]:
    """(busbw at the largest size, that size, seconds the run took) from preflight's harness."""
    options = BenchOptions(backend="gloo", memory=False, pairwise="never")
    backend, plans = layout([("a", 0), ("b", 0)], "gloo", 1)
    launches = {name: LocalLaunch(name, Interpreter(sys.executable), ("ip", "netns", "exec", ns))
                for name, ns in zip(("a", "b"), NS)}
    start = time.monotonic()
    results = run_bench(launches, plans, backend, options, ADDR[0], 29531,
                        env_extra={"GLOO_SOCKET_IFNAME": "eth0"})
    if results.problems:
        raise SystemExit(f"the benchmark failed: {results.problems[0]}")
    largest = results.largest()
    assert largest is not None
    return largest.busbw, largest.bytes, time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    setup()
    rows = []
    try:
        print(f"{'run':>3} {'TCP 1-way':>10} {'TCP 2-way':>10} {'plain':>7} {'preflight':>10} {'size':>6} "
              f"{'/2-way':>7} {'/1-way':>7} {'/plain':>7}   (GB/s)")
        for i in range(args.repeat):
            one, two, plain = tcp_throughput(), tcp_both_ways(), plain_busbw()
            bus, size, _ = allreduce_busbw()
            rows.append((one, two, plain, bus))
            print(f"{i + 1:>3} {one / 1e9:>10.2f} {two / 1e9:>10.2f} {plain / 1e9:>7.2f} {bus / 1e9:>10.2f} "
                  f"{size >> 20:>4}Mi {bus / two:>7.2f} {bus / one:>7.2f} {bus / plain:>7.2f}")
    finally:
        teardown()
    one, two, plain, bus = (statistics.median(col) for col in zip(*rows))
    ratio = bus / two
    print(f"median: TCP 1-way {one / 1e9:.2f}, 2-way {two / 1e9:.2f} per direction, plain torch {plain / 1e9:.2f}, "
          f"preflight busbw {bus / 1e9:.2f} GB/s")
    print(f"preflight / TCP 2-way = {ratio:.2f} (target >= {TARGET}): {'met' if ratio >= TARGET else 'NOT met'}; "
          f"/ TCP 1-way = {bus / one:.2f}")
    print(f"preflight / plain torch.distributed = {bus / plain:.2f}: "
          + ("the harness adds nothing measurable; what is left is gloo's own rate on this link"
             if bus / plain >= 0.9 else "the harness is slower than a bare loop"))
    return 0 if ratio >= TARGET else 1

if __name__ == "__main__":
    sys.exit(main())
