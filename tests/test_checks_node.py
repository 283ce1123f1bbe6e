"""Driver, package, system and network-environment checks on recorded machines."""

from __future__ import annotations

from conftest import fixture_facts, judge

from preflight.findings import Status

MIB = 1 << 20
GIB = 1 << 30


def _env(**values):  # noqa: ANN003, ANN202
    def edit(data):  # noqa: ANN001
        data["network"]["env"].update(values)

    return edit


# driver.torch_cuda ---------------------------------------------------------------------------

def test_torch_cuda_newer_major_than_driver_fails():
    def old_driver(data):
        data["gpu"]["cuda_driver_version"] = "11.4"
        data["gpu"]["driver_version"] = "470.82.01"

    finding = judge(fixture_facts("h100_sxm_8x", old_driver))["driver.torch_cuda"]
    assert finding.status == Status.FAIL
    assert "470.82.01" in finding.observed and "upgrade the NVIDIA driver" in finding.remediation


def test_torch_cuda_minor_newer_than_driver_warns_minor_version_compatibility():
    finding = judge(fixture_facts("t4_cloud_vm"))["driver.torch_cuda"]
    assert finding.status == Status.WARN
    assert "minor-version compatibility" in finding.remediation


def test_torch_cuda_supported():
    assert judge(fixture_facts("h100_sxm_8x"))["driver.torch_cuda"].status == Status.PASS
    assert judge(fixture_facts("no_gpu"))["driver.torch_cuda"].status == Status.SKIP


# driver.cuda_visible_devices ----------------------------------------------------------------

def test_cuda_visible_devices():
    ok = judge(fixture_facts("h100_sxm_8x", _env(CUDA_VISIBLE_DEVICES="0,1,2,3")))
    assert ok["driver.cuda_visible_devices"].status == Status.PASS
    empty = judge(fixture_facts("h100_sxm_8x", _env(CUDA_VISIBLE_DEVICES="")))
    assert empty["driver.cuda_visible_devices"].status == Status.FAIL
    beyond = judge(fixture_facts("t4_cloud_vm", _env(CUDA_VISIBLE_DEVICES="0,1")))
    assert beyond["driver.cuda_visible_devices"].status == Status.FAIL
    assert "names 1" in beyond["driver.cuda_visible_devices"].observed
    uuid = fixture_facts("t4_cloud_vm").gpu.devices[0].uuid
    by_uuid = judge(fixture_facts("t4_cloud_vm", _env(CUDA_VISIBLE_DEVICES=uuid[:12])))
    assert by_uuid["driver.cuda_visible_devices"].status == Status.PASS


# packages -----------------------------------------------------------------------------------

def test_cpu_torch_on_a_gpu_node_fails():
    def cpu_wheel(data):
        data["python"]["packages"]["torch"] = "2.5.1+cpu"
        data["python"]["torch_cuda"] = None
        data["python"]["unavailable"]["torch_cuda"] = "torch is a CPU-only build"

    finding = judge(fixture_facts("a100_sxm_8x", cpu_wheel))["packages.torch_cuda_build"]
    assert finding.status == Status.FAIL
    assert "CPU-only" in finding.observed and "--index-url" in finding.remediation
    assert judge(fixture_facts("no_gpu"))["packages.torch_cuda_build"].status == Status.SKIP


def test_torch_missing_warns():
    def no_torch(data):
        data["python"]["packages"].pop("torch")

    assert judge(fixture_facts("t4_cloud_vm", no_torch))["packages.torch_installed"].status == Status.WARN


# system -------------------------------------------------------------------------------------

def _shm(size):  # noqa: ANN001, ANN202
    return lambda data: data["system"]["shm"].update(size_bytes=size, free_bytes=size)


def test_shm_thresholds_depend_on_gpu_count():
    multi = judge(fixture_facts("container_small_shm"))["system.shm_size"]
    assert multi.status == Status.FAIL and "--shm-size" in multi.remediation
    assert judge(fixture_facts("a100_sxm_8x", _shm(768 * MIB)))["system.shm_size"].status == Status.FAIL
    assert judge(fixture_facts("t4_cloud_vm", _shm(768 * MIB)))["system.shm_size"].status == Status.PASS
    assert judge(fixture_facts("t4_cloud_vm", _shm(64 * MIB)))["system.shm_size"].status == Status.WARN


def test_shm_not_writable_fails():
    def readonly(data):
        data["system"]["shm"].update(writable=False, mode="755")

    finding = judge(fixture_facts("h100_sxm_8x", readonly))["system.shm_writable"]
    assert finding.status == Status.FAIL and "1777" in finding.remediation


def test_memlock_with_infiniband():
    assert judge(fixture_facts("h100_sxm_8x"))["system.memlock"].status == Status.PASS

    def limited(data):
        data["system"]["ulimits"]["memlock"] = {"soft": 64 * 1024, "hard": 64 * 1024}

    finding = judge(fixture_facts("h100_sxm_8x", limited))["system.memlock"]
    assert finding.status == Status.FAIL and "memlock" in finding.remediation
    assert judge(fixture_facts("t4_cloud_vm", limited))["system.memlock"].status == Status.SKIP


def test_disk_free():
    def low(free):
        def edit(data):  # noqa: ANN001
            data["system"]["disks"][0]["free_bytes"] = free

        return edit

    assert judge(fixture_facts("h100_sxm_8x"))["system.disk_free"].status == Status.PASS
    assert judge(fixture_facts("h100_sxm_8x", low(20 * GIB)))["system.disk_free"].status == Status.WARN
    finding = judge(fixture_facts("h100_sxm_8x", low(2 * GIB)))["system.disk_free"]
    assert finding.status == Status.FAIL and "2.0 GiB free" in finding.observed


