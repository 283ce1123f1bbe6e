"""The compatibility data in compat_matrix/: every entry parses, carries a source and a date, and a few
sourced facts hold. No network: refresh_matrix.py is tested on a METADATA text."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
MATRIX = ROOT / "compat_matrix"
FILES = ("cuda_driver", "torch", "gpus", "packages")

CC = re.compile(r"^\d{1,2}\.\d$")
DRIVER = re.compile(r"^\d{3}\.\d{2,3}(\.\d{2})?$")
VARIANT = re.compile(r"^cu\d{3}$")
PYTHON = re.compile(r"^3\.\d{1,2}t?$")


def load(name: str) -> dict[str, Any]:
    with (MATRIX / f"{name}.toml").open("rb") as fh:
        return tomllib.load(fh)


@pytest.fixture(scope="module")
def data() -> dict[str, dict[str, Any]]:
    return {name: load(name) for name in FILES}


def entries(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every sourced entry: array-of-table items, their nested arrays, and plain tables (not meta)."""
    found = []
    for key, value in doc.items():
        if key == "meta":
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            found.append((key, item))
            for sub_key, sub in item.items():
                if isinstance(sub, list) and sub and all(isinstance(s, dict) for s in sub) \
                        and all("source" in s for s in sub):
                    found.extend((f"{key}.{sub_key}", s) for s in sub)
    return found


def is_date(value: object) -> bool:
    if isinstance(value, dt.date):
        return True
    try:
        dt.date.fromisoformat(str(value))
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("name", FILES)
def test_meta_and_every_entry_sourced(data, name):
    doc = data[name]
    assert doc["meta"]["title"]
    assert is_date(doc["meta"]["verified"])
    found = entries(doc)
    assert found, name
    for kind, item in found:
        assert isinstance(item.get("source"), str) and len(item["source"]) > 10, (name, kind, item)
        assert is_date(item.get("verified")), (name, kind, item)
        assert dt.date.fromisoformat(str(item["verified"])) <= dt.date.today()
        if "unverified" in item:
            assert item["unverified"] is True, (name, kind, item)


def test_cuda_driver_entries(data):
    doc = data["cuda_driver"]
    for fam in doc["family"]:
        assert isinstance(fam["cuda_major"], int)
        assert DRIVER.match(fam["min_driver"]), fam
    seen = set()
    for row in doc["toolkit"]:
        Version(row["cuda"])
        assert re.fullmatch(r"\d+\.\d+", row["cuda"]), row
        assert re.fullmatch(r"GA|RC|Update \d", row["release"]), row
        assert DRIVER.match(row["min_driver"]), row
        key = (row["cuda"], row["release"])
        assert key not in seen, key
        seen.add(key)
    assert len({f["cuda_major"] for f in doc["family"]}) == len(doc["family"])


