"""How long `preflight cluster` takes to sweep many SSH hosts, against OpenSSH running `true` on them.

The hosts are tests/netlab.py's loopback hosts (127.0.0.2.., port 2222, login `pflab` with /bin/sh,
served by one sshd per 16 addresses on this machine). In one run, for 50, 100 and 200 hosts:

* preflight: `preflight cluster hosts.txt --ssh-config CFG --json --parallel P` as a user runs it
  (a fresh process, HOME in a temp dir): connect, ship and run the full probe, judge, print JSON;
* baseline: `xargs -P P -I{} ssh -o KexAlgorithms=curve25519-sha256 ... {} true` (paramiko has no
  sntrup761, so this is the like-for-like kex), plus OpenSSH's default kex at the largest size.

Reported: wall time, preflight/baseline ratio, the controller's CPU (user+sys of the preflight
process, or of xargs and its ssh children) per host, and the sshds' CPU (their forked sessions and
the remote commands) per host. Targets (issue): ratio <= 1.5 and controller CPU <= 15 ms/host at
200 hosts; wall growing linearly in hosts/P. Run as root: `.venv/bin/python benchmarks/sweep.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netlab import LoopbackLab

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
PREFLIGHT = Path(sys.executable).parent / "preflight"
TICK = os.sysconf("SC_CLK_TCK")
RATIO_TARGET, CPU_TARGET_MS = 1.5, 15.0


@dataclass
class Sample:
    wall: float  # seconds
    client_cpu: float  # seconds, user+sys of the controller process(es)
    server_cpu: float  # seconds, the sshds and everything they forked (sessions, remote commands)


def sshd_cpu(pids: list[int]) -> float:
    """CPU seconds of the sshd listeners plus their reaped children (utime, stime, cutime, cstime)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15])
    return total / TICK


def measure(argv: list[str], sshds: list[int], env: dict[str, str], stdin: str = "") -> tuple[Sample, str, str, int]:
    before, srv = resource.getrusage(resource.RUSAGE_CHILDREN), sshd_cpu(sshds)
    start = time.perf_counter()
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, timeout=900)
    wall = time.perf_counter() - start
    time.sleep(0.3)  # let the sshds reap their last sessions
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return Sample(wall, cpu, sshd_cpu(sshds) - srv), done.stdout, done.stderr, done.returncode


def run_preflight(n: int, work: Path, parallel: int, sshds: list[int], env: dict[str, str]) -> Sample:
    argv = [str(PREFLIGHT), "cluster", str(work / f"hosts{n}.txt"), "--ssh-config", str(work / "ssh_config"),
            "--json", "--parallel", str(parallel), "--no-network-tests"]  # fmt: skip  (the sweep alone)
    sample, out, err, rc = measure(argv, sshds, env)
    try:
        doc = json.loads(out)
    except ValueError:
        raise SystemExit(f"preflight exited {rc} without JSON: {err.strip()[-2000:]}") from None
    if rc not in (0, 1) or doc["verdict"]["reached"] != n:
        for node in doc["nodes"]:
            if not node["reached"]:
                print(f"  {node['host']}: {node['findings'][0]['observed']}", file=sys.stderr)
        raise SystemExit(f"preflight (exit {rc}) reached {doc['verdict']['reached']}/{n} hosts")
    return sample


def run_ssh(
    n: int, hosts: list[str], parallel: int, lab: LoopbackLab, sshds: list[int], env: dict[str, str], kex: str | None
) -> Sample:
    argv = ["xargs", "-P", str(parallel), "-I{}", "ssh", "-o", "BatchMode=yes", "-i", str(lab.client_key),
            "-o", f"UserKnownHostsFile={lab.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-p", str(lab.hosts[0][1]), "-l", lab.user, *(["-o", f"KexAlgorithms={kex}"] if kex else []),
            "{}", "true"]  # fmt: skip
    sample, _, err, rc = measure(argv, sshds, env, stdin="".join(h + "\n" for h in hosts[:n]))
    if rc != 0:
        raise SystemExit(f"baseline ssh failed (xargs exit {rc}): {err.strip()[-2000:]}")
    return sample


