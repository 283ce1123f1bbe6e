"""How long the `--bench` phase takes for a 2-node job with default settings (target: under 60 s).

Two SSH hosts in network namespaces (tests/netlab.py), `preflight cluster hosts --bench` with the
default sizes, time budget, pairwise and memory settings (gloo: these nodes have no GPU), next
to the same command without `--bench` measured in the same run. The figure is the benchmark
phase alone (`benchmark.seconds` in the JSON: launch, torch import, rendezvous, sweep, memory,
kill), and the whole command's wall time. Run as root: `.venv/bin/python benchmarks/bench_phase.py`.
"""

from __future__ import annotations

import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
PREFLIGHT = Path(sys.executable).parent / "preflight"
TARGET_S = 60.0


def run(hosts: Path, config: Path, home: str, *extra: str) -> tuple[float, dict]:
    start = time.perf_counter()
    done = subprocess.run(
        [str(PREFLIGHT), "cluster", str(hosts), "--ssh-config", str(config), "--json", "--python", sys.executable,
         *extra],
        capture_output=True, text=True, env={"HOME": home, "PATH": "/usr/bin:/bin"}, timeout=600,
    )
    wall = time.perf_counter() - start
    return wall, json.loads(done.stdout)


def main() -> int:
    from netlab import PREFIX, _build_lab, _run_finalizers, netlab_host

    rid = secrets.token_hex(3)
    with netlab_host(), tempfile.TemporaryDirectory() as home:
        tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{rid}-ns-"))
        fin: list = [lambda: shutil.rmtree(tmp, ignore_errors=True)]
        try:
            lab = _build_lab(tmp, rid, 2, fin)
            config = lab.ssh_config(tmp / "ssh_config")
            hosts = tmp / "hosts.txt"
            hosts.write_text("host1\nhost2\n")
            print(f"{'run':>3} {'without --bench s':>18} {'with --bench s':>15} {'bench phase s':>14} "
                  f"{'busbw GB/s':>11}  verdict")
            phases = []
            for i in range(3):
                plain, _ = run(hosts, config, home)
                wall, doc = run(hosts, config, home, "--bench")
                bench = doc["benchmark"]
                phases.append(bench["seconds"])
                largest = max(bench["sizes"], key=lambda s: s["bytes"]) if bench["sizes"] else None
                print(f"{i + 1:>3} {plain:>18.1f} {wall:>15.1f} {bench['seconds']:>14.1f} "
                      f"{(largest['busbw'] / 1e9 if largest else float('nan')):>11.2f}  {doc['verdict']['status']}")
        finally:
            _run_finalizers(fin)
    worst = max(phases)
    print(f"bench phase: median {statistics.median(phases):.1f} s, worst {worst:.1f} s "
          f"(target < {TARGET_S:.0f} s): {'met' if worst < TARGET_S else 'NOT met'}")
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
