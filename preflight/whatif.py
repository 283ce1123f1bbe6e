"""`preflight compat`: judge a combination before any machine exists.

The flags become the facts of a hypothetical node (a GPU from the matrix, a driver, a torch
wheel, a Python, packages), and the same version checks that judge real nodes judge it. It also
lists the official torch wheels that would work on a given GPU and driver.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field, fields

from packaging.version import InvalidVersion, Version

from preflight.compat import Matrix, cuda_tuple, driver_tuple
from preflight.errors import InputError
from preflight.facts import (
    SCHEMA_VERSION,
    ContainerHints,
    ExtensionBuild,
    GpuDevice,
    GpuInfo,
    Identity,
    MemoryInfo,
    NetworkEnv,
    NodeFacts,
    ProbeInfo,
    PythonEnv,
    SystemInfo,
)
from preflight.probe.python_env import normalize
from preflight.settings import Selection


@dataclass(frozen=True)
class WhatIf:
    gpu: str | None = None
    gpus: int = 1
    driver: str | None = None
    torch: str | None = None
    python: str | None = None
    nvcc: str | None = None
    packages: dict[str, str] = field(default_factory=dict)


def parse_package(text: str) -> tuple[str, str]:
    """``transformers==4.44.2`` as ``("transformers", "4.44.2")``."""
    name, sep, version = text.partition("==")
    if not sep or not name.strip() or not version.strip():
        raise InputError(f"--pkg {text!r}: expected NAME==VERSION")
    try:
        Version(version.strip())
    except InvalidVersion:
        raise InputError(f"--pkg {text!r}: {version.strip()!r} is not a version") from None
    return normalize(name.strip()), version.strip()


def driver_cuda(matrix: Matrix, driver: str) -> str | None:
    """The newest CUDA whose toolkit driver this driver meets: what nvidia-smi would report."""
    have = driver_tuple(driver)
    ok = [t for t in matrix.toolkits if driver_tuple(t.min_driver) <= have]
    if not ok:
        return None
    newest = max(ok, key=lambda t: cuda_tuple(t.cuda))
    return "{}.{}".format(*cuda_tuple(newest.cuda))


def _torch(matrix: Matrix, text: str) -> tuple[str, str | None]:
    """(version as installed, its CUDA) from ``2.3.1+cu121`` or ``2.3.1`` (the PyPI default wheel)."""
    try:
        version = Version(text)
    except InvalidVersion:
        raise InputError(f"--torch {text!r} is not a version") from None
    label = version.local or ""
    if label.startswith("cu") and label[2:].isdigit():
        return text, "{}.{}".format(*cuda_tuple(label))
    if label == "cpu":
        return text, None
    release = matrix.torch_release(text)
    if release is None or release.default_variant is None:
        raise InputError(f"--torch {text}: no default CUDA variant known; give it, e.g. {text}+cu121")
    return text, "{}.{}".format(*cuda_tuple(release.default_variant))


def _flash_attn_wheel(version: str | None) -> ExtensionBuild | None:
    """What a release wheel's label says (``--pkg flash-attn==2.6.3+cu123torch2.4cxx11abiFALSE``):
    the torch minor and the C++ ABI it was built for, as the probe reads them from an installed wheel."""
    label = re.search(r"torch(\d+\.\d+)cxx11abi(TRUE|FALSE)", version or "", re.I)
    if label is None:
        return None
    return ExtensionBuild(library=None, cxx11_abi=None, wheel_url=f"flash_attn-{version}",
                          wheel_torch=label.group(1), wheel_cxx11_abi=label.group(2).upper() == "TRUE")


def hypothetical_facts(matrix: Matrix, w: WhatIf) -> NodeFacts:
    devices = []
    if w.gpu:
        name, cc = matrix.resolve_gpu(w.gpu)
        blank = {f.name: None for f in fields(GpuDevice) if f.name != "unavailable"}
        devices = [GpuDevice(**{**blank, "index": i, "name": name, "compute_capability": cc}) for i in range(w.gpus)]
    packages = dict(w.packages)
    torch_cuda = None
    unavailable: dict[str, str] = {}
    if w.torch:
        packages["torch"], torch_cuda = _torch(matrix, w.torch)
        if torch_cuda is None:
            unavailable["torch_cuda"] = "torch is a CPU-only build"
    python = w.python or "3.11"
    if not re.match(r"^\d+\.\d+(\.\d+)?$", python):
        raise InputError(f"--python {python!r}: expected a version like 3.11")
    return NodeFacts(
        schema_version=SCHEMA_VERSION,
        probe=ProbeInfo("what-if", "", python, "", 0.0),
        identity=Identity("what-if", None, [], None, None, ContainerHints(False, False, None)),
        system=SystemInfo(None, None, None, None, None, None, MemoryInfo(None, None, None, None, None), None, [], {}, {}),
        gpu=GpuInfo(
            "what-if" if devices else None,
            w.driver,
            driver_cuda(matrix, w.driver) if w.driver else None,
            None,
            devices,
            {} if devices else {"what-if": "no --gpu given"},
        ),
        python=PythonEnv("python", python, "cpython", None, None, packages, torch_cuda, None, unavailable, w.nvcc,
                         torch_cxx11_abi=matrix.torch_cxx11abi(packages["torch"]) if "torch" in packages else None,
                         flash_attn_build=_flash_attn_wheel(packages.get("flash-attn"))),
        network=NetworkEnv([], None, [], {}),
    )


def run_compat(args: argparse.Namespace, sel: Selection) -> int:
    """`preflight compat`: judge the hypothetical node, then list the wheels that would work."""
    from preflight.findings import exit_code
    from preflight.registry import run_checks

    matrix = sel.options.matrix
    assert matrix is not None
    what = WhatIf(
        gpu=args.gpu,
        gpus=max(1, args.gpus),
        driver=args.driver,
        torch=args.torch,
        python=args.python,
        nvcc=args.nvcc,
        packages=dict(parse_package(p) for p in args.pkg),
    )
    facts = hypothetical_facts(matrix, what)
    findings = run_checks(facts, sel.specs, sel.thresholds, sel.options)
    code = exit_code(findings, strict=sel.strict)
    cc = facts.gpu.devices[0].compute_capability if facts.gpu.devices else None
    wheels = matrix.working_wheels(cc, args.driver) if (args.gpu or args.driver) else []
    if args.json:
        import json

        from preflight.report.json_report import report_document

        document = report_document("compat", facts, findings, code)
        document["suggested_wheels"] = [w.__dict__ for w in wheels]
        print(json.dumps(document, indent=2))
        return code
    from preflight.report.console import make_console
    from preflight.report.terminal import render_terminal, wheels_table

    console = make_console()
    render_terminal(console, "compat", facts, findings, code, strict=sel.strict)
    if wheels:
        console.print(wheels_table(wheels[:12], cc, args.driver))
    return code
