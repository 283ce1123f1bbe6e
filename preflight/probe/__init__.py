"""The fact collector: standard library only, runs on Python 3.8+, judges nothing.

Run locally by ``preflight node`` or shipped to a remote node and run by that node's training
Python (``python -m preflight.probe`` prints the facts as JSON). Optional libraries (pynvml) are
used when importable. Every reader records what it could not read, with the reason, instead of
raising: a probe that crashes tells the user nothing.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone

from . import gpu, identity, network, python_env, system

PROBE_VERSION = "0.1.0"
SCHEMA_VERSION = 1
# Every module of this package: the cluster sweep ships exactly these to each node.
PROBE_MODULES = (
    "__init__",
    "sysfs",
    "identity",
    "system",
    "gpu",
    "gpu_nvml",
    "nvml_ctypes",
    "gpu_smi",
    "python_env",
    "network",
)


def collect(resolve=()) -> dict:
    """All facts of this machine, as a JSON-ready dict matching ``preflight.facts.NodeFacts``.

    ``resolve``: host names to look up from this node (the other nodes of a cluster), so that a
    name resolving differently on different nodes can be found.
    """
    start = time.perf_counter()
    collected_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    facts = {
        "schema_version": SCHEMA_VERSION,
        "identity": identity.collect(),
        "system": system.collect(),
        "gpu": gpu.collect(),
        "python": python_env.collect(),
        "network": network.collect(resolve),
    }
    facts["probe"] = {
        "version": PROBE_VERSION,
        "python_executable": sys.executable,
        "python_version": ".".join(str(p) for p in sys.version_info[:3]),
        "collected_at": collected_at,
        "duration_s": round(time.perf_counter() - start, 4),
        "clock_unix": time.time(),
    }
    return facts


def main() -> int:
    json.dump(collect(), sys.stdout)
    sys.stdout.write("\n")
    return 0
