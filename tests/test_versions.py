"""Version rules on nodes and in `preflight compat`, each on a real published combination."""

from __future__ import annotations

import json

from conftest import fixture_facts, judge

from preflight.findings import Status


def _torch(version: str, cuda: str | None):  # noqa: ANN202
    def edit(data):  # noqa: ANN001
        data["python"]["packages"]["torch"] = version
        data["python"]["torch_cuda"] = cuda

    return edit


def test_rtx_5090_on_a_cu124_wheel_has_no_kernels():
    # "NVIDIA GeForce RTX 5090 with CUDA capability sm_120 is not compatible with the current
    # PyTorch installation" then "no kernel image is available" (compat_facts.md §2c)
    def rtx5090(data):
        for dev in data["gpu"]["devices"]:
            dev.update(name="NVIDIA GeForce RTX 5090", compute_capability="12.0")
        _torch("2.5.1+cu124", "12.4")(data)

    finding = judge(fixture_facts("rtx4090_workstation", rtx5090))["versions.torch_gpu_arch"]
    assert finding.status == Status.FAIL
    assert "compute capability 12.0" in finding.observed and "cu128" in finding.remediation


def test_v100_on_a_cuda_13_wheel_fails_and_cu126_passes():
    # CUDA 13 builds dropped Volta (pytorch/pytorch#157517)
    bad = judge(fixture_facts("v100_16gb", _torch("2.9.1+cu130", "13.0")))["versions.torch_gpu_arch"]
    assert bad.status == Status.FAIL and "sm_70" not in bad.evidence["compiled"]
    good = judge(fixture_facts("v100_16gb", _torch("2.9.1+cu126", "12.6")))["versions.torch_gpu_arch"]
    assert good.status == Status.PASS


def test_h100_on_the_pypi_default_wheel_passes():
    finding = judge(fixture_facts("h100_sxm_8x"))["versions.torch_gpu_arch"]
    assert finding.status == Status.PASS, finding.observed


def test_vendor_builds_are_not_judged_against_official_wheels():
    finding = judge(fixture_facts("h100_sxm_8x", _torch("2.6.0a0+ecf3bae40a.nv25.01", "12.8")))
    assert finding["versions.torch_gpu_arch"].status == Status.SKIP


def test_transformers_runtime_gate_on_old_torch():
    # transformers >= 4.52 logs "Disabling PyTorch because PyTorch >= 2.1 is required" (import_utils.py)
    def old_torch(data):
        _torch("2.0.1+cu118", "11.8")(data)
        data["python"]["packages"]["transformers"] = "4.52.1"

    finding = judge(fixture_facts("a100_sxm_8x", old_torch))["versions.package_constraints"]
    assert finding.status == Status.FAIL
    assert "transformers 4.52.1 needs torch >=2.1" in finding.observed and "disables torch" in finding.observed


def test_installed_torchvision_for_another_torch_and_numpy_2_under_old_torch():
    # torchvision 0.19.0 METADATA: torch==2.4.0 (a torch upgraded alone leaves it behind);
    # torch 2.2 wheels were built against NumPy 1.x (pytorch/pytorch#107302)
    def drifted(data):
        _torch("2.5.1+cu124", "12.4")(data)
        data["python"]["packages"].update({"torchvision": "0.19.0", "numpy": "1.26.4"})

    finding = judge(fixture_facts("h100_sxm_8x", drifted))["versions.package_constraints"]
    assert finding.status == Status.FAIL
    assert "torchvision 0.19.0 needs torch ==2.4.0, found 2.5.1+cu124" in finding.observed

    def numpy2(data):
        _torch("2.2.2+cu121", "12.1")(data)
        data["python"]["packages"]["numpy"] = "2.1.3"
        for name in ("torchvision", "torchaudio", "transformers", "accelerate", "peft", "trl"):
            data["python"]["packages"].pop(name, None)

    finding = judge(fixture_facts("h100_sxm_8x", numpy2))["versions.package_constraints"]
    assert finding.status == Status.FAIL and "torch 2.2.2+cu121 needs numpy <2, found 2.1.3" in finding.observed

    def matched(data):
        _torch("2.4.0+cu124", "12.4")(data)
        data["python"]["packages"].update({"torchvision": "0.19.0", "numpy": "2.1.3"})
        for name in ("torchaudio", "transformers", "accelerate", "peft", "trl"):
            data["python"]["packages"].pop(name, None)

    finding = judge(fixture_facts("h100_sxm_8x", matched))["versions.package_constraints"]
    assert finding.status == Status.PASS, finding.observed


def test_flash_attn_on_turing_fails():
    # flash_api.cpp: "FlashAttention only supports Ampere GPUs or newer."
    def fa(data):
        data["python"]["packages"]["flash-attn"] = "2.6.3"

    finding = judge(fixture_facts("t4_cloud_vm", fa))["versions.flash_attn"]
    assert finding.status == Status.FAIL and "sdpa" in finding.remediation
    assert judge(fixture_facts("h100_sxm_8x"))["versions.flash_attn"].status in (Status.PASS, Status.WARN)


