"""The probe on this machine: valid facts, fast, standard library only, Python 3.8 compatible."""

from __future__ import annotations

import doctest
import glob
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from preflight.facts import parse_facts
from preflight.facts_schema import SCHEMA_PATH
from preflight.net import address, ifname
from preflight.probe import collect, gpu_nvml, identity, network, python_env, sysfs, system

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", [sysfs, identity, system, python_env, network, gpu_nvml, ifname, address])
def test_parser_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0
    assert result.failed == 0


def test_probe_output_matches_schema_and_loads():
    data = collect()
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    facts = parse_facts(data, "probe")
    assert facts.identity.hostname
    assert facts.system.memory.total_bytes and facts.system.memory.total_bytes > 0
    assert facts.python.executable == sys.executable


def test_probe_records_why_there_is_no_gpu():
    facts = parse_facts(collect(), "probe")
    if facts.gpu.devices:
        pytest.skip("this machine has a GPU")
    assert facts.gpu.source is None
    assert set(facts.gpu.unavailable) == {"pynvml", "nvml-ctypes", "nvidia-smi"}
    assert all(reason for reason in facts.gpu.unavailable.values())


def test_probe_reads_torch_version_py_without_importing_torch():
    code = (
        "import sys, json; from preflight.probe import python_env; "
        "f = python_env.collect(); print(json.dumps([f['packages'].get('torch'), f['torch_git_version'], "
        "'torch' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    version, git_version, imported = json.loads(out.stdout)
    if version is None:
        pytest.skip("torch is not installed in the test environment")
    assert git_version and len(git_version) == 40
    assert imported is False


def test_probe_imports_only_the_standard_library():
    code = (
        "import sys; before = set(sys.modules); import preflight.probe as p; p.collect(); "
        "import json; print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PREFLIGHT_GPU_SOURCE": "nvidia-smi"},
    )
    new = json.loads(out.stdout)
    third_party = [m for m in new if m.split(".")[0] in {"psutil", "rich", "paramiko", "packaging", "pynvml", "torch"}]
    assert third_party == []


def _python38() -> str | None:
    """A working Python 3.8 interpreter (pyenv's shim alone fails unless 3.8 is selected)."""
    candidates = sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.8*/bin/python3.8")))
    candidates += [p for p in (shutil.which("python3.8"), "/usr/bin/python3.8") if p]
    for candidate in candidates:
        try:
            ok = subprocess.run([candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 8)"],
                                capture_output=True, timeout=30).returncode == 0
        except OSError:
            continue
        if ok:
            return candidate
    return None


PYTHON38 = _python38()


@pytest.mark.skipif(PYTHON38 is None, reason="no Python 3.8 interpreter here")
def test_probe_runs_on_python_3_8():
    out = subprocess.run(
        [PYTHON38, "-m", "preflight.probe"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["probe"]["python_version"].startswith("3.8")
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))


def test_forced_gpu_source_is_the_only_one_tried(monkeypatch):
    from preflight.probe import gpu

    monkeypatch.setenv("PREFLIGHT_GPU_SOURCE", "nvidia-smi")
    monkeypatch.setenv("PATH", "/nonexistent")
    facts = gpu.collect()
    assert list(facts["unavailable"]) == ["nvidia-smi"]
    assert facts["devices"] == []


def test_secrets_never_reach_the_facts(monkeypatch):
    monkeypatch.setenv("NCCL_IB_SECRET_KEY", "hunter2")
    monkeypatch.setenv("MASTER_PASSWORD", "hunter2")
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "eth0")
    text = json.dumps(collect())
    assert "hunter2" not in text
    assert '"NCCL_SOCKET_IFNAME": "eth0"' in text


# --- how flash-attn was built: ELF symbols and the wheel's file name -------------------------


def _elf_with_symbols(path, names):  # noqa: ANN001, ANN202
    """A minimal 64-bit little-endian ELF shared object: a header, a .dynstr holding ``names``
    and a section table of [null, .dynsym (linked to .dynstr), .dynstr], as a linker lays out
    the parts the probe reads."""
    import struct

    dynstr = b"\0" + b"".join(n.encode() + b"\0" for n in names)
    dynstr_off = 64
    shoff = (dynstr_off + len(dynstr) + 7) // 8 * 8
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<HHIQQQIHHHHHH", header, 16, 3, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 0)

    def section(kind, offset, size, link):  # noqa: ANN001, ANN202
        return struct.pack("<IIQQQQIIQQ", 0, kind, 0, 0, offset, size, link, 0, 1, 0)

    table = section(0, 0, 0, 0) + section(11, 0, 0, 2) + section(3, dynstr_off, len(dynstr), 0)
    path.write_bytes(bytes(header) + dynstr + b"\0" * (shoff - 64 - len(dynstr)) + table)
    return path


