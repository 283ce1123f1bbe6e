"""Ship the probe to a node and run it with the node's training Python, in one round trip.

The remote command is ``/bin/sh -c '<env> && exec <python> -c <bootstrap>'``; the probe's module
sources travel on stdin (JSON, zlib-compressed), so nothing is written on the node and no
installed preflight there is ever used. The bootstrap is written in syntax that even Python 2
parses, so that a too-old interpreter is reported as such instead of as a syntax error. It
prints its pid to stderr first and makes itself a process-group leader, so a timed-out probe can
be killed with everything it started (nvidia-smi, say).
"""

from __future__ import annotations

import json
import re
import shlex
import zlib
from dataclasses import dataclass
from importlib import resources

from preflight.probe import PROBE_MODULES

EXIT_TOO_OLD = 97
EXIT_NOT_FOUND = 127

# Runs on the node. Python-2-parsable on purpose; the real loader comes on stdin.
BOOTSTRAP = """\
import sys, os
if sys.version_info < (3, 8):
    sys.stderr.write("preflight-probe: python-too-old %s\\n" % sys.version.split()[0])
    sys.exit(97)
os.setpgrp()
sys.stderr.write("preflight-probe: pid %d\\n" % os.getpid())
sys.stderr.flush()
import json, zlib
payload = json.loads(zlib.decompress(sys.stdin.buffer.read()).decode("utf-8"))
exec(payload["loader"], {"__name__": "_preflight_loader", "payload": payload})
"""

# Installs an importer that serves the probe's modules from memory, then runs collect().
LOADER = """\
import importlib.abc, importlib.util, json, sys

PKG = "_preflight_probe"
SOURCES = payload["modules"]


class _Importer(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        short = "__init__" if fullname == PKG else fullname[len(PKG) + 1:]
        if (fullname == PKG or fullname.startswith(PKG + ".")) and short in SOURCES:
            return importlib.util.spec_from_loader(fullname, self, is_package=fullname == PKG)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        short = "__init__" if module.__name__ == PKG else module.__name__[len(PKG) + 1:]
        exec(compile(SOURCES[short], "<preflight probe: " + short + ">", "exec"), module.__dict__)


sys.meta_path.insert(0, _Importer())
probe = importlib.import_module(PKG)
facts = probe.collect(**payload["options"])
sys.stdout.write(json.dumps(facts))
sys.stdout.flush()
"""

_PID = re.compile(r"^preflight-probe: pid (\d+)$", re.M)
_TOO_OLD = re.compile(r"^preflight-probe: python-too-old (\S+)$", re.M)


def probe_sources() -> dict[str, str]:
    """The probe package's modules, by short name, read from the installed package."""
    root = resources.files("preflight.probe")
    return {name: (root / f"{name}.py").read_text(encoding="utf-8") for name in PROBE_MODULES}


def payload(resolve: list[str]) -> bytes:
    """What goes to the node's stdin: the loader, the modules and the collect() options."""
    body = {"loader": LOADER, "modules": probe_sources(), "options": {"resolve": list(resolve)}}
    return zlib.compress(json.dumps(body).encode("utf-8"), 6)


@dataclass(frozen=True)
class Interpreter:
    """Which Python runs the probe on the node, and what to run first (activation)."""

    python: str = "python3"
    env: str | None = None
    conda: str | None = None

    def setup(self) -> str:
        """Shell run before the probe: a quoted conda activation, then the user's --env verbatim
        (a shell command by definition: the user's own, run as the user)."""
        lines = []
        if self.conda:
            lines.append('eval "$(conda shell.posix hook)" && conda activate ' + shlex.quote(self.conda))
        if self.env:
            lines.append(self.env)
        return " && ".join(lines)


def remote_command(interpreter: Interpreter) -> str:
    """The one command line sent over SSH. Every value we place in it is quoted."""
    run = f"exec {shlex.quote(interpreter.python)} -c {shlex.quote(BOOTSTRAP)}"
    setup = interpreter.setup()
    inner = f"{setup} && {run}" if setup else run
    return f"/bin/sh -c {shlex.quote(inner)}"


def kill_command(pid: int) -> str:
    """Kill the probe's whole process group (it made itself the leader), or the pid alone.

    The POSIX spelling ``kill -s KILL -- -PGID``: dash, Debian's /bin/sh, rejects ``-KILL --``.
    """
    return f"kill -s KILL -- -{int(pid)} 2>/dev/null || kill -s KILL {int(pid)} 2>/dev/null; true"


def probe_pid(stderr: str) -> int | None:
    match = _PID.search(stderr)
    return int(match.group(1)) if match else None


def too_old_version(stderr: str) -> str | None:
    match = _TOO_OLD.search(stderr)
    return match.group(1) if match else None


def stderr_tail(stderr: str, lines: int = 5) -> str:
    kept = [line for line in stderr.splitlines() if line.strip() and not _PID.match(line)]
    return " | ".join(kept[-lines:])