def test_ram_per_gpu_uses_the_container_limit():
    def limit(data):
        data["system"]["memory"]["cgroup_limit_bytes"] = 64 * GIB

    assert judge(fixture_facts("h100_sxm_8x"))["system.ram_per_gpu"].status == Status.PASS
    finding = judge(fixture_facts("h100_sxm_8x", limit))["system.ram_per_gpu"]
    assert finding.status == Status.WARN and "container memory limit 64.0 GiB" in finding.observed


# network environment ------------------------------------------------------------------------

def test_hostname_resolving_to_a_routable_address_passes():
    assert judge(fixture_facts("h100_sxm_8x"))["net.hostname_loopback"].status == Status.PASS


def test_nccl_socket_ifname_rules():
    # h100_sxm_8x: up interfaces are enp157s0f0np0, enp27s0f0np0 and lo; docker0 is down
    assert judge(fixture_facts("h100_sxm_8x"))["net.nccl_socket_ifname"].status == Status.PASS

    def run(value):  # noqa: ANN001, ANN202
        return judge(fixture_facts("h100_sxm_8x", _env(NCCL_SOCKET_IFNAME=value)))["net.nccl_socket_ifname"]

    none = run("eth")
    assert none.status == Status.FAIL and "matches no up interface" in none.observed
    down = run("docker")
    assert down.status == Status.FAIL and "docker0 matched but is down" in down.observed
    several = run("enp")
    assert several.status == Status.WARN and "enp157s0f0np0, enp27s0f0np0" in several.observed
    assert run("=enp27s0f0np0").status == Status.PASS
    assert run("=enp27s0f0").status == Status.FAIL  # exact: a prefix is not enough
    assert run("^lo,enp157").status == Status.PASS  # leaves enp27s0f0np0 alone
    assert run("^lo,enp").status == Status.FAIL


def test_nccl_prefix_matching_a_vlan_subinterface_warns():
    def bond(data):
        for name in ("bond0", "bond0.2973"):
            data["network"]["interfaces"].append(
                {"name": name, "up": True, "addresses": [], "mtu": 9000, "speed_mbps": None, "kind": "ethernet"}
            )
        data["network"]["env"]["NCCL_SOCKET_IFNAME"] = "bond0"

    finding = judge(fixture_facts("h100_sxm_8x", bond))["net.nccl_socket_ifname"]
    assert finding.status == Status.WARN
    assert "bond0, bond0.2973" in finding.observed and "NCCL_SOCKET_IFNAME==bond0" in finding.remediation


def test_gloo_socket_ifname_exact_names():
    good = fixture_facts("h100_sxm_8x")
    up = next(i.name for i in good.network.interfaces if i.up and i.kind == "ethernet")
    assert judge(fixture_facts("h100_sxm_8x", _env(GLOO_SOCKET_IFNAME=up)))["net.gloo_socket_ifname"].status == Status.PASS
    prefix = judge(fixture_facts("h100_sxm_8x", _env(GLOO_SOCKET_IFNAME=up[:3])))["net.gloo_socket_ifname"]
    assert prefix.status == Status.FAIL


def test_master_addr_unresolvable_fails():
    def unresolved(data):
        data["network"]["env"]["MASTER_ADDR"] = "head-node"
        data["network"]["master_addr_addresses"] = []
        data["network"]["unavailable"]["master_addr_addresses"] = "'head-node' does not resolve: Name or service not known"

    finding = judge(fixture_facts("h100_sxm_8x", unresolved))["net.master_addr"]
    assert finding.status == Status.FAIL and "head-node" in finding.observed
    assert judge(fixture_facts("h100_sxm_8x"))["net.master_addr"].status == Status.PASS


def test_p2p_disabled_on_nvlink_node_and_ib_disabled_with_active_ports_warn():
    p2p = judge(fixture_facts("h100_sxm_8x", _env(NCCL_P2P_DISABLE="1")))["net.nccl_env_contradictions"]
    assert p2p.status == Status.WARN and "NVLink" in p2p.observed
    ib = judge(fixture_facts("h100_sxm_8x", _env(NCCL_IB_DISABLE="1")))["net.nccl_env_contradictions"]
    assert ib.status == Status.WARN and "RDMA" in ib.observed
    assert judge(fixture_facts("t4_cloud_vm", _env(NCCL_P2P_DISABLE="1")))["net.nccl_env_contradictions"].status == Status.PASS


def test_nccl_ib_hca_and_peermem():
    from preflight.findings import Status as S

    assert judge(fixture_facts("h100_sxm_8x"))["net.nccl_ib_hca"].status == S.PASS
    typo = judge(fixture_facts("h100_sxm_8x", _env(NCCL_IB_HCA="mlx5_0,mlx5_99")))["net.nccl_ib_hca"]
    assert typo.status == S.WARN and "mlx5_99" in typo.observed
    none = judge(fixture_facts("h100_sxm_8x", _env(NCCL_IB_HCA="=mlx4_0")))["net.nccl_ib_hca"]
    assert "matches none" in none.observed

    def no_peermem(data):
        data["system"]["kernel_modules"]["nvidia_peermem"] = False

    finding = judge(fixture_facts("h100_sxm_8x", no_peermem))["net.nccl_ib_hca"]
    assert finding.status == S.WARN and "modprobe nvidia_peermem" in finding.remediation
    assert judge(fixture_facts("t4_cloud_vm"))["net.nccl_ib_hca"].status == S.SKIP
