"""Version compatibility on a node, judged with the compatibility matrix (``compat_matrix/``):
torch's compiled GPU architectures, the installed libraries' own constraints, flash-attn against
the GPU and torch, and the toolkit that would build extensions. Each finding names both sides,
the matrix entry's source, and the smallest fix."""

from __future__ import annotations

from packaging.version import InvalidVersion, Version

from preflight.compat import Matrix, TorchRelease, _contains, cc_tuple, cuda_tuple
from preflight.facts import NodeFacts
from preflight.findings import Outcome, Status, fail, passed, skip, warn
from preflight.registry import CheckContext, check

GROUP = "Python packages"


def torch_variant(facts: NodeFacts, release: TorchRelease | None) -> str | None:
    """The wheel variant of the installed torch: its local label (``+cu124``), else the variant
    its CUDA version names, when the release ships one."""
    version = facts.python.packages.get("torch")
    if version is None:
        return None
    _, _, label = version.partition("+")
    if label.startswith("cu") and label[2:].isdigit():
        return label
    if label and label != "cpu":
        return None  # a source or vendor build (NGC "+nv24.05", "+git…"): not an official wheel
    cuda = facts.python.torch_cuda
    if cuda is None:
        return None
    major, minor = cuda_tuple(cuda)
    variant = f"cu{major}{minor}"
    return variant if release is None or variant in release.variants else None


def _capped(status: Status, *sourced) -> Status:  # noqa: ANN002 - Sourced entries
    """A rule built on an unverified fact may warn, never fail."""
    return min([status, *[s.max_status for s in sourced]])


def _outcome(status: Status, observed: str, expected: str, remediation: str, **evidence) -> Outcome:  # noqa: ANN003
    return Outcome(status, observed, expected, remediation, evidence)


def _suggest(matrix: Matrix, cc: str, driver: str | None, at_least: str | None = None) -> str:
    """The best few official wheels for this GPU that also run on this driver."""
    options = [w for w in matrix.working_wheels(cc, driver) if w.code == "sass"]
    if at_least:
        options = [w for w in options if Version(w.torch) >= Version(at_least)]
    return "; ".join(f"torch {w.torch} {w.variant}" for w in options[:3])


@check("versions.torch_gpu_arch", group=GROUP, title="torch has kernels for these GPUs")
def torch_gpu_arch(ctx: CheckContext) -> Outcome:
    """Official torch wheels carry machine code (SASS) for a list of GPU architectures, and PTX
    for the newest; a GPU outside the list fails at the first kernel with "no kernel image is
    available for execution on the device" (RTX 50xx on cu124 wheels, V100 on cu130 wheels).
    PTX alone works after a JIT compile at first use (minutes, some kernels missing): a warning."""
    facts = ctx.facts
    if not facts.gpu.devices:
        return skip("no GPU visible")
    version = facts.python.packages.get("torch")
    if version is None:
        return skip("torch is not installed in this Python")
    release = ctx.matrix.torch_release(version)
    if release is None:
        return skip(f"torch {version} is not in the compatibility data ({ctx.matrix.origin})")
    variant = torch_variant(facts, release)
    if variant is None:
        return skip(f"torch {version} is not an official CUDA wheel (its compiled architectures are unknown)")
    ccs = sorted({d.compute_capability for d in facts.gpu.devices if d.compute_capability}, key=cc_tuple)
    if not ccs:
        return skip("the GPUs did not report their compute capability")
    results = {cc: ctx.matrix.arch_support(release, variant, cc) for cc in ccs}
    if any(kind == "unknown" for kind, _ in results.values()):
        return skip(f"no architecture list for torch {release.version} {variant} in the compatibility data")
    names = {d.compute_capability: d.name for d in facts.gpu.devices}
    archs = results[ccs[0]][1]
    assert archs is not None
    compiled = ", ".join(f"sm_{a.replace('.', '')}" for a in archs.sass) + (
        f" + PTX {', '.join(archs.ptx)}" if archs.ptx else ""
    )
    missing = [cc for cc, (kind, _) in results.items() if kind == "none"]
    jit = [cc for cc, (kind, _) in results.items() if kind == "ptx"]
    evidence = {"torch": version, "variant": variant, "compiled": compiled, "source": archs.sourced.cite()}
    if missing:
        cc = missing[0]
        options = _suggest(ctx.matrix, cc, facts.gpu.driver_version)
        fix = (f"install a wheel built for sm_{cc.replace('.', '')} that runs on this driver: {options} "
               "(`pip install 'torch==X.Y.*' --index-url https://download.pytorch.org/whl/cuXYZ`)") if options else (
            "no official wheel in the compatibility data has kernels for this GPU and runs on this driver: "
            "upgrade the driver, then see `preflight compat --gpu ... --driver ...`")
        return _outcome(
            _capped(Status.FAIL, archs.sourced),
            f"{names[cc]} (compute capability {cc}) is not in torch {version}'s compiled list ({compiled})",
            f"SASS or PTX for compute capability {cc}",
            fix,
            **evidence,
        )
    if jit:
        return warn(
            f"{', '.join(names[c] or c for c in jit)} (compute capability {', '.join(jit)}) runs torch {version} "
            "only through PTX JIT compilation",
            f"SASS for compute capability {', '.join(jit)}",
            "expect a long first start and missing fused kernels; install a wheel with native code: "
            + (_suggest(ctx.matrix, jit[0], facts.gpu.driver_version, release.version) or "none runs on this driver"),
            **evidence,
        )
    return passed(f"torch {version} has native kernels for compute capability {', '.join(ccs)}", **evidence)