def med(samples: list[Sample]) -> Sample:
    return Sample(*(statistics.median(getattr(s, f) for s in samples) for f in ("wall", "client_cpu", "server_cpu")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=32, help="hosts at once, both sides (default 32)")
    parser.add_argument("--runs", type=int, default=1, help="repeat K times, report medians (default 1)")
    parser.add_argument("--sizes", default="50,100,200", help="host counts (default 50,100,200; max 253)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    import pytest
    from netlab import (  # imports pytest: netlab's prerequisites skip with it
        loopback_hosts,
        netlab_host,
    )

    print(f"preflight cluster vs xargs -P {args.parallel} ssh ... true; {args.runs} run(s), medians; "
          f"{os.cpu_count()} CPU cores, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"NOTE: client, sshds and remote commands share these {os.cpu_count()} cores: the sshd/remote "
          "CPU competes with the controller, so walls are CPU-bound, not network-bound.")
    try:
        with netlab_host(), loopback_hosts(max(sizes)) as lab, tempfile.TemporaryDirectory(prefix="pfbench-") as tmp:
            work = Path(tmp)
            (work / "home").mkdir()
            env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"} | {"HOME": str(work / "home")}
            (work / "ssh_config").write_text(
                f"Host *\n    IdentityFile {lab.client_key}\n    UserKnownHostsFile {lab.known_hosts}\n"
            )
            addrs = [a for a, _ in lab.hosts]
            for n in sizes:
                (work / f"hosts{n}.txt").write_text("".join(f"{lab.user}@{a}:{p}\n" for a, p in lab.hosts[:n]))
            pf: dict[int, list[Sample]] = {n: [] for n in sizes}
            base: dict[int, list[Sample]] = {n: [] for n in sizes}
            dflt: list[Sample] = []
            sshds = lab.sshd_pids
            (work / "hosts4.txt").write_text("".join(f"{lab.user}@{a}:{p}\n" for a, p in lab.hosts[:4]))
            run_preflight(4, work, args.parallel, sshds, env)  # warm-up: page cache, sshd, remote pyc
            run_ssh(4, addrs, args.parallel, lab, sshds, env, "curve25519-sha256")
            for _ in range(args.runs):
                for n in sizes:
                    pf[n].append(run_preflight(n, work, args.parallel, sshds, env))
                    base[n].append(run_ssh(n, addrs, args.parallel, lab, sshds, env, "curve25519-sha256"))
                dflt.append(run_ssh(max(sizes), addrs, args.parallel, lab, sshds, env, None))
    except pytest.skip.Exception as exc:
        print(f"cannot build the loopback hosts: {exc}", file=sys.stderr)
        return 2

    print(f"\n{'hosts':>5} {'preflight s':>11} {'ssh s':>7} {'ratio':>6} {'pf CPU ms/host':>14} "
          f"{'ssh CPU ms/host':>15} {'pf sshd ms/host':>15} {'ssh sshd ms/host':>16}")  # fmt: skip
    for n in sizes:
        p, b = med(pf[n]), med(base[n])
        print(f"{n:>5} {p.wall:>11.2f} {b.wall:>7.2f} {p.wall / b.wall:>6.2f} {p.client_cpu / n * 1e3:>14.1f} "
              f"{b.client_cpu / n * 1e3:>15.1f} {p.server_cpu / n * 1e3:>15.1f} {b.server_cpu / n * 1e3:>16.1f}")  # fmt: skip
    top, low = max(sizes), min(sizes)
    p, b, d = med(pf[top]), med(base[top]), med(dflt)
    print(f"{top:>5} ssh, OpenSSH default kex (sntrup761): {d.wall:.2f} s, client {d.client_cpu / top * 1e3:.1f} ms/host, "
          f"sshd {d.server_cpu / top * 1e3:.1f} ms/host; preflight/that = {p.wall / d.wall:.2f}")  # fmt: skip
    ratio, cpu_ms = p.wall / b.wall, p.client_cpu / top * 1e3
    as_run = p.wall / d.wall
    print(f"\n{'MET' if as_run <= RATIO_TARGET else 'MISSED'}: wall ratio at {top} hosts vs `ssh true` as users run it "
          f"(OpenSSH defaults) {as_run:.2f} (target <= {RATIO_TARGET})")
    print(f"{'MET' if ratio <= RATIO_TARGET else 'MISSED'}: wall ratio at {top} hosts vs `ssh true` with paramiko's kex "
          f"(curve25519) {ratio:.2f} (target <= {RATIO_TARGET}); bounded here by the remote probe's CPU sharing "
          "these cores with every sshd")
    print(f"{'MET' if cpu_ms <= CPU_TARGET_MS else 'MISSED'}: controller CPU at {top} hosts {cpu_ms:.1f} ms/host "
          f"(target <= {CPU_TARGET_MS:g})")  # fmt: skip
    if top != low:
        pl = med(pf[low])
        print(f"growth: preflight wall {top}/{low} hosts = {p.wall / pl.wall:.2f}x (linear: {top / low:.2f}x); "
              f"marginal controller CPU {(p.client_cpu - pl.client_cpu) / (top - low) * 1e3:.1f} ms/host")  # fmt: skip
    cores = os.cpu_count() or 1
    print(f"where time goes at {top} hosts: preflight needs {p.client_cpu:.1f} s controller + {p.server_cpu:.1f} s sshd/remote "
          f"CPU = {(p.client_cpu + p.server_cpu) / cores:.1f} s on {cores} cores (wall {p.wall:.1f} s); ssh: "
          f"{b.client_cpu:.1f} + {b.server_cpu:.1f} s = {(b.client_cpu + b.server_cpu) / cores:.1f} s (wall {b.wall:.1f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
