"""Driver and CUDA: the driver can run the CUDA that torch was built with; visible devices exist.

Version tables (minimum driver per toolkit, wheel variants) are compatibility-matrix data and
come with the compatibility issue; the rule here needs none: NVIDIA's CUDA Compatibility guide
(docs.nvidia.com/deploy/cuda-compatibility, "Minor Version Compatibility") says an application
built with CUDA X.Y runs on a driver that supports X.Z (Z < Y) only through minor-version
compatibility (no PTX JIT of newer code), and never on a driver whose CUDA major is lower.
"""

from __future__ import annotations

from preflight.compat import cuda_tuple
from preflight.findings import Outcome, fail, passed, skip, warn
from preflight.registry import CheckContext, check

GROUP = "Driver and CUDA"


def _major_minor(text: str) -> tuple[int, int] | None:
    """``12.4`` as ``(12, 4)``; None when it is not a CUDA version."""
    try:
        return cuda_tuple(text)
    except ValueError:
        return None


@check("driver.torch_cuda", group=GROUP, title="Driver supports torch's CUDA")
def torch_cuda(ctx: CheckContext) -> Outcome:
    """torch's wheel bundles a CUDA runtime (``torch.version.cuda``); the driver must support it.
    A driver older than that CUDA's major family floor makes ``torch.cuda.is_available()`` False
    ("The NVIDIA driver on your system is too old"); between the family floor and the toolkit's
    own driver it runs through minor-version compatibility (no PTX JIT of newer code): a warning.
    The driver's own report of its CUDA version decides; the matrix gives the exact minimum
    drivers (NVIDIA's release-notes tables) for the fix, and decides when only the driver
    version is known (``preflight compat``)."""
    facts = ctx.facts
    if not facts.gpu.devices:
        return skip("no GPU visible")
    if "torch" not in facts.python.packages:
        return skip("torch is not installed in this Python")
    if facts.python.torch_cuda is None:
        return skip(facts.python.unavailable.get("torch_cuda", "torch is not a CUDA build"))
    runtime = facts.python.torch_cuda
    driver = facts.gpu.driver_version
    verdict = ctx.matrix.driver_verdict(runtime, driver) if driver else None
    native = verdict.toolkit.min_driver if verdict and verdict.toolkit else None
    floor = verdict.floor.min_driver if verdict and verdict.floor else None
    upgrade = f"upgrade the NVIDIA driver to >= {native}" if native else "upgrade the NVIDIA driver"
    observed = f"torch {facts.python.packages['torch']} built for CUDA {runtime}; driver {driver or '?'}" + (
        f" supports CUDA {facts.gpu.cuda_driver_version}" if facts.gpu.cuda_driver_version else ""
    )
    evidence = {"toolkit_driver": native, "family_floor": floor}
    if verdict is not None:
        sources = [s.sourced.cite() for s in (verdict.toolkit, verdict.floor) if s is not None]
        evidence["source"] = "; ".join(sources)
    built = _major_minor(runtime)
    supported = _major_minor(facts.gpu.cuda_driver_version) if facts.gpu.cuda_driver_version else None
    if built is None:
        return skip(f"unparsable CUDA version {runtime!r}")
    if supported is not None:
        status = "native" if built <= supported else ("minor_compat" if built[0] <= supported[0] else "too_old")
        sourced = None
    elif verdict is not None:
        status, sourced = verdict.status, (verdict.toolkit or verdict.floor)
    else:
        return skip(f"neither the driver nor the compatibility data tell whether driver {driver} runs CUDA {runtime}")
    if status == "too_old":
        outcome = warn if sourced is not None and sourced.sourced.unverified else fail
        return outcome(
            observed,
            f"driver >= {floor or native or 'one supporting CUDA ' + runtime} for CUDA {runtime}",
            f"{upgrade}, or install a torch wheel built for the CUDA this driver supports "
            "(`preflight compat --gpu ... --driver ...` lists them)",
            **evidence,
        )
    if status == "minor_compat":
        return warn(
            observed,
            f"driver >= {native}" if native else f"a driver supporting CUDA {runtime}",
            f"runs through CUDA minor-version compatibility only (kernels needing PTX JIT fail); {upgrade}",
            **evidence,
        )
    return passed(observed, f"driver >= {native}" if native else f"driver CUDA >= {runtime}", **evidence)


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
