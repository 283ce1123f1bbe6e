"""The built wheel: checks/ and compat_matrix/ inside the preflight namespace, the schema shipped,
and no dependency that could change the user's torch, CUDA libraries or transformers."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_runtime_dependencies_never_touch_the_training_stack():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in deps}
    forbidden = {"torch", "transformers", "accelerate", "deepspeed", "flash-attn", "triton", "numpy"}
    assert names.isdisjoint(forbidden)
    assert all(not n.startswith("nvidia-") or n == "nvidia-ml-py" for n in names)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("*.whl")
    return zipfile.ZipFile(path)


def test_wheel_maps_checks_and_matrix_into_the_namespace(wheel):
    names = set(wheel.namelist())
    assert "preflight/checks/gpu.py" in names
    assert "preflight/compat_matrix/__init__.py" in names
    assert "preflight/facts.schema.json" in names
    assert "preflight/probe/nvml_ctypes.py" in names
    assert not any(n.startswith(("checks/", "compat_matrix/", "tests/")) for n in names)


def test_wheel_has_the_console_script(wheel):
    entry_points = next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))
    assert "preflight = preflight.cli:entry" in wheel.read(entry_points).decode()


def test_wheel_carries_every_subpackage(wheel):
    """A subpackage missing from pyproject's explicit list works in an editable install and is
    absent from the wheel users get."""
    names = set(wheel.namelist())
    for init in sorted((ROOT / "preflight").glob("*/__init__.py")):
        assert f"preflight/{init.parent.name}/__init__.py" in names, f"{init.parent.name} not packaged"
