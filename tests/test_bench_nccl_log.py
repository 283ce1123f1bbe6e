"""NCCL debug lines -> diagnoses. Every log line here is quoted from a public issue thread (named
at each test); a few are shortened where the thread itself cut them."""

from __future__ import annotations

from preflight.bench.nccl_log import diagnose, nccl_lines, nccl_version, transports


def kinds(text: str, *, ib_expected: bool = False) -> list[str]:
    return [issue.kind for issue in diagnose(nccl_lines(text), ib_expected=ib_expected)]


# https://github.com/NVIDIA/nccl-tests/issues/227 (NCCL 2.21.5, RoCE through the HPC-X IB plugin)
CLEAN_ROCE = """\
ai-worker01:5771:5771 [0] NCCL INFO Bootstrap : Using eth0:172.16.121.86<0>
ai-worker01:5771:5771 [0] NCCL INFO cudaDriverVersion 12040
NCCL version 2.21.5+cuda12.4
ai-worker01:5771:5783 [0] NCCL INFO Plugin Path : /opt/hpcx/nccl_rdma_sharp_plugin/lib/libnccl-net.so
ai-worker01:5771:5783 [0] NCCL INFO P2P plugin IBext_v8
ai-worker01:5771:5783 [0] NCCL INFO NET/IB : Using [0]irdma0:1/RoCE [1]irdma3:1/RoCE [RO]; OOB eth0:172.16.121.86<0>
ai-worker01:5771:5783 [0] NCCL INFO Using non-device net plugin version 0
ai-worker01:5771:5783 [0] NCCL INFO Using network IBext_v8
"""


def test_clean_info_log_gives_no_issue():
    lines = nccl_lines(CLEAN_ROCE)
    assert len(lines) == 8
    assert diagnose(lines, ib_expected=True) == []
    assert transports(lines) == {"IB"}
    assert nccl_version(lines) == "2.21.5+cuda12.4"


def test_mixed_stderr_is_ignored():
    # https://github.com/pytorch/pytorch/issues/68893 (launcher prefix, colour codes, traceback)
    text = """\
Traceback (most recent call last):
  File "train.py", line 10, in <module>
RuntimeError: NCCL error in: ProcessGroupNCCL.cpp:1191, unhandled system error, NCCL version 2.10.3
[0m ip-172-31-0-137:14605:14673 [0] NCCL INFO Bootstrap : Using [0]ens5:172.31.0.137<0>
[0m NCCL version 2.7.8+cuda11.1
UserWarning: something else
"""
    lines = nccl_lines(text)
    assert lines == [
        "ip-172-31-0-137:14605:14673 [0] NCCL INFO Bootstrap : Using [0]ens5:172.31.0.137<0>",
        "NCCL version 2.7.8+cuda11.1",
    ]
    assert nccl_version(lines) == "2.7.8+cuda11.1"
    assert diagnose(lines, ib_expected=False) == []
    assert nccl_lines("no nccl here\nat all") == []


def test_shm_no_space_new_format():
    # https://github.com/pytorch/ci-infra/pull/490 (misc/shmutils.cc, NCCL >= 2.19)
    text = """\
[2026-04-22 21:34:20] mt-l-x86iavx512-45-172-t4-4-csmpw-runner-g4sfw-workflow:202016:202235 [0] misc/shmutils.cc:88 NCCL WARN Error: failed to extend /dev/shm/nccl-WU88OE to 9637892 bytes, error: No space left on device (28)
[2026-04-22 21:34:20] mt-l-x86iavx512-45-172-t4-4-csmpw-runner-g4sfw-workflow:202016:202235 [0] misc/shmutils.cc:132 NCCL WARN Error while creating shared memory segment /dev/shm/nccl-WU88OE (size 9637888), error: No space left on device (28)
"""
    issues = diagnose(nccl_lines(text), ib_expected=False)
    assert [i.kind for i in issues] == ["shm"]
    assert "/dev/shm/nccl-WU88OE" in issues[0].message
    assert "No space left on device" in issues[0].message
    assert "--shm-size" in issues[0].remediation and "--ipc=host" in issues[0].remediation
    assert len(issues[0].evidence) == 2