def _flash_attn_build(torch: str, torch_abi: bool | None, **build):  # noqa: ANN202, ANN003
    def edit(data):  # noqa: ANN001
        data["python"]["packages"].update({"torch": torch, "flash-attn": "2.6.3"})
        data["python"]["torch_cxx11_abi"] = torch_abi
        data["python"]["flash_attn_build"] = {
            "library": "/venv/lib/python3.10/site-packages/flash_attn_2_cuda.cpython-310-x86_64-linux-gnu.so",
            "cxx11_abi": None, **build,
        }

    return edit


def test_flash_attn_built_with_the_other_cxx_abi_fails():
    # Dao-AILab/flash-attention#1717: a flash-attn built with the C++11 ABI beside a pre-C++11
    # torch: "flash_attn_2_cuda...so: undefined symbol:
    # _ZN3c105ErrorC2ENS_14SourceLocationENSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE"
    facts = fixture_facts("a100_sxm_8x", _flash_attn_build("2.4.1", False, cxx11_abi=True))
    finding = judge(facts)["versions.flash_attn"]
    assert finding.status == Status.FAIL
    assert "C++11 (cxx11abiTRUE)" in finding.observed and "pre-C++11 (cxx11abiFALSE)" in finding.observed
    assert "cxx11abiFALSE" in finding.remediation and "--no-build-isolation" in finding.remediation
    assert "flash-attention#1717" in finding.evidence["source"]


def test_flash_attn_abi_from_the_wheel_name_when_the_library_does_not_tell():
    wheel = ("https://github.com/Dao-AILab/flash-attention/releases/download/v2.6.3/"
             "flash_attn-2.6.3+cu123torch2.4cxx11abiTRUE-cp310-cp310-linux_x86_64.whl")
    facts = fixture_facts("a100_sxm_8x", _flash_attn_build(
        "2.4.1", False, wheel_url=wheel, wheel_torch="2.4", wheel_cxx11_abi=True))
    finding = judge(facts)["versions.flash_attn"]
    assert finding.status == Status.FAIL and "its wheel flash_attn-2.6.3+cu123torch2.4cxx11abiTRUE" in finding.observed


def test_flash_attn_wheel_for_another_torch_minor_fails():
    # Dao-AILab/flash-attention#931: flash-attn 2.5.7's wheels (built up to torch 2.2) under torch
    # 2.3.0: "flash_attn_2_cuda.cpython-310-x86_64-linux-gnu.so: undefined symbol: _ZN3c104cuda9SetDeviceEi"
    wheel = ("https://github.com/Dao-AILab/flash-attention/releases/download/v2.6.3/"
             "flash_attn-2.6.3%2Bcu123torch2.4cxx11abiFALSE-cp310-cp310-linux_x86_64.whl")
    facts = fixture_facts("a100_sxm_8x", _flash_attn_build(
        "2.5.1", False, cxx11_abi=False, wheel_url=wheel, wheel_torch="2.4", wheel_cxx11_abi=False))
    finding = judge(facts)["versions.flash_attn"]
    assert finding.status == Status.FAIL
    assert "release wheel for torch 2.4" in finding.observed and "torch 2.5.1 is installed" in finding.observed
    assert "torch 2.5" in finding.remediation


def test_flash_attn_built_for_this_torch_passes():
    wheel = ("https://github.com/Dao-AILab/flash-attention/releases/download/v2.6.3/"
             "flash_attn-2.6.3+cu123torch2.4cxx11abiFALSE-cp310-cp310-linux_x86_64.whl")
    facts = fixture_facts("a100_sxm_8x", _flash_attn_build(
        "2.4.1", False, cxx11_abi=False, wheel_url=wheel, wheel_torch="2.4", wheel_cxx11_abi=False))
    finding = judge(facts)["versions.flash_attn"]
    assert finding.status == Status.PASS, finding.observed
    assert "both built with the pre-C++11 (cxx11abiFALSE) C++ ABI" in finding.observed
    # what the probe could not read is not a finding: the older rules decide
    unknown = fixture_facts("a100_sxm_8x", _flash_attn_build("2.4.1", None, cxx11_abi=True))
    assert judge(unknown)["versions.flash_attn"].status == Status.PASS


def test_nvcc_major_mismatch_with_deepspeed_fails():
    # torch.utils.cpp_extension: "The detected CUDA version (11.8) mismatches the version that was used to compile PyTorch"
    def nvcc(version):
        return lambda data: data["python"].update(nvcc_version=version)

    assert judge(fixture_facts("h100_sxm_8x", nvcc("11.8")))["versions.nvcc_torch_cuda"].status == Status.FAIL
    assert judge(fixture_facts("h100_sxm_8x", nvcc("12.1")))["versions.nvcc_torch_cuda"].status == Status.WARN
    assert judge(fixture_facts("h100_sxm_8x", nvcc("12.4")))["versions.nvcc_torch_cuda"].status == Status.PASS


