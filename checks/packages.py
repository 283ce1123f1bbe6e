"""Python packages of the training environment: torch present and able to use the GPUs.

Version-compatibility rules between packages come from ``compat_matrix/`` (compatibility issue);
these checks need only the facts.
"""

from __future__ import annotations

from preflight.findings import Outcome, fail, passed, skip, warn
from preflight.registry import CheckContext, check

GROUP = "Python packages"


@check("packages.torch_installed", group=GROUP, title="torch installed in the training Python")
def torch_installed(ctx: CheckContext) -> Outcome:
    """The Python that preflight probed is meant to be the job's; without torch the job cannot
    start. (Probe the training environment with ``--python`` once cluster mode lands, or run
    preflight from inside that environment.)"""
    py = ctx.facts.python
    if "torch" in py.packages:
        return passed(f"torch {py.packages['torch']} in {py.executable}")
    return warn(
        f"torch is not installed in {py.executable}",
        "torch installed",
        "run preflight with the job's Python (activate its venv or conda env), or `pip install torch`",
    )


@check("packages.torch_cuda_build", group=GROUP, title="torch is a CUDA build on a GPU node")
def torch_cuda_build(ctx: CheckContext) -> Outcome:
    """A CPU-only torch wheel on a GPU node (``pip install torch`` picked the ``+cpu`` build, or
    another package pulled it in) makes ``torch.cuda.is_available()`` False: the job runs on
    the CPU or dies at ``init_process_group('nccl')``."""
    facts = ctx.facts
    if "torch" not in facts.python.packages:
        return skip("torch is not installed in this Python")
    if not facts.gpu.devices:
        return skip("no GPU visible")
    version = facts.python.packages["torch"]
    if facts.python.torch_cuda:
        return passed(f"torch {version} with CUDA {facts.python.torch_cuda}")
    reason = facts.python.unavailable.get("torch_cuda", "torch has no CUDA version")
    return fail(
        f"torch {version}: {reason}, on a node with {len(facts.gpu.devices)} GPU(s)",
        "a CUDA build of torch",
        "reinstall a CUDA wheel, e.g. `pip install --force-reinstall torch "
        "--index-url https://download.pytorch.org/whl/cu124` (pick the CUDA the driver supports)",
    )