def _satisfies(specifier: str | None, version: str | None) -> bool | None:
    if not specifier or version is None:
        return None
    return _contains(specifier, version)


@check("versions.package_constraints", group=GROUP, title="Libraries accept this torch and Python")
def package_constraints(ctx: CheckContext) -> Outcome:
    """Each installed library release line has constraints on torch, Python and companion packages
    (torchvision's exact torch, vllm's numpy), from the package's own metadata (``Requires-Dist``,
    ``Requires-Python``), its runtime gate or its build:
    transformers, for one, silently disables torch below its minimum ("Disabling PyTorch because
    PyTorch >= X is required") and later fails with unrelated import errors. A constraint that
    bites only in one code path (transformers' torch.load guard) warns."""
    py = ctx.facts.python
    torch = py.packages.get("torch")
    checked = sorted(f"{p} {v}" for p, v in py.packages.items() if ctx.matrix.constraints_for(p, v))
    if not checked:
        return skip("no installed library has an entry in the compatibility data")
    problems = [
        problem
        for package, version in sorted(py.packages.items())
        for problem in ctx.matrix.constraint_problems(package, version, torch=torch, python=py.version,
                                                      others=py.packages)
    ]
    missing_torch = [c for c in checked if torch is None and any(
        x.requires_torch for x in ctx.matrix.constraints_for(*c.split(" ", 1)))]
    if problems:
        return _outcome(
            max(p.status for p in problems),
            "; ".join(f"{p.describe()} [{'; '.join(p.sources)}]" for p in problems),
            "every library's torch and Python constraints met",
            "install versions that agree: upgrade torch, or pin the library to a release line that supports "
            "this torch (`preflight compat --torch X --pkg name==Y` tries a combination)",
            checked=checked,
        )
    if missing_torch:
        return warn(f"{', '.join(missing_torch)} need torch, which is not installed", "torch installed",
                    "install torch in this environment", checked=checked)
    return passed(f"{len(checked)} library release(s) accept torch {torch} and Python {py.version}", checked=checked)


# What ties a flash-attn build to one torch: setup.py builds the extension with the C++ ABI of
# the torch installed then (torch._C._GLIBCXX_USE_CXX11_ABI) and picks a release wheel by torch
# major.minor and that ABI; the release workflow builds one wheel per torch minor and ABI.
FLASH_ATTN_BUILD_SOURCE = (
    "Dao-AILab/flash-attention: setup.py (get_wheel_url; -D_GLIBCXX_USE_CXX11_ABI as torch's) and "
    ".github/workflows/_build.yml (a wheel per torch minor and ABI, renamed +cu..torch<minor>cxx11abi<TRUE|FALSE>); "
    "the import error: Dao-AILab/flash-attention#1717"
)
REBUILD_FLASH_ATTN = "`pip install flash-attn --no-build-isolation --force-reinstall --no-deps` (builds against this torch)"


def _torch_minor(torch: str) -> str:
    try:
        return ".".join(str(p) for p in Version(torch).release[:2])
    except InvalidVersion:
        return torch


def _abi(flag: bool) -> str:
    return "C++11 (cxx11abiTRUE)" if flag else "pre-C++11 (cxx11abiFALSE)"