def test_shm_old_formats_from_eight_ranks_are_one_issue():
    # https://github.com/NVIDIA/nccl-tests/issues/166 (NCCL 2.18, misc/shmutils.cc:71/112) and
    # https://github.com/NVIDIA/nccl/issues/290 (NCCL 2.5, include/shm.h:28)
    text = """\
ubuntu:9621:9691 [6] misc/shmutils.cc:71 NCCL WARN Error: failed to extend /dev/shm/nccl-fjwOOB to 5967876 bytes
ubuntu:9621:9691 [6] misc/shmutils.cc:112 NCCL WARN Error while creating shared memory segment /dev/shm/nccl-fjwOOB (size 5967872)
ubuntu:9621:9689 [4] misc/shmutils.cc:71 NCCL WARN Error: failed to extend /dev/shm/nccl-oA7T4J to 5967876 bytes
ubuntu:9621:9689 [4] misc/shmutils.cc:112 NCCL WARN Error while creating shared memory segment /dev/shm/nccl-oA7T4J (size 5967872)
gpu2-ru7:2143:2561 [1] include/shm.h:28 NCCL WARN Call to posix_fallocate failed : No space left on device
"""
    issues = diagnose(nccl_lines(text), ib_expected=False)
    assert [i.kind for i in issues] == ["shm"]
    assert len(issues[0].evidence) == 3


def test_shm_attach_failure_asks_for_a_shared_ipc_namespace():
    # https://github.com/vllm-project/vllm/issues/18831 (title line; host prefix as NCCL prints it)
    line = ("node:1:2 [0] misc/shmutils.cc:132 NCCL WARN Error while attaching to shared memory segment "
            "/dev/shm/nccl- (size 192814336), error: No such file or directory (2)")
    (issue,) = diagnose([line], ib_expected=False)
    assert issue.kind == "shm" and "attach" in issue.message and "--ipc=host" in issue.remediation


def test_memlock():
    # https://github.com/NVIDIA/nccl-tests/issues/206 (title: "misc/ibvwrap.cc:278 NCCL WARN Call to
    # ibv_reg_mr_iova2 failed with error Cannot allocate memory"; ulimit -l was 8192)
    line = "node1:123:456 [0] misc/ibvwrap.cc:278 NCCL WARN Call to ibv_reg_mr_iova2 failed with error Cannot allocate memory"
    (issue,) = diagnose([line], ib_expected=True)
    assert issue.kind == "memlock"
    assert "ulimit -l unlimited" in issue.remediation and "--ulimit memlock=-1" in issue.remediation
    # NCCL 2.0 era, no error text: "machine [0] misc/ibvwrap.cu:269 WARN Call to ibv_create_qp failed"
    # (horovod/horovod#98) has no NCCL tag; the same text in today's prefix format is memlock too.
    assert kinds("h:1:2 [0] misc/ibvwrap.cc:269 NCCL WARN Call to ibv_create_qp failed") == ["memlock"]


def test_reg_mr_invalid_argument_is_not_memlock():
    # https://github.com/NVIDIA/nccl/issues/1842 (NCCL 2.27.3; prefix as NCCL prints it)
    line = "a100-1:1:2 [0] misc/ibvwrap.cc:182 NCCL WARN Call to ibv_reg_mr_iova2 failed with error Invalid argument"
    assert kinds(line) == ["ib_error"]


def test_socket_connect():
    # https://github.com/NVIDIA/nccl-tests/issues/166 (misc/socket.cc:483, NCCL 2.18)
    line = ("ubuntu:39964:40075 [0] misc/socket.cc:483 NCCL WARN socketStartConnect: Connect to "
            "10.0.0.2<45763> failed : Software caused connection abort")
    (issue,) = diagnose([line], ib_expected=False)
    assert issue.kind == "socket_connect"
    assert "10.0.0.2<45763>" in issue.message and "Software caused connection abort" in issue.message
    assert "NCCL_SOCKET_IFNAME" in issue.remediation


def test_socket_connect_newer_format_and_ports_group_by_host():
    # https://github.com/modelscope/ms-swift/issues/8043 ("socketPollConnect: connect to
    # 169.254.20.10<52597> returned Connection refused")
    lines = [
        "h:1:2 [0] misc/socket.cc:600 NCCL WARN socketPollConnect: connect to 169.254.20.10<52597> returned Connection refused",
        "h:1:3 [1] misc/socket.cc:600 NCCL WARN socketPollConnect: connect to 169.254.20.10<52598> returned Connection refused",
    ]
    (issue,) = diagnose(lines, ib_expected=False)
    assert issue.kind == "socket_connect" and "Connection refused" in issue.message


