"""Wall-clock timing of fresh processes, shared by the benchmark scripts."""

from __future__ import annotations

import subprocess
import tempfile
import time


def wall(cmd: list[str], runs: int, cwd: str | None = None) -> list[float]:
    """Seconds per run of ``cmd`` (exit 0 or 1 expected: a finding is not a failure of the tool).

    Runs outside any checkout by default, so the installed package is timed, not a source tree.
    """
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or tempfile.gettempdir())
        times.append(time.perf_counter() - start)
        if done.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return times
