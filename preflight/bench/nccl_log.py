"""NCCL's debug output turned into diagnoses with a cause and a fix.

Input: the captured stderr of the ranks on one node, run with ``NCCL_DEBUG=INFO
NCCL_DEBUG_SUBSYS=INIT,NET`` (``NCCL_DEBUG=WARN`` still prints every WARN line). NCCL prints
``host:pid:tid [dev] NCCL INFO text`` and, for warnings, ``host:pid:tid [dev] file.cc:line NCCL
WARN text``; launchers add prefixes (``10.0.87.143: ``, ANSI colour codes), so lines are found by
search, not by their start.

Every pattern below was checked against NVIDIA/nccl's source (format strings) and against lines
users posted in public issue threads; the comment at each pattern names both. Message formats
changed across NCCL releases; each known variant is matched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class NcclIssue:
    kind: str  # shm, memlock, socket_connect, socket_instead_of_ib, gdr_disabled, ib_error, warn
    message: str
    remediation: str
    evidence: tuple[str, ...]


MAX_EVIDENCE = 3

# "host:pid:tid [dev] NCCL INFO ..." and "host:pid:tid [dev] misc/socket.cc:483 NCCL WARN ..."
# (NCCL's debug.cc prefix; every log quoted in the tests has it).
_LINE = re.compile(r"(?P<host>[^\s:]+):(?P<pid>\d+):(?P<tid>\d+) \[(?P<dev>\d+)\] (?:(?P<where>\S+) )?NCCL (?P<level>WARN|INFO) ?(?P<text>.*)$")
# The version banner, printed bare by rank 0 ("NCCL version 2.7.8+cuda11.1", pytorch/pytorch#68893;
# "NCCL version 2.21.5+cuda12.4", NVIDIA/nccl-tests#227); matched after an INFO prefix too.
_VERSION = re.compile(r"NCCL version (\d+\.\d+\.\d+[^\s]*)")
_BARE_VERSION = re.compile(r"^(?:\S+: )?NCCL version \d+\.\d+\.\d+")
_ANSI = re.compile(r"\x1b\[[0-9;]*m|\[\d+m ")


def nccl_lines(text: str) -> list[str]:
    """The NCCL lines of mixed stderr (Python tracebacks, launcher output and torch warnings
    dropped), each from its ``host:pid:tid`` prefix on, plus the bare ``NCCL version`` banner."""
    out: list[str] = []
    for raw in text.splitlines():
        line = _ANSI.sub("", raw).rstrip()
        match = _LINE.search(line)
        if match:
            out.append(line[match.start():])
        elif _BARE_VERSION.search(line):
            out.append(line[line.index("NCCL version"):])
    return out


def _parse(line: str) -> tuple[str, str] | None:
    """(level, text) of one NCCL line; None for anything else."""
    match = _LINE.search(line)
    return (match.group("level"), match.group("text").strip()) if match else None


def nccl_version(lines: Iterable[str]) -> str | None:
    """The NCCL version as printed (``2.21.5+cuda12.4``), from the first banner line."""
    for line in lines:
        match = _VERSION.search(line)
        if match:
            return match.group(1)
    return None


# -- transports --------------------------------------------------------------------------------
# "Using network IB" / "Using network Socket" / "Using network IBext_v8" (init.cc; seen from NCCL
# 2.7.8 in pytorch/pytorch#68893 to 2.21.5 in NVIDIA/nccl-tests#227, and NVIDIA/nccl#1537).
_USING_NETWORK = re.compile(r"^Using network (\S+(?: \S+)?)$")
# Channel lines: "Channel 00/0 : 9[1] -> 0[0] [receive] via NET/Socket/0", "... via NET/IB/0/GDRDMA",
# "via NET/AWS Libfabric/0/GDRDMA", "via P2P/IPC/read", "via SHM/direct/direct" (NVIDIA/nccl-tests#188,
# #166, aws/aws-ofi-nccl#141); NCCL 2.5 wrote "via direct shared memory" and "via P2P/direct pointer"
# (NVIDIA/nccl#290).
_VIA = re.compile(r"\bvia (NET/([^/]+)/|P2P/|SHM/|direct shared memory|P2P/direct pointer)")
# "2 coll channels, 0 nvls channels, 2 p2p channels, ..." (init.cc; NVIDIA/nccl-tests#188).
_NVLS_CHANNELS = re.compile(r"\b(\d+) nvls channels\b")
# "NET/IB : Using [0]mlx5_0:1/IB ..." / "NET/Socket : Using [0]eth0:..." (net_ib.cc / net_socket.cc).
# NCCL 2.4 initialised both and printed both (Mellanox/nv_peer_memory#56), so these decide only
# when no "Using network" or channel line is present, and IB wins over Socket then.
_NET_USING = re.compile(r"^NET/(IB|Socket) : Using ")


def _net_name(name: str) -> str:
    """``IB`` for NCCL's IB transport and the IB plugins (``IBext``, ``IBext_v8``), ``Socket`` for
    sockets, any other plugin by its own name (``AWS Libfabric``)."""
    if name.startswith("IB"):
        return "IB"
    return "Socket" if name.startswith("Socket") else name


def transports(lines: Iterable[str]) -> set[str]:
    """The transports NCCL chose: ``IB``, ``Socket`` (or a plugin's own name) for the network,
    ``P2P``, ``SHM`` and ``NVLS`` inside the node, from the lines documented above."""
    found: set[str] = set()
    initialised: set[str] = set()
    for line in lines:
        parsed = _parse(line)
        if not parsed:
            continue
        text = parsed[1]
        match = _USING_NETWORK.match(text)
        if match:
            found.add(_net_name(match.group(1)))
        for via in _VIA.finditer(text):
            kind = via.group(1)
            if via.group(2):
                found.add(_net_name(via.group(2)))
            elif kind.startswith("P2P"):
                found.add("P2P")
            else:
                found.add("SHM")
        nvls = _NVLS_CHANNELS.search(text)
        if nvls and int(nvls.group(1)) > 0:
            found.add("NVLS")
        match = _NET_USING.match(text)
        if match:
            initialised.add(match.group(1))
    if not found & {"IB", "Socket"} and not any(n not in {"P2P", "SHM", "NVLS"} for n in found):
        found |= {"IB"} if "IB" in initialised else initialised
    return found


# -- known messages ----------------------------------------------------------------------------
# Shared memory (/dev/shm):
#   "Call to posix_fallocate failed : No space left on device"  include/shm.h, NCCL 2.5-2.9
#       (NVIDIA/nccl#290, #525)
#   "Error while creating shared memory segment nccl-shm-recv-... (size 9637888)"  include/shm.h,
#       NCCL 2.7-2.9 (NVIDIA/nccl#342, #525)
#   "Error: failed to extend /dev/shm/nccl-fjwOOB to 5967876 bytes" and "Error while creating shared
#       memory segment /dev/shm/nccl-KWfVyt (size 5967872)"  older misc/shmutils.cc
#       (NVIDIA/nccl-tests#166, NVIDIA/nccl#1518)
#   "Error: failed to extend %s to %ld bytes, error: %s (%d)" and
#   "Error while %s shared memory segment %s (size %ld), error: %s (%d)" ("creating" / "attaching to")
#       misc/shmutils.cc on master (read 2026-11-28; pytorch/ci-infra#490, vllm-project/vllm#18831)
_SHM_CREATE = re.compile(r"Error while (creating|attaching to) shared memory segment (\S+) \(size (\d+)\)(?:, error: (.*?)(?: \(\d+\))?)?$")
_SHM_EXTEND = re.compile(r"(?:Error: failed to extend (\S+) to (\d+) bytes(?:, error: (.*?)(?: \(\d+\))?)?$|Call to posix_fallocate failed ?: (.*)$)")

# Verbs calls, misc/ibvwrap.cc on master: IBV_PTR_CHECK_ERRNO "Call to " name " failed with error %s"
#   (ibv_reg_mr, ibv_reg_mr_iova2, ibv_reg_dmabuf_mr, ibv_create_qp, ibv_create_cq), IBV_PTR_CHECK
#   "Call to " name " failed" (older releases print this for reg_mr/create_qp too), and
#   wrap_ibv_modify_qp "Call to ibv_modify_qp failed with %d %s, %s" (errno, text, dev/state/GIDs);
#   older ibv_modify_qp: "failed with error Network is unreachable" (NVIDIA/nccl-tests#185).
#   Memlock: ENOMEM from reg_mr ("Call to ibv_reg_mr_iova2 failed with error Cannot allocate memory",
#   NVIDIA/nccl-tests#206, fixed by ulimit -l) or the error-less reg_mr/create_qp message, which
#   NCCL's troubleshooting guide (InfiniBand section) attributes to the memlock limit.
_IBV_CALL = re.compile(r"Call to (ibv_reg_mr\w*|ibv_reg_dmabuf_mr|ibv_create_qp|ibv_create_cq|ibv_modify_qp)\s+failed(?: with (?:error )?(.*))?$")

# Socket connect failures, misc/socket.cc:
#   "socketStartConnect: Connect to %s failed : %s"  (NVIDIA/nccl-tests#162 on NCCL 2.18.3, #166)
#   "socketPollConnect: Connect to %s returned %d(%s) errno %d(%s)"  same socket.cc revision
#   "socketPollConnect: connect to 169.254.20.10<52597> returned Connection refused"  a later
#       format (modelscope/ms-swift#8043; NCCL 2.24 reworked the retries, NVIDIA/nccl#1515)
#   "Net : Connect to %s failed : %s"  an older misc/socket.cc ncclSocketConnect
#   "Call to connect failed : Connection refused"  NCCL 2.0 include/socket.h (NVIDIA/nccl#111)
#   "socketStartConnect: exceeded retries (%d)" / "socketPollConnect: exceeded timeouts (%d)"
#       after the ECONNREFUSED / ETIMEDOUT retries ran out (same socket.cc revision)
_CONNECT = re.compile(r"(?:socket\w*: |Net : )?[Cc]onnect to (\S+) (?:failed : |returned )(.*)$")
_CONNECT_OLD = re.compile(r"Call to connect failed ?: (.*)$")
_CONNECT_GAVE_UP = re.compile(r"(socketStartConnect|socketPollConnect): exceeded (retries|timeouts) \((\d+)\)")

# InfiniBand completion errors, transport/net_ib.cc:
#   "NET/IB : Got completion with error %d, opcode %d, len %d, vendor err %d"  older net_ib.cc
#       (NVIDIA/nccl#426, 2020)
#   "NET/IB : Got completion from peer %s with error %d, opcode %d, len %d, vendor err %d (%s)"
#       (NVIDIA/nccl#928, 2023)
#   "NET/IB : Got completion from peer %s with status=%d opcode=%d len=%d vendor err %d (%s) localGid
#       %s remoteGids%s"  later releases and the HPC-X IB plugin (NVIDIA/nccl#1405, #1814);
#       "NET/IB: Got completion from peer ..." and "NET/IB/GIN: ..." on master
_COMPLETION = re.compile(r"NET/IB\w*(?:/\w+)?\s*:\s*Got completion(?: from peer (\S+))? with (?:error |status=)(\d+)")
# "NET/IB : No device found." (net_ib.cc init when no HCA is usable)
_NO_IB_DEVICE = re.compile(r"^NET/IB : No device found")
# "Failed to open libibverbs.so[.1]" (misc/ibvwrap.cc, NCCL 2.7; pytorch/pytorch#68893)
_NO_VERBS = re.compile(r"Failed to open libibverbs")
# "NCCL_IB_DISABLE set by environment to 1." (format as printed in Mellanox/nv_peer_memory#56)
_ENV_SET = re.compile(r"^(NCCL_IB_DISABLE|NCCL_NET|NCCL_IB_HCA) set by environment to (.*?)\.?$")

# GPUDirect RDMA off, transport/net_ib.cc:
#   "NET/IB : GPU Direct RDMA Disabled for HCA %d '%s' (no module)"  an older net_ib.cc
#       (ncclIbGetProperties)
#   "NET/IB : GPU Direct RDMA Disabled for HCA 0 'mlx5_0'"  recent releases (NVIDIA/nccl#1537, #1939)
#   "... GPU Direct RDMA Disabled for GPU X[X] / HCA 0 ..."  NCCL 2.4.7 (Mellanox/nv_peer_memory#56)
# The Socket transport prints the same words ("NET/Socket : GPU Direct RDMA Disabled for HCA 0
# 'eth0'"); sockets never do GPUDirect, so that line is not a diagnosis.
_GDR_OFF = re.compile(r"^NET/(?!Socket)([^:]+?)\s*: GPU Direct RDMA Disabled for (?:GPU \S+ / )?HCA (\d+) '([^']*)'(?: \((.*)\))?")

_SHM_FIX = (
    "give the container a larger /dev/shm: `docker run --shm-size=1g` (or `--ipc=host`); on "
    "Kubernetes mount an `emptyDir: {medium: Memory}` volume at /dev/shm; remove stale "
    "/dev/shm/nccl-* files left by crashed runs (`df -h /dev/shm`). NCCL_SHM_DISABLE=1 avoids it "
    "at the cost of intra-node bandwidth"
)
_SHM_ATTACH_FIX = (
    "the ranks of one node must share /dev/shm: run them in one container, or start the "
    "containers with `--ipc=host`; NCCL_SHM_DISABLE=1 avoids it at the cost of intra-node bandwidth"
)
_MEMLOCK_FIX = (
    "raise the locked-memory limit to unlimited for the ranks: `ulimit -l unlimited` (check it "
    "under the launcher: `mpirun ... bash -c 'ulimit -l'`), `* soft memlock unlimited` and "
    "`* hard memlock unlimited` in /etc/security/limits.conf, `LimitMEMLOCK=infinity` for a "
    "systemd/slurmd service, `docker run --ulimit memlock=-1`"
)
_CONNECT_FIX = (
    "open the ports between the nodes (NCCL's bootstrap and proxies use random high TCP ports, so "
    "allow all TCP between cluster nodes), and pin NCCL to the interface that routes between "
    "them: NCCL_SOCKET_IFNAME=<iface> (for example `NCCL_SOCKET_IFNAME=eth0`, or `^docker,lo` to "
    "exclude); the address in the message must be reachable from every node"
)
_GDR_FIX = (
    "load the GPUDirect RDMA peer-memory module on the host: `sudo modprobe nvidia-peermem` "
    "(`lsmod | grep peermem` shows it; it ships with the NVIDIA driver, install MLNX_OFED before "
    "the driver so it is built with IB support), or use DMA-BUF with the NVIDIA open kernel "
    "modules; without it every inter-node byte is copied through host memory"
)
_WARN_FIX = (
    "look the message up in NCCL's troubleshooting guide "
    "(https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/troubleshooting.html) "
    "and rerun with NCCL_DEBUG=INFO for context"
)
_IB_FIX = (
    "check the fabric between these HCAs: `ibstat`/`ibv_devinfo` port State Active on both ends, "
    "`ib_write_bw` between the two nodes; on RoCE set NCCL_IB_GID_INDEX to the RoCE v2 GID of the "
    "routed address (`show_gids`) and check the switch config; on rail-only fabrics try "
    "NCCL_CROSS_NIC=0; status 12 (retry exceeded) right after start means the NICs cannot reach "
    "each other"
)


def _short_error(text: str) -> str:
    """The errno text of an error tail: ``110 Connection timed out, on dev mlx5_0:1, ...`` (ibvwrap.cc
    master), ``error Network is unreachable`` (older), ``113(No route to host) errno 115(...)``
    (socket.cc 2.18) all give just the reason, so ranks reporting different GIDs or ports group."""
    text = text.strip()
    if m := re.match(r"^\d+\(([^)]*)\)", text):
        return m.group(1)
    text = re.sub(r"^(?:error |\d+ )", "", text)
    return text.split(", on dev ")[0].split(" errno ")[0].strip()


def _is_memlock(call: str, error: str) -> bool:
    """Registration or QP creation refused for lack of pinnable memory: ENOMEM from ``ibv_reg_mr*``
    or ``ibv_create_qp``, or the old message without an error text (NCCL's troubleshooting guide,
    InfiniBand section: "Call to ibv_reg_mr failed" / "Call to ibv_create_qp failed" -> memlock)."""
    if not (call.startswith("ibv_reg_mr") or call == "ibv_create_qp"):
        return False
    return not error or error == "Cannot allocate memory"


def _issue(kind: str, message: str, remediation: str, evidence: list[str]) -> NcclIssue:
    return NcclIssue(kind, message, remediation, tuple(dict.fromkeys(evidence))[:MAX_EVIDENCE])


def diagnose(lines: Iterable[str], *, ib_expected: bool) -> list[NcclIssue]:
    """The known problems in the NCCL lines of one node, each once however many ranks print it,
    then every other ``NCCL WARN`` text once as a ``warn`` issue. ``ib_expected``: the node has
    active InfiniBand/RoCE ports, so NCCL falling back to sockets is a problem, not a choice."""
    lines = list(lines)
    groups: dict[tuple[str, str], list[str]] = {}
    details: dict[tuple[str, str], dict[str, str]] = {}
    unknown: dict[str, list[str]] = {}
    env: dict[str, str] = {}
    no_ib_device: list[str] = []
    no_verbs: list[str] = []

    def add(kind: str, key: str, line: str, **info: str) -> None:
        groups.setdefault((kind, key), []).append(line)
        details.setdefault((kind, key), {}).update({k: v for k, v in info.items() if v})

    for line in lines:
        parsed = _parse(line)
        if not parsed:
            continue
        level, text = parsed
        if m := _ENV_SET.match(text):
            env[m.group(1)] = m.group(2)
        if _NO_IB_DEVICE.match(text):
            no_ib_device.append(line)
        if _NO_VERBS.search(text):
            no_verbs.append(line)
            continue
        if m := _GDR_OFF.match(text):
            hcas = details.get(("gdr_disabled", "gdr"), {}).get("hcas", "")
            if m.group(3) not in hcas.split(", "):
                hcas = f"{hcas}, {m.group(3)}" if hcas else m.group(3)
            add("gdr_disabled", "gdr", line, hcas=hcas, reason=m.group(4) or "")
            continue
        if level != "WARN":
            continue
        if m := _SHM_CREATE.search(text):
            op, error = m.group(1), m.group(4) or ""
            key = "attach" if op == "attaching to" else "create"
            add("shm", key, line, path=m.group(2), size=m.group(3), error=error)
        elif m := _SHM_EXTEND.search(text):
            add("shm", "create", line, path=m.group(1) or "", error=m.group(3) or m.group(4) or "")
        elif m := _IBV_CALL.search(text):
            call, error = m.group(1), _short_error(m.group(2) or "")
            if _is_memlock(call, error):
                add("memlock", "memlock", line, call=call)
            else:
                add("ib_error", f"{call}:{error}", line, call=call, error=error)
        elif m := _CONNECT.search(text):
            address, error = m.group(1), _short_error(m.group(2))
            add("socket_connect", re.sub(r"<\d+>$", "", address), line, address=address, error=error)
        elif m := _CONNECT_OLD.search(text):
            add("socket_connect", "", line, error=m.group(1).strip())
        elif m := _CONNECT_GAVE_UP.search(text):
            what = "refused" if m.group(2) == "retries" else "timed out"
            add("socket_connect", "", line, error=f"connection {what} {m.group(3)} times")
        elif m := _COMPLETION.search(text):
            add("ib_error", f"completion:{m.group(2)}", line, peer=m.group(1) or "", status=m.group(2))
        else:
            unknown.setdefault(text, []).append(line)

    issues = [_describe(kind, key, groups[(kind, key)], details[(kind, key)]) for kind, key in groups]
    issues += _network_choice(lines, ib_expected, env, no_ib_device, no_verbs)
    issues += [_issue("warn", f"NCCL warned: {text}", _WARN_FIX, found) for text, found in unknown.items()]
    return issues


def _describe(kind: str, key: str, evidence: list[str], info: dict[str, str]) -> NcclIssue:
    """One issue from the lines grouped under (kind, key) and what they named."""
    if kind == "shm":
        where = info.get("path", "/dev/shm")
        size = f" ({info['size']} bytes)" if "size" in info else ""
        error = f": {info['error']}" if "error" in info else ""
        if key == "attach":
            message = f"NCCL could not attach to shared memory segment {where}{size}{error}"
            return _issue(kind, message, _SHM_ATTACH_FIX, evidence)
        message = f"NCCL could not create shared memory segment {where}{size} in /dev/shm{error}"
        return _issue(kind, message, _SHM_FIX, evidence)
    if kind == "memlock":
        message = (f"InfiniBand memory registration failed ({info.get('call', 'ibv_reg_mr')}: "
                   "cannot pin memory); the locked-memory limit (ulimit -l) is too low")
        return _issue(kind, message, _MEMLOCK_FIX, evidence)
    if kind == "socket_connect":
        target = f" to {info['address']}" if "address" in info else ""
        message = f"NCCL could not open a TCP connection{target}: {info.get('error', 'failed')}"
        return _issue(kind, message, _CONNECT_FIX, evidence)
    if kind == "gdr_disabled":
        reason = f" ({info['reason']})" if "reason" in info else ""
        message = (f"GPUDirect RDMA is disabled for HCA {info.get('hcas', '?')}{reason}: "
                   "inter-node traffic is staged through host memory")
        return _issue(kind, message, _GDR_FIX, evidence)
    if "status" in info:
        peer = f" from peer {info['peer']}" if "peer" in info else ""
        message = f"InfiniBand work completion{peer} failed with status {info['status']}"
        return _issue(kind, message, _IB_FIX, evidence)
    error = f" with {info['error']}" if "error" in info else ""
    return _issue(kind, f"InfiniBand verbs call {info.get('call')} failed{error}", _IB_FIX, evidence)


_EXPOSE_HCAS = (
    "expose the HCAs to the container (`docker run --device=/dev/infiniband`, or `--privileged`), "
    "install rdma-core/libibverbs in the image, and check that NCCL_IB_HCA names an existing, "
    "active HCA (`ibv_devinfo`)"
)
_INSTALL_VERBS = (
    "install rdma-core/libibverbs in the image "
    "(`apt-get install libibverbs1 ibverbs-providers librdmacm1`)"
)
_CHECK_NET_ENV = (
    "check NCCL_IB_DISABLE, NCCL_NET and NCCL_IB_HCA, that rdma-core/libibverbs is in the image "
    "and that /dev/infiniband is visible to the ranks"
)


def _network_choice(lines: list[str], ib_expected: bool, env: dict[str, str],
                    no_ib_device: list[str], no_verbs: list[str]) -> list[NcclIssue]:
    """NET/Socket chosen although the node has active IB/RoCE ports, with the reason NCCL gave:
    NCCL_IB_DISABLE / NCCL_NET set, libibverbs missing, or no IB device visible."""
    if not ib_expected:
        return []
    used = transports(lines)
    if "Socket" not in used:
        if no_ib_device and "IB" not in used:
            message = "NCCL found no InfiniBand device although the node has active IB/RoCE ports"
            return [_issue("ib_error", message, _EXPOSE_HCAS, no_ib_device)]
        return []
    evidence = [
        line for line in lines
        if (p := _parse(line))
        and (_USING_NETWORK.match(p[1]) or "via NET/Socket" in p[1] or _ENV_SET.match(p[1]))
    ]
    if env.get("NCCL_IB_DISABLE", "0").strip() not in ("0", ""):
        cause = f"NCCL_IB_DISABLE={env['NCCL_IB_DISABLE']} is set"
        fix = "unset NCCL_IB_DISABLE (or set it to 0)"
    elif env.get("NCCL_NET", "").lower().startswith("socket"):
        cause, fix = f"NCCL_NET={env['NCCL_NET']} is set", "unset NCCL_NET or set NCCL_NET=IB"
    elif no_verbs:
        cause, fix = "libibverbs could not be loaded", _INSTALL_VERBS
        evidence = no_verbs + evidence
    elif no_ib_device:
        cause, fix = "NCCL found no IB device", _EXPOSE_HCAS
        evidence = no_ib_device + evidence
    else:
        cause, fix = "NCCL printed no reason", _CHECK_NET_ENV
    partly = " for some connections" if "IB" in used else ""
    message = (f"NCCL used TCP sockets{partly} although the node has active InfiniBand/RoCE ports "
               f"({cause})")
    return [_issue("socket_instead_of_ib", message, fix, evidence)]