def test_driver_too_old_names_the_minimum_driver():
    def old(data):
        data["gpu"].update(driver_version="470.82.01", cuda_driver_version="11.4")

    finding = judge(fixture_facts("h100_sxm_8x", old))["driver.torch_cuda"]
    assert finding.status == Status.FAIL
    assert "550.54.14" in finding.remediation  # CUDA 12.4's toolkit driver, NVIDIA release notes table 3


# preflight compat ---------------------------------------------------------------------------

def test_compat_what_if_rtx_5090_suggests_working_wheels(run_cli):
    code, out, _ = run_cli("compat", "--gpu", "RTX 5090", "--driver", "570.86.10", "--torch", "2.5.1+cu124", "--json")
    doc = json.loads(out)
    arch = next(f for f in doc["findings"] if f["id"] == "versions.torch_gpu_arch")
    assert code == 1 and arch["status"] == "fail"
    wheels = doc["suggested_wheels"]
    assert wheels and all(tuple(map(int, w["torch"].split("."))) >= (2, 7) for w in wheels)
    assert not any(w["variant"].startswith("cu13") for w in wheels)  # CUDA 13 needs driver R580+


def test_compat_driver_too_old_for_the_default_wheel(run_cli):
    code, out, _ = run_cli("compat", "--gpu", "H100", "--driver", "535.104.05", "--torch", "2.11.0", "--json")
    finding = next(f for f in json.loads(out)["findings"] if f["id"] == "driver.torch_cuda")
    assert code == 1 and finding["status"] == "fail"  # 2.11's PyPI default is cu130: driver >= 580


def test_compat_use_bf16_on_v100(run_cli):
    code, out, _ = run_cli("compat", "--gpu", "7.0", "--use", "bf16,fp16-is-not-a-feature", "--json")
    assert code == 2  # unknown feature is an input error
    code, out, _ = run_cli("compat", "--gpu", "V100", "--use", "bf16", "--json")
    finding = next(f for f in json.loads(out)["findings"] if f["id"] == "versions.features_used")
    assert code == 1 and finding["status"] == "fail" and "bf16 needs cc 8.0+" in finding["observed"]
    code, out, _ = run_cli("compat", "--gpu", "H100", "--use", "bf16,fp8,flash-attention-3", "--json")
    assert code == 0


def test_compat_unknown_gpu_is_an_input_error(run_cli):
    code, out, err = run_cli("compat", "--gpu", "Voodoo 5")
    assert code == 2 and "unknown or ambiguous" in err and len(err.strip().splitlines()) == 1


def test_compiled_matrix_is_generated_from_the_toml():
    from preflight.compat import COMPILED, compile_matrix, shipped_folder

    shipped = json.loads((shipped_folder() / COMPILED).read_text())
    assert shipped == json.loads(json.dumps(compile_matrix(shipped_folder()), sort_keys=True)), (
        "run `python -m preflight.compat` after editing compat_matrix/*.toml"
    )


def test_matrix_override_folder(run_cli, tmp_path):
    import shutil

    from preflight.compat import shipped_folder

    custom = tmp_path / "matrix"
    shutil.copytree(shipped_folder(), custom)
    text = (custom / "gpus.toml").read_text().replace('compute_capability = "9.0"', 'compute_capability = "7.0"')
    (custom / "gpus.toml").write_text(text)
    code, out, _ = run_cli("compat", "--gpu", "H100", "--use", "bf16", "--matrix", str(custom), "--json")
    assert code == 1  # judged with the overriding data: an "H100" at 7.0 has no bf16
    code, _, err = run_cli("compat", "--gpu", "H100", "--matrix", str(tmp_path / "nowhere"))
    assert code == 2 and "nowhere" in err


def test_compat_what_if_reads_the_flash_attn_wheel_label(run_cli):
    """`preflight compat --pkg flash-attn==<release wheel version>`: the label says which torch
    minor and C++ ABI the wheel was built for (Dao-AILab/flash-attention#931, #1717)."""
    import json

    def verdict(torch: str, flash: str) -> dict:
        _, out, _ = run_cli("compat", "--gpu", "H100", "--driver", "570.86.15", "--torch", torch,
                            "--pkg", f"flash-attn=={flash}", "--only", "versions.flash_attn", "--json")
        (finding,) = json.loads(out)["findings"]
        return finding

    minor = verdict("2.5.1", "2.6.3+cu123torch2.4cxx11abiFALSE")
    assert minor["status"] == "fail" and "release wheel for torch 2.4" in minor["observed"]
    abi = verdict("2.7.1", "2.8.3+cu12torch2.7cxx11abiFALSE")
    assert abi["status"] == "fail" and "torch 2.7.1 uses the C++11 (cxx11abiTRUE) one" in abi["observed"]
    assert verdict("2.7.1", "2.8.3+cu12torch2.7cxx11abiTRUE")["status"] == "pass"