def test_socket_instead_of_ib_names_the_cause():
    # https://github.com/pytorch/pytorch/issues/68893 (NCCL 2.7.8: libibverbs missing -> sockets)
    text = """\
[0m ip-172-31-0-137:14605:14673 [0] misc/ibvwrap.cc:63 NCCL WARN Failed to open libibverbs.so[.1]
[0m ip-172-31-0-137:14605:14673 [0] NCCL INFO NET/Socket : Using [0]ens5:172.31.0.137<0> [1]veth75fa783:fe80::14ad:64ff:fe64:b31e%veth75fa783<0>
[0m ip-172-31-0-137:14605:14673 [0] NCCL INFO Using network Socket
[0m ip-172-31-0-137:14605:14688 [0] NCCL INFO Channel 00 : 1[1e0] -> 0[1e0] [receive] via NET/Socket/0
"""
    lines = nccl_lines(text)
    assert transports(lines) == {"Socket"}
    (issue,) = diagnose(lines, ib_expected=True)
    assert issue.kind == "socket_instead_of_ib"
    assert "libibverbs" in issue.message and "libibverbs1" in issue.remediation
    # Without IB ports, sockets are the right choice and the missing verbs library is no problem.
    assert diagnose(lines, ib_expected=False) == []


def test_socket_instead_of_ib_because_of_env():
    # "NCCL_IB_DISABLE set by environment to 0." format: https://github.com/Mellanox/nv_peer_memory/issues/56
    lines = [
        "h:1:1 [0] NCCL INFO NCCL_IB_DISABLE set by environment to 1.",
        "h:1:1 [0] NCCL INFO Using network Socket",
    ]
    (issue,) = diagnose(lines, ib_expected=True)
    assert issue.kind == "socket_instead_of_ib" and "NCCL_IB_DISABLE=1" in issue.message


def test_gdr_disabled():
    # https://github.com/NVIDIA/nccl/issues/1537 (RoCE, peermem loaded but GDR off)
    text = """\
hostname1:25668:27396 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/RoCE [1]mlx5_1:1/RoCE [RO]; OOB primaryip:10.10.10.10<0>
hostname1:25668:27396 [0] NCCL INFO Using non-device net plugin version 0
hostname1:25668:27396 [0] NCCL INFO Using network IB
hostname1:25668:27396 [0] NCCL INFO NET/IB : GPU Direct RDMA Disabled for HCA 0 'mlx5_0'
hostname1:25668:27396 [0] NCCL INFO NET/IB : GPU Direct RDMA Disabled for HCA 1 'mlx5_1'
"""
    (issue,) = diagnose(nccl_lines(text), ib_expected=True)
    assert issue.kind == "gdr_disabled"
    assert "mlx5_0, mlx5_1" in issue.message and "nvidia-peermem" in issue.remediation
    # NCCL 2.7-2.11 added the reason: net_ib.cc "GPU Direct RDMA Disabled for HCA %d '%s' (no module)"
    (old,) = diagnose(["h:1:1 [0] NCCL INFO NET/IB : GPU Direct RDMA Disabled for HCA 0 'mlx5_0' (no module)"],
                      ib_expected=True)
    assert "mlx5_0 (no module)" in old.message


def test_socket_transport_gdr_line_is_not_a_problem():
    # An NCCL 2.22.3 log on GKE (gVNIC, no RDMA) quoted in a public tutorial: "NCCL INFO NET/Socket : GPU Direct RDMA Disabled for HCA 0 'eth0'"
    assert kinds("h:1:1 [0] NCCL INFO NET/Socket : GPU Direct RDMA Disabled for HCA 0 'eth0'") == []


def test_ib_completion_errors_all_formats():
    # https://github.com/NVIDIA/nccl/issues/426 (NCCL <= 2.17)
    old = ("-worker-1:946:988 [0] transport/net_ib.cc:839 NCCL WARN NET/IB : Got completion with error 12, "
           "opcode 1, len 0, vendor err 129")
    # https://github.com/NVIDIA/nccl/issues/928 (NCCL 2.18)
    mid = ("H100-2:19989:20082 [1] transport/net_ib.cc:1295 NCCL WARN NET/IB : Got completion from peer "
           "fe80::966d:ae03:8b:df78%ib0<53249> with error 4, opcode 32564, len 32564, vendor err 81 (Send)")
    # https://github.com/NVIDIA/nccl/issues/1405 (HPC-X IB plugin, NCCL 2.20+ format)
    new = ("kp-ddp-worker-0:3468:3905 [4] ib_plugin.c:1615 NCCL WARN NET/IB : Got completion from peer "
           "10.216.210.236<54862> with status=12 opcode=0 len=0 vendor err 129 (Recv) localGid "
           "fd00:1148:9000:5000:4:200:3:ff22 remoteGidsfd00:1148:9000:5000:4:200:3:ff1f")
    issues = diagnose([old, mid, new], ib_expected=True)
    assert [i.kind for i in issues] == ["ib_error", "ib_error"]  # status 12 twice, status 4 once
    assert "status 12" in issues[0].message and "NCCL_IB_GID_INDEX" in issues[0].remediation


