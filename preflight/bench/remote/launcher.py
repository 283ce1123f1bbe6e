"""The per-node launcher: starts this node's benchmark ranks and relays what they print.

Runs on the node as ``python -c <this source> preflight-bench-launcher`` (standard library only,
Python 3.8+; nothing is written on the node). It reads one JSON line from stdin::

    {"rank_source": "...", "ranks": [{"rank": 0, "local_rank": 0, "env": {...}}, ...], "config": {...}}

makes itself a process-group leader (so the controller can kill it and every rank with one
``kill -- -PGID``), prints ``preflight-bench: pid N`` on stderr, starts one process per rank with
the same Python, and prints every JSON event of every rank on its stdout with ``"rank"`` added.
A rank's NCCL debug lines become ``log`` events; a rank that exits non-zero gets an ``exit``
event with the tail of its stderr. When its stdin closes (the controller is done, went away, or
was interrupted) it kills the ranks and exits: nothing is left running on the node.
"""

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading

TAIL = 20


def is_nccl(line):
    """NCCL debug lines: "host:pid:tid [rank] NCCL INFO ...", and rank 0's bare "NCCL version"."""
    return " NCCL " in line or line.startswith("NCCL")


def main():
    payload = json.loads(sys.stdin.readline())
    with contextlib.suppress(OSError):  # already a group leader (a local run starts us in a new session)
        os.setpgrp()
    sys.stderr.write("preflight-bench: pid %d\n" % os.getpid())
    sys.stderr.flush()
    lock = threading.Lock()

    def out(obj):
        with lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    children = {}
    for spec in payload["ranks"]:
        env = dict(os.environ)
        env.update({k: str(v) for k, v in spec["env"].items()})
        config = dict(payload["config"], local_rank=spec["local_rank"])
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", payload["rank_source"], "preflight-bench-rank", json.dumps(config)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            )
        except OSError as exc:
            out({"event": "error", "rank": spec["rank"], "stage": "start", "message": str(exc)})
            continue
        children[spec["rank"]] = proc

    def relay_stdout(rank, stream):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("{"):
                if is_nccl(line):  # NCCL prints its debug lines on stdout unless NCCL_DEBUG_FILE is set
                    out({"event": "log", "rank": rank, "line": line[:1000]})
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            event["rank"] = rank
            out(event)

    tails = {rank: [] for rank in children}

    def relay_stderr(rank, stream):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if is_nccl(line):
                out({"event": "log", "rank": rank, "line": line[:1000]})
            elif line.strip():
                tail = tails[rank]
                tail.append(line[:500])
                del tail[:-TAIL]

    threads = []
    for rank, proc in children.items():
        for target, stream in ((relay_stdout, proc.stdout), (relay_stderr, proc.stderr)):
            t = threading.Thread(target=target, args=(rank, stream), daemon=True)
            t.start()
            threads.append((rank, t))

    def kill_all():
        for proc in children.values():
            if proc.poll() is None:
                with contextlib.suppress(OSError):  # it exited meanwhile
                    proc.send_signal(signal.SIGKILL)

    stdin = sys.stdin.fileno()
    reported = set()
    while True:
        for rank, proc in children.items():
            if rank not in reported and proc.poll() is not None:
                for r, t in threads:
                    if r == rank:
                        t.join(2.0)
                reported.add(rank)
                out({"event": "exit", "rank": rank, "rc": proc.returncode, "stderr_tail": tails[rank]})
        if len(reported) == len(children):
            break
        ready, _, _ = select.select([stdin], [], [], 0.2)
        if ready and not os.read(stdin, 4096):
            kill_all()  # the controller closed our stdin: stop everything now
            for proc in children.values():
                proc.wait()
            break
    out({"event": "launcher_done"})
    return 0


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "preflight-bench-launcher":
    sys.exit(main())