CXX11_SYMBOL = "_ZN3c105ErrorC2ENS_14SourceLocationENSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE"
OLD_ABI_SYMBOL = "_ZN3c105ErrorC2ENS_14SourceLocationESs"  # ByteDance-Seed/SeedVR#13's undefined symbol


def test_elf_dynamic_strings_and_the_cxx_abi(tmp_path):
    from preflight.probe.python_env import cxx11_abi, elf_dynamic_strings

    new = elf_dynamic_strings(_elf_with_symbols(tmp_path / "new.so", ["memcpy", CXX11_SYMBOL]))
    assert new is not None and CXX11_SYMBOL.encode() in new and cxx11_abi(new) is True
    old = elf_dynamic_strings(_elf_with_symbols(tmp_path / "old.so", [OLD_ABI_SYMBOL]))
    assert cxx11_abi(old) is False
    assert cxx11_abi(elf_dynamic_strings(_elf_with_symbols(tmp_path / "none.so", ["_ZN3c104cuda9SetDeviceEi"]))) is None
    (tmp_path / "text.so").write_text("not an ELF file")
    assert elf_dynamic_strings(tmp_path / "text.so") is None
    (tmp_path / "short.so").write_bytes(b"\x7fELF\x02\x01")
    assert elf_dynamic_strings(tmp_path / "short.so") is None
    assert elf_dynamic_strings(tmp_path / "missing.so") is None


def test_elf_dynamic_strings_of_a_real_library():
    """libstdc++ is built with both ABIs and exports std::__cxx11 names: readelf -S agrees."""
    from preflight.probe.python_env import elf_dynamic_strings

    found = sorted(glob.glob("/usr/lib/x86_64-linux-gnu/libstdc++.so.6*") + glob.glob("/usr/lib64/libstdc++.so.6*"))
    if not found:
        pytest.skip("no libstdc++ here")
    dynstr = elf_dynamic_strings(found[0])
    assert dynstr is not None and dynstr.startswith(b"\0") and b"__cxx11" in dynstr and b"_ZNSs" in dynstr


def test_flash_attn_build_from_installed_files(tmp_path):
    from preflight.probe.python_env import flash_attn_build, torch_cxx11_abi

    site = tmp_path / "site-packages"
    dist = site / "flash_attn-2.6.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Name: flash_attn\nVersion: 2.6.3\n")
    _elf_with_symbols(site / "flash_attn_2_cuda.cpython-310-x86_64-linux-gnu.so", [CXX11_SYMBOL])
    url = ("https://github.com/Dao-AILab/flash-attention/releases/download/v2.6.3/"
           "flash_attn-2.6.3%2Bcu123torch2.4cxx11abiFALSE-cp310-cp310-linux_x86_64.whl")
    (dist / "direct_url.json").write_text(json.dumps({"url": url, "archive_info": {}}))
    (site / "torch" / "lib").mkdir(parents=True)
    _elf_with_symbols(site / "torch" / "lib" / "libc10.so", [OLD_ABI_SYMBOL])

    build = flash_attn_build([str(tmp_path / "nowhere"), str(site)])
    assert build == {
        "library": str(site / "flash_attn_2_cuda.cpython-310-x86_64-linux-gnu.so"),
        "cxx11_abi": True,
        "wheel_url": url,
        "wheel_torch": "2.4",
        "wheel_cxx11_abi": False,
    }
    assert torch_cxx11_abi(str(site)) is False
    (dist / "direct_url.json").write_text("{not json")
    assert flash_attn_build([str(site)])["wheel_url"] is None
    assert flash_attn_build([str(tmp_path)]) is None


def test_flash_attn_build_facts_round_trip():
    """The probe's new fields load into NodeFacts."""
    from conftest import fixture_facts

    facts = fixture_facts("a100_sxm_8x", lambda d: d["python"].update(
        torch_cxx11_abi=True,
        flash_attn_build={"library": "/x/flash_attn_2_cuda.so", "cxx11_abi": True, "wheel_url": None,
                          "wheel_torch": None, "wheel_cxx11_abi": None}))
    assert facts.python.flash_attn_build is not None and facts.python.flash_attn_build.cxx11_abi is True