def driver(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def test_toolkit_drivers_grow_with_the_toolkit(data):
    def rank(release: str) -> int:
        fixed = {"RC": 0, "GA": 1}
        return fixed[release] if release in fixed else 1 + int(release.split()[-1])

    rows = sorted(data["cuda_driver"]["toolkit"], key=lambda r: (Version(r["cuda"]), rank(r["release"])))
    drivers = [driver(r["min_driver"]) for r in rows]
    assert drivers == sorted(drivers)


def test_cuda_driver_spot_checks(data):
    rows = {(r["cuda"], r["release"]): r["min_driver"] for r in data["cuda_driver"]["toolkit"]}
    assert rows[("12.0", "GA")] == "525.60.13"
    assert rows[("12.4", "GA")] == "550.54.14"
    assert rows[("12.8", "GA")] == "570.26"
    assert rows[("13.0", "GA")] == "580.65.06"
    assert rows[("11.8", "GA")] == "520.61.05"
    families = {f["cuda_major"]: f["min_driver"] for f in data["cuda_driver"]["family"]}
    assert families[12] == "525.60.13"
    assert families[11] == "450.80.02"


def test_torch_entries(data):
    releases = data["torch"]["release"]
    versions = [r["version"] for r in releases]
    assert len(versions) == len(set(versions))
    assert versions[0] == "1.13"
    for rel in releases:
        Version(rel["version"])
        assert rel["variants"] and all(VARIANT.match(v) for v in rel["variants"]), rel
        assert rel["default_variant"] in rel["variants"], rel
        SpecifierSet(rel["python"])
        SpecifierSet(rel["requires_python_metadata"])
        assert all(PYTHON.match(p) and p.endswith("t") for p in rel.get("free_threaded", []))
        if "nccl" in rel:
            Version(rel["nccl"])
        assert re.fullmatch(r"\d{4}-\d{2}", rel["released"]), rel
        arch_variants = [a["variant"] for a in rel["arch"]]
        assert len(arch_variants) == len(set(arch_variants)), rel["version"]
        assert set(arch_variants) <= set(rel["variants"]), rel["version"]
        for arch in rel["arch"]:
            assert arch["sass"] and all(CC.match(c) for c in arch["sass"]), arch
            assert all(CC.match(c) for c in arch["ptx"]), arch
            assert set(arch["ptx"]) <= set(arch["sass"]), arch
            assert [Version(c) for c in arch["sass"]] == sorted(Version(c) for c in arch["sass"])


def test_torch_spot_checks(data):
    rel = {r["version"]: r for r in data["torch"]["release"]}
    assert rel["2.5"]["default_variant"] == "cu124"
    assert rel["2.5"]["variants"] == ["cu118", "cu121", "cu124"]
    assert rel["2.5"]["nccl"] == "2.21.5"
    assert rel["2.8"]["default_variant"] == "cu128" and rel["2.8"]["nccl"] == "2.27.3"
    assert rel["2.11"]["default_variant"] == "cu130"
    assert "cu118" not in rel["2.8"]["variants"]
    assert Version("3.9") not in SpecifierSet(rel["2.9"]["python"])
    assert Version("3.12") in SpecifierSet(rel["2.4"]["python"])
    arch = {(v, a["variant"]): a for v, r in rel.items() for a in r["arch"]}
    assert "9.0" not in arch[("1.13", "cu117")]["sass"]
    assert "9.0" in arch[("2.0", "cu118")]["sass"]
    assert "7.0" not in arch[("2.7", "cu128")]["sass"]  # PR #147607
    assert "7.0" in arch[("2.8", "cu128")]["sass"]
    assert "7.0" not in arch[("2.11", "cu128")]["sass"]
    assert "12.0" in arch[("2.12", "cu130")]["ptx"]


def test_gpu_entries(data):
    names, nvml = set(), set()
    for gpu in data["gpus"]["gpu"]:
        assert gpu["name"] not in names, gpu["name"]
        names.add(gpu["name"])
        assert CC.match(gpu["compute_capability"]), gpu
        for n in gpu["nvml_names"]:
            assert n not in nvml, n
            nvml.add(n)
        if "memory_gib" in gpu:
            assert isinstance(gpu["memory_gib"], int) and 8 <= gpu["memory_gib"] <= 512
    allowed = {"bf16", "tf32", "fp8", "flash-attention-2", "flash-attention-3", "int8", "nf4", "fp4"}
    keys = set()
    for feat in data["gpus"]["feature"]:
        assert feat["name"] in allowed, feat
        assert CC.match(feat["min_cc"]), feat
        for key in ("max_cc",):
            if key in feat:
                assert CC.match(feat[key])
        assert all(CC.match(c) for c in feat.get("only_cc", []))
        if "package_versions" in feat:
            SpecifierSet(feat["package_versions"])
        key = (feat["name"], feat.get("package_versions"))
        assert key not in keys, key
        keys.add(key)


def test_gpu_names_match_the_fixtures(data):
    """The NVML names recorded from real machines in tests/fixtures resolve to the right entry."""
    by_nvml = {n: g for g in data["gpus"]["gpu"] for n in g["nvml_names"]}
    assert by_nvml["NVIDIA H100 80GB HBM3"]["compute_capability"] == "9.0"
    assert by_nvml["NVIDIA H200"]["compute_capability"] == "9.0"
    assert by_nvml["NVIDIA A100-SXM4-40GB"]["compute_capability"] == "8.0"
    assert by_nvml["Tesla V100-SXM2-16GB"]["compute_capability"] == "7.0"
    assert by_nvml["Tesla T4"]["compute_capability"] == "7.5"
    assert by_nvml["NVIDIA GeForce RTX 4090"]["compute_capability"] == "8.9"
    assert by_nvml["NVIDIA RTX PRO 6000 Blackwell Server Edition"]["compute_capability"] == "12.0"
    def devices(node: object):
        if isinstance(node, dict):
            if isinstance(node.get("name"), str) and node.get("compute_capability"):
                yield node
            for value in node.values():
                yield from devices(value)
        elif isinstance(node, list):
            for value in node:
                yield from devices(value)

    checked = 0
    for path in sorted((ROOT / "tests" / "fixtures").glob("*.json")):
        for gpu in devices(json.loads(path.read_text())):
            if gpu["name"] in by_nvml:
                assert by_nvml[gpu["name"]]["compute_capability"] == gpu["compute_capability"], path
                checked += 1
    assert checked >= 8


def test_feature_spot_checks(data):
    feats = {(f["name"], f.get("package_versions")): f for f in data["gpus"]["feature"]}
    assert feats[("bf16", None)]["min_cc"] == "8.0"
    assert feats[("tf32", None)]["min_cc"] == "8.0"
    assert feats[("fp8", None)]["min_cc"] == "8.9"
    assert feats[("flash-attention-2", ">=2,<3")]["min_cc"] == "8.0"
    assert feats[("flash-attention-3", None)]["only_cc"] == ["9.0"]
    assert feats[("int8", None)]["min_cc"] == "7.5"


def test_package_constraints(data):
    doc = data["packages"]
    seen = set()
    for item in doc["constraint"]:
        assert item["package"] in {"transformers", "accelerate", "peft", "trl", "deepspeed",
                                   "bitsandbytes", "flash-attn", "torch", "torchvision", "torchaudio",
                                   "xformers", "vllm"}, item
        SpecifierSet(item["versions"])
        for key in ("requires_torch", "requires_python", "requires_cuda"):
            if key in item:
                SpecifierSet(item[key])
        for spec in item.get("requires", {}).values():
            SpecifierSet(spec)
        if "gpu_min_cc" in item:
            assert CC.match(item["gpu_min_cc"])
        if item.get("generated"):
            assert "METADATA" in item["source"] or "PKG-INFO" in item["source"], item
        key = (item["package"], item["versions"], bool(item.get("runtime_gate")),
               item.get("scope"))
        assert key not in seen, key
        seen.add(key)
    for wheel in doc["flash_attn_wheel"]:
        Version(wheel["flash_attn"])
        for t in wheel["torch"]:
            Version(t)
        assert all(re.fullmatch(r"\d+\.\d+", c) for c in wheel["cuda"])
        assert all(PYTHON.match(p) for p in wheel["python"])
        assert all(isinstance(b, bool) for b in wheel.get("cxx11abi", []))
    assert doc["flash_attn_abi"]["note"]


def test_package_spot_checks(data):
    gates = [c for c in data["packages"]["constraint"]
             if c["package"] == "transformers" and c.get("runtime_gate") and "scope" not in c]
    gate = next(c for c in gates if Version("4.57.6") in SpecifierSet(c["versions"]))
    assert gate["requires_torch"] == ">=2.1"
    wheels = {w["flash_attn"]: w for w in data["packages"]["flash_attn_wheel"]}
    assert wheels["2.6.3"]["cuda"] == ["11.8", "12.3"]

    def pin(package: str, version: str) -> dict:
        [entry] = [c for c in data["packages"]["constraint"]
                   if c["package"] == package and Version(version) in SpecifierSet(c["versions"])]
        return entry

    # PyTorch's published pairings (pytorch/vision README table; xformers release notes)
    assert pin("torchvision", "0.18.0")["requires_torch"] == "==2.3.0"
    assert pin("torchvision", "0.20.1")["requires_torch"] == "==2.5.1"
    assert pin("torchaudio", "2.4.1")["requires_torch"] == "==2.4.1"
    assert pin("xformers", "0.0.28.post3")["requires_torch"] == "==2.5.1"
    assert pin("torch", "2.2.2")["requires"] == {"numpy": "<2"}
    assert not [c for c in data["packages"]["constraint"]
                if c["package"] == "torch" and Version("2.3.0") in SpecifierSet(c["versions"])]
    assert "2.4" in wheels["2.6.3"]["torch"]


# --- scripts/refresh_matrix.py (no network) ---------------------------------------------------


@pytest.fixture(scope="module")
def refresh():
    spec = importlib.util.spec_from_file_location("refresh_matrix", ROOT / "scripts" / "refresh_matrix.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["refresh_matrix"] = module
    spec.loader.exec_module(module)
    return module


METADATA = """\
Metadata-Version: 2.1
Name: transformers
Version: 4.57.6
Requires-Python: >=3.9.0
Requires-Dist: filelock
Requires-Dist: huggingface-hub<1.0,>=0.34.0
Requires-Dist: accelerate>=0.26.0; extra == "torch"
Requires-Dist: torch>=2.2; extra == "torch"
Requires-Dist: torch; extra == "all"
Provides-Extra: torch

The description body.
Requires-Dist: not-a-header
"""


def test_refresh_parses_metadata(refresh):
    meta = refresh.parse_metadata(METADATA)
    assert meta.requires_python == ">=3.9.0"
    assert meta.requires_torch == ">=2.2"
    assert meta.torch_extra == "torch"
    assert dict(meta.requires) == {"huggingface-hub": ">=0.34.0,<1.0"}

    plain = refresh.parse_metadata("Name: peft\nRequires-Dist: torch>=1.13.0\nRequires-Dist: accelerate>=0.21.0\n")
    assert plain.requires_torch == ">=1.13.0" and plain.torch_extra is None
    assert plain.requires_python is None
    assert refresh.parse_metadata("Name: x\nRequires-Dist: numpy\n").requires_torch is None
    assert refresh.parse_metadata("Name: deepspeed\nRequires-Dist: torch\n").requires_torch == ""


def test_refresh_groups_a_line_and_renders_toml(refresh):
    a = refresh.metadata_from(">=3.9", ["torch>=2.1,<2.7; extra == 'torch'"])
    b = refresh.metadata_from(">=3.9", ["torch>=2.1; extra == 'torch'"])
    read = [("4.52.1", a, "x wheel METADATA"), ("4.52.2", a, "x wheel METADATA"),
            ("4.52.3", b, "x wheel METADATA")]
    got = refresh.group_entries("transformers", "4.52", read, "2026-11-28", "transformers==4.52")
    assert [e["versions"] for e in got] == [">=4.52,<4.52.3", ">=4.52.3,<4.53"]
    assert got[0]["requires_torch"] == ">=2.1,<2.7"
    text = refresh.render(got)
    parsed = tomllib.loads(text)
    assert parsed["constraint"][1]["generated"] is True
    assert parsed["constraint"][0]["source"] == "transformers=={4.52.1, 4.52.2} wheel METADATA"

    # a release whose metadata could not be read is covered by no entry, its neighbours' included
    listed = ["0.29.0", "0.29.1", "0.29.2", "0.29.3"]
    read = [("0.29.0", a, "x wheel METADATA"), ("0.29.1", a, "x wheel METADATA"), ("0.29.3", a, "x wheel METADATA")]
    got = refresh.group_entries("torchvision", "0.29", read, "2026-11-28", "torchvision==0.29", listed)
    assert [e["versions"] for e in got] == [">=0.29,<0.29.2", ">=0.29.3,<0.30"]
    got = refresh.group_entries("torchvision", "0.29", read[1:], "2026-11-28", "torchvision==0.29", listed)
    assert [e["versions"] for e in got] == [">=0.29.1,<0.29.2", ">=0.29.3,<0.30"]


def test_refresh_write_keeps_hand_written_entries(refresh, tmp_path):
    path = tmp_path / "packages.toml"
    path.write_text('[meta]\ntitle = "t"\n\n[[constraint]]\npackage = "peft"\nversions = ">=0.1"\n')
    meta = refresh.metadata_from(">=3.10", ["torch>=2.0"])
    first = refresh.entry("accelerate", ">=1.11,<1.12", meta, "accelerate==1.11.0 wheel METADATA",
                          "2026-11-28", "accelerate==1.11")
    refresh.write([first], ["accelerate==1.11"], path)
    second = refresh.entry("peft", ">=0.20,<0.21", meta, "peft==0.20.0 wheel METADATA",
                           "2026-11-28", "peft==0.20")
    refresh.write([second], ["peft==0.20"], path)
    again = dict(first, requires_python=">=3.11")
    refresh.write([again], ["accelerate==1.11"], path)
    doc = tomllib.loads(path.read_text())
    assert doc["constraint"][0] == {"package": "peft", "versions": ">=0.1"}
    generated = {c["generated_from"]: c for c in doc["constraint"][1:]}
    assert set(generated) == {"accelerate==1.11", "peft==0.20"}
    assert generated["accelerate==1.11"]["requires_python"] == ">=3.11"