def _flash_attn_build_mismatch(facts: NodeFacts, version: str, torch: str | None, minor: str | None) -> Outcome | None:
    """flash-attn built for another torch, as far as its installed files tell: a C++ ABI other
    than torch's (from the c10 symbols its library imports, else its wheel's file name), or a
    release wheel made for another torch minor."""
    build = facts.python.flash_attn_build
    if build is None or not torch:
        return None
    wheel_name = (build.wheel_url or "").rsplit("/", 1)[-1]
    torch_abi = facts.python.torch_cxx11_abi
    built_abi = build.cxx11_abi if build.cxx11_abi is not None else build.wheel_cxx11_abi
    if torch_abi is not None and built_abi is not None and built_abi != torch_abi:
        how = (f"the c10 symbols {build.library} imports" if build.cxx11_abi is not None
               else f"its wheel {wheel_name}")
        return _outcome(
            Status.FAIL,
            f"flash-attn {version} was built with the {_abi(built_abi)} C++ ABI ({how}), torch {torch} uses the "
            f"{_abi(torch_abi)} one: `import flash_attn` fails with \"undefined symbol: _ZN3c10...\"",
            f"flash-attn built with torch's C++ ABI ({_abi(torch_abi)})",
            f"install the flash-attn wheel for torch {minor} with cxx11abi{str(torch_abi).upper()}, or rebuild: "
            + REBUILD_FLASH_ATTN,
            source=FLASH_ATTN_BUILD_SOURCE, library=build.library, wheel=build.wheel_url,
        )
    if build.wheel_torch and minor and build.wheel_torch != minor:
        return _outcome(
            Status.FAIL,
            f"flash-attn {version} is the release wheel for torch {build.wheel_torch} ({wheel_name}), "
            f"torch {torch} is installed: its extension links against another torch's C++ symbols",
            f"the flash-attn wheel for torch {minor}",
            f"install the flash-attn wheel built for torch {minor} (…torch{minor}cxx11abi…), or rebuild: "
            + REBUILD_FLASH_ATTN,
            source=FLASH_ATTN_BUILD_SOURCE, wheel=build.wheel_url,
        )
    return None


@check("versions.flash_attn", group=GROUP, title="flash-attn fits the GPU and torch")
def flash_attn(ctx: CheckContext) -> Outcome:
    """FlashAttention 2 needs compute capability 8.0 or newer ("FlashAttention only supports
    Ampere GPUs or newer"); a build is tied to the torch it was compiled against, its minor
    version and C++ ABI (``undefined symbol: _ZN3c10...`` at import otherwise), which the probe
    reads from the extension's symbols and, for a wheel installed from a URL, its file name; its
    prebuilt wheels exist for listed torch minor versions."""
    facts = ctx.facts
    version = facts.python.packages.get("flash-attn")
    if version is None:
        return skip("flash-attn is not installed")
    feature = ctx.matrix.feature("flash-attention-2")
    ccs = {d.compute_capability for d in facts.gpu.devices if d.compute_capability}
    if feature is not None and ccs:
        old = sorted(cc for cc in ccs if not feature.supported(cc))
        if old:
            names = sorted({d.name or "?" for d in facts.gpu.devices if d.compute_capability in old})
            return _outcome(
                _capped(Status.FAIL, feature.sourced),
                f"flash-attn {version} on {', '.join(names)} (compute capability {', '.join(old)})",
                f"compute capability {feature.min_cc} or newer",
                "use attn_implementation=\"sdpa\" (PyTorch's built-in attention) on these GPUs and uninstall flash-attn",
                source=feature.sourced.cite(),
            )
    torch = facts.python.packages.get("torch")
    minor = _torch_minor(torch) if torch else None
    built = _flash_attn_build_mismatch(facts, version, torch, minor)
    if built is not None:
        return built
    wheel = ctx.matrix.flash_attn_wheel(version)
    build = facts.python.flash_attn_build
    from_wheel_for_this_torch = build is not None and build.wheel_torch is not None and build.wheel_torch == minor
    if torch and wheel is not None and not from_wheel_for_this_torch:
        if minor not in wheel.torch:
            return warn(
                f"flash-attn {version} has no prebuilt wheel for torch {minor} (wheels: torch {', '.join(wheel.torch)}): "
                "this one was built from source against whichever torch was installed then",
                f"torch {' or '.join(wheel.torch)}, or a rebuild after every torch change",
                "rebuild it against this torch: `pip install flash-attn --no-build-isolation --force-reinstall --no-deps`",
                source=wheel.sourced.cite(),
            )
    abi = ""
    if build is not None and facts.python.torch_cxx11_abi is not None and build.cxx11_abi is not None:
        abi = f", both built with the {_abi(build.cxx11_abi)} C++ ABI"
    return passed(f"flash-attn {version} with torch {torch} on compute capability {', '.join(sorted(ccs)) or '?'}{abi}")


