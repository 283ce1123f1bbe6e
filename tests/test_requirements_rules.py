"""`preflight requirements`: findings at file:line from real published combinations, targets,
pyproject.toml, exit codes, and the pre-commit hook definition."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _findings(out: str) -> list[dict]:
    return [f for f in json.loads(out)["findings"] if f["status"] != "pass"]


def _by_id(out: str, rule: str) -> list[dict]:
    return [f for f in _findings(out) if f["id"] == rule]


def test_transformers_pin_needing_newer_torch_fails_at_its_line(project, run_cli):
    # transformers 4.52.1 METADATA: torch>=2.1,<2.7 (and its import gate disables torch below 2.1)
    (project / "requirements.txt").write_text("torch==2.0.1\ntransformers==4.52.1\n")
    code, out, _ = run_cli("requirements", "requirements.txt", "--json")
    conflicts = _by_id(out, "requirements.matrix_conflict")
    assert code == 1 and conflicts
    assert conflicts[0]["node"] == "requirements.txt:2" and conflicts[0]["status"] == "fail"
    assert "needs torch >=2.1" in conflicts[0]["observed"]


def test_compatible_pins_pass(project, run_cli):
    (project / "requirements.txt").write_text(
        "torch==2.5.1\ntransformers==4.46.3\naccelerate==1.0.1\npeft==0.13.2\ndeepspeed==0.15.4\n"
        "flash-attn==2.6.3\nbitsandbytes==0.44.1\n"
    )
    code, out, _ = run_cli("requirements", "requirements.txt", "--json")
    assert code == 0, _findings(out)
    assert _findings(out) == []


def test_companion_pins_the_wheels_metadata_rejects_fail(project, run_cli):
    # torchvision 0.18.0 METADATA: torch==2.3.0; vllm 0.6.3: torch==2.4.0, numpy<2.0.0,
    # torchvision==0.19; transformers 4.57: huggingface-hub<1.0; torch 2.2 wheels: NumPy 1.x.
    (project / "requirements.txt").write_text(
        "torch==2.2.2+cu121\ntorchvision==0.18.0\nnumpy==2.0.1\nvllm==0.6.3\n"
        "transformers==4.57.1\nhuggingface-hub==1.0.0\n"
    )
    code, out, _ = run_cli("requirements", "requirements.txt", "--json")
    found = {(f["node"], f["observed"]) for f in _by_id(out, "requirements.matrix_conflict")}
    assert code == 1
    assert ("requirements.txt:1", "torch 2.2.2+cu121 needs numpy <2, found 2.0.1 (requirements.txt:3)") in found
    assert ("requirements.txt:2",
            "torchvision 0.18.0 needs torch ==2.3.0, found 2.2.2+cu121 (requirements.txt:1)") in found
    vllm = {o for n, o in found if n == "requirements.txt:4"}
    assert {"vllm 0.6.3 needs torch ==2.4.0, found 2.2.2+cu121 (requirements.txt:1)",
            "vllm 0.6.3 needs numpy <2.0.0, found 2.0.1 (requirements.txt:3)",
            "vllm 0.6.3 needs torchvision ==0.19, found 0.18.0 (requirements.txt:2)"} <= vllm
    assert any(n == "requirements.txt:5" and "needs huggingface-hub" in o and "found 1.0.0" in o for n, o in found)
    assert all(f["status"] == "fail" for f in _by_id(out, "requirements.matrix_conflict")
               if "for torch.load" not in f["observed"])  # transformers' torch.load guard only warns


def test_companion_pins_that_agree_pass(project, run_cli):
    # torchvision 0.18.1 / torchaudio 2.3.1 METADATA: torch==2.3.1 (the +cu121 label is local);
    # torch 2.3 is built against NumPy 2; numpy 1.26 suits every torch.
    (project / "requirements.txt").write_text(
        "torch==2.3.1+cu121\ntorchvision==0.18.1+cu121\ntorchaudio==2.3.1+cu121\nnumpy==2.0.1\n"
    )
    code, out, _ = run_cli("requirements", "requirements.txt", "--json")
    assert code == 0 and _findings(out) == []
    (project / "requirements.txt").write_text("torch==2.2.2\ntorchvision==0.17.2\nnumpy==1.26.4\n")
    code, out, _ = run_cli("requirements", "requirements.txt", "--json")
    assert code == 0 and _findings(out) == []


def test_contradicting_pins_across_an_include(project, run_cli):
    (project / "requirements.txt").write_text("torch==2.3.1\n-r more/extra.txt\n")
    (project / "more").mkdir()
    (project / "more" / "extra.txt").write_text("# extras\ntorch==2.4.0\n")
    code, out, _ = run_cli("requirements", "requirements.txt", "--json")
    (clash,) = _by_id(out, "requirements.conflicting_pins")
    assert clash["node"] == "more/extra.txt:2" and "requirements.txt:1" in clash["observed"]


def test_unpinned_critical_packages_warn_and_exit_zero(project, run_cli):
    (project / "requirements.txt").write_text("torch\ntransformers>=4.40\nrich\n")
    code, out, _ = run_cli("requirements", "requirements.txt", "--json")
    assert code == 0
    assert {f["node"] for f in _by_id(out, "requirements.unpinned")} == {"requirements.txt:1", "requirements.txt:2"}
    code, _, _ = run_cli("requirements", "requirements.txt", "--json", "--strict")
    assert code == 1


def test_constraints_file_pins_count(project, run_cli):
    (project / "requirements.txt").write_text("-c constraints.txt\ntorch\n")
    (project / "constraints.txt").write_text("torch==2.5.1\n")
    _, out, _ = run_cli("requirements", "requirements.txt", "--json")
    assert _by_id(out, "requirements.unpinned") == []


def test_cuda_13_wheel_on_an_r570_driver(project, run_cli):
    # torch 2.11's PyPI default is cu130, which needs driver R580+ (compat_facts.md §2a)
    (project / "requirements.txt").write_text("torch==2.11.0\n")
    code, out, _ = run_cli("requirements", "requirements.txt", "--json", "--target-driver", "570.86.10")
    (finding,) = _by_id(out, "requirements.torch_variant")
    assert code == 1 and finding["status"] == "fail" and "580" in finding["observed"]


def test_index_url_variant_against_gpu_and_label_disagreement(project, run_cli):
    (project / "requirements.txt").write_text(
        "--index-url https://download.pytorch.org/whl/cu124\ntorch==2.5.1+cu124\n"
    )
    code, out, _ = run_cli("requirements", "requirements.txt", "--json", "--target-gpu", "RTX 5090")
    (finding,) = _by_id(out, "requirements.torch_variant")
    assert finding["status"] == "fail" and "no kernels" in finding["observed"]
    (project / "requirements.txt").write_text(
        "--index-url https://download.pytorch.org/whl/cu118\ntorch==2.5.1+cu124\n"
    )
    _, out, _ = run_cli("requirements", "requirements.txt", "--json")
    assert "disagree" in _by_id(out, "requirements.torch_variant")[0]["observed"]


def test_target_from_pyproject_and_marker_exclusion(project, run_cli):
    (project / "pyproject.toml").write_text(
        '[project]\nname = "ft"\nversion = "0"\ndependencies = [\n'
        '  "torch==2.0.1; python_version < \'3.12\'",\n  "transformers==4.44.2",\n]\n'
        '[tool.preflight.target]\npython = "3.12"\n'
    )
    code, out, _ = run_cli("requirements", "pyproject.toml", "--json")
    skipped = _by_id(out, "requirements.python_target")
    assert skipped and "skipped on Python 3.12" in skipped[0]["observed"]
    assert skipped[0]["node"].startswith("pyproject.toml:")


def test_editable_and_vcs_lines_are_reported_as_not_checkable(project, run_cli):
    (project / "requirements.txt").write_text("-e .\ngit+https://github.com/huggingface/peft.git@v0.13.2#egg=peft\n")
    _, out, _ = run_cli("requirements", "requirements.txt", "--json")
    assert len(_by_id(out, "requirements.not_checkable")) == 2


def test_bad_line_is_an_input_error_with_file_and_line(project, run_cli):
    (project / "requirements.txt").write_text("torch==2.1\ntransformers===\n")
    code, out, err = run_cli("requirements", "requirements.txt")
    assert code == 2 and out == "" and "requirements.txt:2" in err and "Traceback" not in err


def test_terminal_output_is_one_line_per_finding(project, run_cli):
    (project / "requirements.txt").write_text("torch==2.0.1\ntransformers==4.52.1\n")
    code, out, _ = run_cli("requirements", "requirements.txt")
    assert re.search(r"^requirements\.txt:2: fail requirements\.matrix_conflict: ", out, re.M)
    assert "FAILED" in out.splitlines()[-1]


def test_pre_commit_hook_definition():
    import yaml  # noqa: PLC0415 - pre-commit's own format

    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "preflight-requirements" and hook["entry"] == "preflight requirements"
    pattern = re.compile(hook["files"])
    for name in ("requirements.txt", "deps/requirements-train.txt", "constraints.txt", "pyproject.toml"):
        assert pattern.search(name), name
    assert not pattern.search("README.md")


FA = "https://github.com/Dao-AILab/flash-attention/releases/download"


def test_flash_attn_wheel_for_another_torch_minor_fails(project, run_cli):
    # Dao-AILab/flash-attention#931: a release wheel built for an older torch under a newer one
    # installs, then fails at import with "undefined symbol: _ZN3c10..."
    (project / "requirements.txt").write_text(
        "torch==2.5.1\n"
        f"flash-attn @ {FA}/v2.6.3/flash_attn-2.6.3+cu123torch2.4cxx11abiFALSE-cp311-cp311-linux_x86_64.whl\n"
    )
    code, out, _ = run_cli("requirements", "requirements.txt", "--json")
    (finding,) = _by_id(out, "requirements.flash_attn_wheel")
    assert code == 1 and finding["node"] == "requirements.txt:2" and finding["status"] == "fail"
    assert "built for torch 2.4, torch is pinned to 2.5.1 (requirements.txt:1)" in finding["observed"]
    assert "torch2.5" in finding["remediation"]


def test_flash_attn_wheel_with_the_other_cxx11_abi_fails(project, run_cli):
    # Dao-AILab/flash-attention#1717: the C++ ABI of the wheel and of torch must agree; torch's
    # pip wheels use the C++11 ABI from 2.7 on (flash-attention's publish.yml)
    (project / "requirements.txt").write_text(
        "torch==2.7.1\n"
        f"flash-attn @ {FA}/v2.8.3/flash_attn-2.8.3+cu12torch2.7cxx11abiFALSE-cp311-cp311-linux_x86_64.whl\n"
    )
    _, out, _ = run_cli("requirements", "requirements.txt", "--json")
    (finding,) = _by_id(out, "requirements.flash_attn_wheel")
    assert "cxx11abiFALSE, torch 2.7.1's pip wheels use cxx11abiTRUE" in finding["observed"]


def test_flash_attn_wheel_for_another_cuda_major_or_python_fails(project, run_cli):
    (project / "requirements.txt").write_text(
        "--extra-index-url https://download.pytorch.org/whl/cu118\ntorch==2.4.0+cu118\n"
        f"flash-attn @ {FA}/v2.6.3/flash_attn-2.6.3+cu123torch2.4cxx11abiFALSE-cp310-cp310-linux_x86_64.whl\n"
    )
    _, out, _ = run_cli("requirements", "requirements.txt", "--json", "--target-python", "3.11")
    (finding,) = _by_id(out, "requirements.flash_attn_wheel")
    assert "built for CUDA 12, torch is the cu118 build" in finding["observed"]
    assert "built for Python 3.10, the target is 3.11" in finding["observed"]


def test_matching_flash_attn_wheel_passes(project, run_cli):
    (project / "requirements.txt").write_text(
        "torch==2.7.1\n"
        f"flash-attn @ {FA}/v2.8.3/flash_attn-2.8.3+cu12torch2.7cxx11abiTRUE-cp311-cp311-linux_x86_64.whl\n"
    )
    _, out, _ = run_cli("requirements", "requirements.txt", "--json", "--target-python", "3.11")
    assert _by_id(out, "requirements.flash_attn_wheel") == []