def test_ibv_modify_qp_failure():
    # https://github.com/NVIDIA/nccl-tests/issues/185
    line = ("dgxh100-3:225140:225355 [0] misc/ibvwrap.cc:187 NCCL WARN Call to ibv_modify_qp failed with "
            "error Network is unreachable")
    # https://github.com/NVIDIA/nccl/issues/2013 (NCCL 2.27 format with GIDs)
    line2 = ("[2026-03-13 22:26:02] host-01.example.com:123:456 [5] ibvwrap.c:262 NCCL WARN Call to ibv_modify_qp "
             "failed with 110 Connection timed out, on dev mlx_x:1, curr state INIT, next state RTR, local GID "
             "index 3, local GID ::ffff:10.0.0.1, remote GID ::ffff:10.0.0.2")
    issues = diagnose(nccl_lines(line + "\n" + line2), ib_expected=True)
    assert [i.kind for i in issues] == ["ib_error", "ib_error"]
    assert "Network is unreachable" in issues[0].message
    assert issues[1].message.endswith("with Connection timed out")


def test_no_ib_device_when_ports_are_active():
    # "NCCL INFO NET/IB : No device found." as in an NCCL 2.22.3 GKE log quoted in a public tutorial
    line = "h:1:1 [0] NCCL INFO NET/IB : No device found."
    (issue,) = diagnose([line], ib_expected=True)
    assert issue.kind == "ib_error" and "/dev/infiniband" in issue.remediation
    assert diagnose([line], ib_expected=False) == []


def test_unrecognised_warn_once_across_ranks():
    # https://github.com/NVIDIA/nccl-tests/issues/188
    text = "\n".join(
        f"user:16899:{16961 + rank} [{rank}] misc/socket.cc:441 NCCL WARN socketFinalizeAccept: wrong type 4 != 3"
        for rank in range(8)
    )
    issues = diagnose(nccl_lines(text), ib_expected=False)
    assert [i.kind for i in issues] == ["warn"]
    assert "socketFinalizeAccept: wrong type 4 != 3" in issues[0].message
    assert len(issues[0].evidence) == 3


def test_transports_inside_the_node():
    # https://github.com/NVIDIA/nccl-tests/issues/188 and /166, https://github.com/NVIDIA/nccl/issues/290
    lines = nccl_lines("""\
user:16899:16949 [0] NCCL INFO Channel 01/0 : 9[1] -> 0[0] [receive] via NET/Socket/0
user:695834:695885 [3] NCCL INFO Channel 00/0 : 11[3] -> 12[4] via P2P/IPC/read
user:695835:695881 [4] NCCL INFO 2 coll channels, 0 nvls channels, 2 p2p channels, 2 p2p channels per peer
ubuntu:39964:40049 [5] NCCL INFO Channel 20 : 5[5] -> 4[4] via SHM/direct/direct
gpu2-ru7:2144:2556 [2] NCCL INFO Ring 00 : 2[3d000] -> 3[3e000] via direct shared memory
""")
    assert transports(lines) == {"Socket", "P2P", "SHM"}
    # NCCL 2.4 printed both NET/Socket and NET/IB init lines (Mellanox/nv_peer_memory#56); IB was used.
    old = nccl_lines("""\
master_node:11715:11984 [0] NCCL INFO NET/Socket : Using [0]ib0:192.168.11.1<0>
master_node:11715:11984 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB ; OOB ib0:192.168.11.1<0>
""")
    assert transports(old) == {"IB"}


def test_real_log_of_nccl_2_28_9_on_an_h200_vm():
    """96 lines NCCL 2.28.9 printed on a real 1x H200 VM (no InfiniBand, virtio eth0), captured by
    `preflight bench` through benchmarks/gpu_check.sh: clean for a node without IB ports; the
    same lines on a node whose IB ports are up mean NCCL fell back to sockets."""
    from pathlib import Path

    from preflight.bench.nccl_log import diagnose, nccl_version, transports

    path = Path(__file__).parent / "fixtures" / "bench" / "nccl_2.28.9_h200_vm_socket.log"
    lines = path.read_text().splitlines()
    assert nccl_version(lines) == "2.28.9+cuda13.0"
    assert "Socket" in transports(lines) and "IB" not in transports(lines)
    assert diagnose(lines, ib_expected=False) == []
    kinds = {issue.kind for issue in diagnose(lines, ib_expected=True)}
    assert "socket_instead_of_ib" in kinds
