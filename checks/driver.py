"""Driver and CUDA: the driver can run the CUDA that torch was built with; visible devices exist.

Version tables (minimum driver per toolkit, wheel variants) are compatibility-matrix data and
come with the compatibility issue; the rule here needs none: NVIDIA's CUDA Compatibility guide
(docs.nvidia.com/deploy/cuda-compatibility, "Minor Version Compatibility") says an application
built with CUDA X.Y runs on a driver that supports X.Z (Z < Y) only through minor-version
compatibility (no PTX JIT of newer code), and never on a driver whose CUDA major is lower.
"""

from __future__ import annotations

from preflight.findings import Outcome, fail, passed, skip, warn
from preflight.registry import CheckContext, check

GROUP = "Driver and CUDA"


def _major_minor(text: str) -> tuple[int, int] | None:
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


@check("driver.torch_cuda", group=GROUP, title="Driver supports torch's CUDA")
def torch_cuda(ctx: CheckContext) -> Outcome:
    """torch's wheel bundles a CUDA runtime (``torch.version.cuda``); the driver must support it.
    A driver older than that CUDA's major version makes ``torch.cuda.is_available()`` False
    ("The NVIDIA driver on your system is too old")."""
    facts = ctx.facts
    if not facts.gpu.devices:
        return skip("no GPU visible")
    if "torch" not in facts.python.packages:
        return skip("torch is not installed in this Python")
    if facts.python.torch_cuda is None:
        return skip(facts.python.unavailable.get("torch_cuda", "torch is not a CUDA build"))
    driver_cuda = facts.gpu.cuda_driver_version
    if driver_cuda is None:
        return skip("the driver did not report its CUDA version")
    built, supported = _major_minor(facts.python.torch_cuda), _major_minor(driver_cuda)
    if built is None or supported is None:
        return skip(f"unparsable CUDA versions {facts.python.torch_cuda!r} / {driver_cuda!r}")
    observed = (
        f"torch {facts.python.packages['torch']} built for CUDA {facts.python.torch_cuda}; "
        f"driver {facts.gpu.driver_version} supports CUDA {driver_cuda}"
    )
    if built[0] > supported[0]:
        return fail(
            observed,
            f"a driver supporting CUDA {facts.python.torch_cuda} or newer",
            f"upgrade the NVIDIA driver, or install a torch wheel built for CUDA {supported[0]}.x "
            "(pytorch.org/get-started/previous-versions lists the wheels per CUDA)",
        )
    if built > supported:
        return warn(
            observed,
            f"a driver supporting CUDA {facts.python.torch_cuda} or newer",
            "runs through CUDA minor-version compatibility only (kernels needing PTX JIT fail); "
            "upgrade the driver to match",
        )
    return passed(observed, f"driver CUDA >= {facts.python.torch_cuda}")


def _visible_tokens(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


@check("driver.cuda_visible_devices", group=GROUP, title="CUDA_VISIBLE_DEVICES names real GPUs")
def cuda_visible_devices(ctx: CheckContext) -> Outcome:
    """``CUDA_VISIBLE_DEVICES`` that is empty, or names an index or UUID the node does not have,
    hides GPUs from torch (CUDA stops at the first invalid entry), so ranks land on too few GPUs
    or none."""
    value = ctx.facts.network.env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return skip("CUDA_VISIBLE_DEVICES is not set")
    devices = ctx.facts.gpu.devices
    if not devices:
        return skip("no GPU visible")
    tokens = _visible_tokens(value)
    if not tokens:
        return fail(
            "CUDA_VISIBLE_DEVICES is set but empty: torch sees no GPU",
            "unset, or a list of GPU indices or UUIDs",
            "`unset CUDA_VISIBLE_DEVICES`",
        )
    indices = {str(d.index) for d in devices}
    uuids = {d.uuid for d in devices if d.uuid}
    invalid = [
        t for t in tokens
        if t not in indices and not any(u.startswith(t) for u in uuids if t.startswith(("GPU-", "MIG-")))
    ]
    if invalid:
        return fail(
            f"CUDA_VISIBLE_DEVICES={value} names {', '.join(invalid)}, which this node does not have",
            f"entries among {', '.join(sorted(indices, key=int))} or the GPU UUIDs",
            "fix CUDA_VISIBLE_DEVICES (CUDA ignores every entry after the first invalid one)",
        )
    return passed(f"CUDA_VISIBLE_DEVICES={value}", "existing GPUs")