@check("versions.nvcc_torch_cuda", group=GROUP, title="nvcc matches torch's CUDA for extension builds")
def nvcc_torch_cuda(ctx: CheckContext) -> Outcome:
    """DeepSpeed compiles its ops at first use and flash-attn, apex and others build from source
    with the toolkit found through CUDA_HOME or PATH; torch.utils.cpp_extension refuses a toolkit
    whose major version differs from torch's CUDA ("The detected CUDA version mismatches the
    version that was used to compile PyTorch") and warns on a minor difference."""
    py = ctx.facts.python
    if py.nvcc_version is None:
        return skip(py.unavailable.get("nvcc_version", "no nvcc found"))
    if py.torch_cuda is None:
        return skip("torch is not a CUDA build (or not installed)")
    nvcc, torch = cuda_tuple(py.nvcc_version), cuda_tuple(py.torch_cuda)
    observed = f"nvcc {py.nvcc_version}, torch built with CUDA {py.torch_cuda}"
    fix = (f"point CUDA_HOME at a CUDA {py.torch_cuda} toolkit, or install the torch wheel for "
           f"CUDA {py.nvcc_version} (--index-url https://download.pytorch.org/whl/cu{nvcc[0]}{nvcc[1]})")
    builds = [p for p in ("deepspeed", "flash-attn", "apex", "xformers") if p in py.packages]
    if nvcc[0] != torch[0]:
        if builds:
            return fail(observed, f"nvcc {torch[0]}.x", fix + f" ({', '.join(builds)} build extensions)")
        return warn(observed, f"nvcc {torch[0]}.x", fix + " (only matters when building CUDA extensions)")
    if nvcc != torch:
        return warn(observed, f"nvcc {py.torch_cuda}", "minor mismatch: builds usually work; " + fix)
    return passed(observed)


@check("versions.python_torch", group=GROUP, title="torch has wheels for this Python")
def python_torch(ctx: CheckContext) -> Outcome:
    """Official torch wheels exist for a range of CPython versions per release (3.13 from 2.5,
    3.9 dropped in 2.9): outside it pip falls back to an older torch or to a source build."""
    version = ctx.facts.python.packages.get("torch")
    if version is None:
        return skip("torch is not installed in this Python")
    release = ctx.matrix.torch_release(version)
    if release is None or not release.python:
        return skip(f"no Python range for torch {version} in the compatibility data")
    py = ctx.facts.python.version
    if _satisfies(release.python, py):
        return passed(f"Python {py} is within torch {release.version}'s wheels ({release.python})")
    return _outcome(
        _capped(Status.FAIL, release.sourced),
        f"Python {py}; torch {release.version} wheels cover Python {release.python}",
        f"Python {release.python}",
        f"use a Python in {release.python}, or a torch release with wheels for Python {py}",
        source=release.sourced.cite(),
    )


@check("versions.features_used", group=GROUP, title="The GPUs support the features the job uses")
def features_used(ctx: CheckContext) -> Outcome:
    """``--use bf16,tf32,fp8,flash-attention-2,...`` names what the job will use; bf16 on a V100
    or T4 is emulated or refused ("Bfloat16 is only supported on GPUs with compute capability of
    at least 8.0"), FP8 needs Ada or Hopper (cc 8.9+), FlashAttention 3 needs Hopper."""
    if not ctx.options.use:
        return skip("no --use given")
    ccs = sorted({d.compute_capability for d in ctx.facts.gpu.devices if d.compute_capability}, key=cc_tuple)
    if not ccs:
        return skip("no GPU with a known compute capability")
    unknown = [u for u in ctx.options.use if ctx.matrix.feature(u) is None]
    missing, worst = [], Status.PASS
    for name in ctx.options.use:
        feature = ctx.matrix.feature(name)
        if feature is None:
            continue
        lacking = [cc for cc in ccs if not feature.supported(cc)]
        if lacking:
            need = f"cc {feature.min_cc}+" if feature.min_cc else f"cc {', '.join(feature.only_cc)}"
            missing.append(f"{name} needs {need}, GPU has {', '.join(lacking)} [{feature.sourced.cite()}]")
            worst = max(worst, _capped(Status.FAIL, feature.sourced))
    known = ", ".join(f.name for f in ctx.matrix.features)
    if missing:
        return _outcome(
            worst,
            "; ".join(missing),
            "every feature used supported by every GPU",
            "drop the feature on this hardware (fp16 instead of bf16, sdpa instead of flash-attention) or use newer GPUs",
            unknown=unknown,
        )
    if unknown:
        return warn(f"unknown feature(s): {', '.join(unknown)}", f"one of: {known}", "fix the --use list")
    return passed(f"{', '.join(ctx.options.use)} supported on compute capability {', '.join(ccs)}")
