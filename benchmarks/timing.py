"""Wall-clock timing of fresh processes, shared by the benchmark scripts."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time


def _run(cmd: list[str], cwd: str | None, env: dict[str, str] | None) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or tempfile.gettempdir(), env=env)
    took = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return took


def wall(cmd: list[str], runs: int, cwd: str | None = None, env: dict[str, str] | None = None) -> list[float]:
    """Seconds per run of ``cmd`` (exit 0 or 1 expected: a finding is not a failure of the tool).

    Runs outside any checkout by default, so the installed package is timed, not a source tree.
    """
    return [_run(cmd, cwd, env) for _ in range(runs)]


def wall_interleaved(cmds: dict[str, list[str]], runs: int | dict[str, int], cwd: str | None = None,
                     env: dict[str, str] | None = None, cwds: dict[str, str] | None = None) -> dict[str, list[float]]:
    """Like :func:`wall` for several commands, taking turns (a, b, c, a, b, c, ...): on a shared
    machine whose load comes and goes, each command then sees the same load on average, so their
    medians compare. ``runs`` may give a count per command (a slow baseline needs fewer);
    ``cwds`` a working directory per command (default ``cwd``)."""
    counts = {name: runs if isinstance(runs, int) else runs[name] for name in cmds}
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for turn in range(max(counts.values(), default=0)):
        for name, cmd in cmds.items():
            if turn < counts[name]:
                times[name].append(_run(cmd, (cwds or {}).get(name, cwd), env))
    return times


def load() -> str:
    """The 1/5/15-minute load averages, to print beside the figures (timing is noisy on a shared machine)."""
    try:
        return "load average {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"
