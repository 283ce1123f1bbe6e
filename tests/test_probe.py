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
