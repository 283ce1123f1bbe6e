"""The network agent: a stdlib-only script run on a node over SSH (no file is written there).

``listen``: bind a TCP port on one of the node's own addresses (port 0 takes one from the
ephemeral range, as NCCL's sockets do), print ``LISTENING <address> <port>``, answer every
connection with a token, and exit at its deadline or when its stdin closes (the controller went
away). ``connect``: connect to each target with a timeout and print one JSON line per target with
``ok``, ``refused``, ``timeout``, ``unreachable`` or another error. ``bind``: try to bind a port
and report whether it is free. Python 3.8+, nothing imported beyond the standard library.
"""

from __future__ import annotations

import shlex

AGENT = r'''
import json, os, select, socket, sys, time, errno

def listen(address, port, seconds):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind((address, port))
    except OSError as exc:
        print(json.dumps({"error": "bind", "errno": exc.errno, "message": exc.strerror or str(exc)}))
        sys.stdout.flush()
        return 3
    server.listen(64)
    print("LISTENING %s %d" % (address, server.getsockname()[1]))
    sys.stdout.flush()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([server, sys.stdin], [], [], max(0.0, min(0.5, deadline - time.monotonic())))
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
            break  # the controller closed our stdin: stop now
        if server in ready:
            conn, _ = server.accept()
            try:
                conn.sendall(b"preflight-ok\n")
            finally:
                conn.close()
    server.close()
    return 0

def connect(targets, timeout):
    for address, port in targets:
        start = time.monotonic()
        result = {"address": address, "port": port}
        try:
            sock = socket.create_connection((address, port), timeout)
            try:
                sock.settimeout(timeout)
                result["status"] = "ok" if sock.recv(32).startswith(b"preflight-ok") else "no-answer"
            finally:
                sock.close()
        except socket.timeout:
            result["status"] = "timeout"
        except ConnectionRefusedError:
            result["status"] = "refused"
        except OSError as exc:
            code = exc.errno
            result["status"] = "unreachable" if code in (errno.EHOSTUNREACH, errno.ENETUNREACH) else "error"
            result["message"] = exc.strerror or str(exc)
        result["seconds"] = round(time.monotonic() - start, 4)
        print(json.dumps(result))
        sys.stdout.flush()
    return 0

def bind(address, port):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as torch's TCPStore does
    try:
        sock.bind((address, port))
        print(json.dumps({"free": True}))
    except OSError as exc:
        print(json.dumps({"free": False, "errno": exc.errno, "message": exc.strerror or str(exc)}))
    finally:
        sock.close()
    return 0

args = json.loads(sys.argv[1])
mode = args["mode"]
if mode == "listen":
    sys.exit(listen(args["address"], args["port"], args["seconds"]))
if mode == "connect":
    sys.exit(connect([tuple(t) for t in args["targets"]], args["timeout"]))
sys.exit(bind(args["address"], args["port"]))
'''


def agent_command(python: str, args_json: str) -> str:
    """The command line for one agent run; every value is quoted."""
    return f"exec {shlex.quote(python)} -c {shlex.quote(AGENT)} {shlex.quote(args_json)}"
