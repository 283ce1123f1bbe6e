"""How long the cross-node network path tests take, for 8 and 64 nodes (ring mode).

Budget (issue 4): all network checks for 8 nodes in under 10 s, for 64 nodes under 30 s. The
nodes are tests/netlab.py's loopback SSH hosts (127.0.0.x:2222 on this machine); NCCL is told to
use `lo` so every listener and connection stays on loopback. The figure is the network step
alone (`network_tests.seconds` in the JSON document: bind, listeners, connects, close), next to
the whole command's wall time. Run as root: `.venv/bin/python benchmarks/network_paths.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
PREFLIGHT = Path(sys.executable).parent / "preflight"
BUDGET = {8: 10.0, 64: 30.0}


def main() -> int:
    from netlab import loopback_hosts, netlab_host

    with netlab_host(), loopback_hosts(max(BUDGET)) as lab, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "ssh_config").write_text(
            f"Host *\n    IdentityFile {lab.client_key}\n    UserKnownHostsFile {lab.known_hosts}\n"
        )
        print(f"{'nodes':>5} {'network step s':>15} {'budget s':>9} {'command wall s':>15}  result")
        worst = 0
        for n, budget in BUDGET.items():
            hosts = work / f"hosts{n}.txt"
            hosts.write_text("".join(f"{lab.user}@{a}:{p}\n" for a, p in lab.hosts[:n]))
            start = time.perf_counter()
            done = subprocess.run(
                [str(PREFLIGHT), "cluster", str(hosts), "--ssh-config", str(work / "ssh_config"), "--json",
                 "--env", "export NCCL_SOCKET_IFNAME=lo", "--master-port", "29511"],
                capture_output=True, text=True, env={"HOME": tmp, "PATH": "/usr/bin:/bin"}, timeout=600,
            )
            wall = time.perf_counter() - start
            doc = json.loads(done.stdout)
            tests = doc["network_tests"]
            paths = tests["paths"] if tests else []
            ok = tests is not None and not tests["hung"] and paths and all(p["status"] == "ok" for p in paths)
            step = tests["seconds"] if tests else float("nan")
            met = ok and step <= budget
            worst |= not met
            print(f"{n:>5} {step:>15.2f} {budget:>9.0f} {wall:>15.2f}  {'MET' if met else 'MISSED'}"
                  f" ({len(paths)} paths, {'all ok' if ok else 'NOT all ok'})")
    return 1 if worst else 0


if __name__ == "__main__":
    sys.exit(main())
