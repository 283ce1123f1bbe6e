"""Rules for requirements files, judged offline against the compatibility matrix.

Each finding is located at ``file:line``: contradicting pins, pins that contradict the matrix
(transformers X needs torch >= Y), unpinned critical packages, a torch CUDA variant that cannot
run on the declared target, markers that exclude the target Python, and lines that cannot be
checked at all. Never imports torch, never touches the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet

from preflight.compat import Matrix, _contains, cuda_tuple
from preflight.errors import InputError
from preflight.findings import Finding, Outcome, Status, fail, passed, skip, warn
from preflight.requirements.parse import ParsedRequirements, Requirement
from preflight.rule_registry import Located, Rules

GROUP = "Requirements"
CRITICAL = ("torch", "transformers", "accelerate", "deepspeed", "peft", "flash-attn", "bitsandbytes")


@dataclass(frozen=True)
class Target:
    """The machine the requirements must run on (``--target-*`` or ``[tool.preflight.target]``)."""

    driver: str | None = None
    gpu: str | None = None
    python: str | None = None


Rule = Callable[[ParsedRequirements, Matrix, Target], Iterator[Located]]
RULES = Rules()  # rule id -> (title, Rule)
rule = RULES.rule


def _at(req: Requirement) -> str:
    return f"{req.source}:{req.line}"


def _pinned_version(req: Requirement) -> str | None:
    """The exact version of an ``==`` pin (``torch==2.1.0+cu121`` -> ``2.1.0+cu121``)."""
    if req.kind != "pinned":
        return None
    spec = next(iter(SpecifierSet(req.specifier)), None)
    return spec.version if spec is not None and "*" not in spec.version else None


def _active(reqs: list[Requirement], target: Target) -> list[Requirement]:
    """Requirements whose markers hold for the target Python (all of them without a target)."""
    if not target.python:
        return reqs
    from packaging.markers import Marker  # only with a target and markers to evaluate

    out = []
    for r in reqs:
        try:
            keep = r.marker is None or Marker(r.marker).evaluate({"python_version": _py(target.python), "extra": ""})
        except Exception:  # noqa: BLE001 - markers naming variables we cannot know: keep the line
            keep = True
        if keep:
            out.append(r)
    return out


def _py(version: str) -> str:
    return ".".join(version.split(".")[:2])


@rule("requirements.conflicting_pins", "A package pinned twice, differently")
def conflicting_pins(parsed: ParsedRequirements, matrix: Matrix, target: Target) -> Iterator[Located]:
    """The same package with two different pins (in one file, an included file, or a constraints
    file): pip refuses to install ("Cannot install ... because these package versions have
    conflicting dependencies"), or one silently wins."""
    seen: dict[str, Requirement] = {}
    for req in [*parsed.requirements, *parsed.constraints]:
        if not req.name or not req.specifier:
            continue
        first = seen.setdefault(req.name, req)
        if first is req or first.specifier == req.specifier:
            continue
        a, b = _pinned_version(first), _pinned_version(req)
        clash = (a and b and a != b) or (a and not _contains(req.specifier, a)) or (b and not _contains(first.specifier, b))
        if clash:
            yield Located(_at(req), fail(
                f"{req.name}{req.specifier} contradicts {first.name}{first.specifier} at {_at(first)}",
                "one requirement per package, or compatible ones",
                f"keep one pin for {req.name}",
            ))


@rule("requirements.unpinned", "Critical packages pinned")
def unpinned(parsed: ParsedRequirements, matrix: Matrix, target: Target) -> Iterator[Located]:
    """torch, transformers, accelerate, deepspeed, peft, flash-attn and bitsandbytes change
    behaviour between releases: a fine-tuning run is only reproducible with exact pins."""
    for req in parsed.requirements:
        if req.name in CRITICAL and req.kind in ("unpinned", "ranged"):
            constrained = any(c.name == req.name and c.kind == "pinned" for c in parsed.constraints)
            if constrained:
                continue
            how = "not pinned" if req.kind == "unpinned" else f"only bounded ({req.specifier})"
            yield Located(_at(req), warn(
                f"{req.name} is {how}",
                f"{req.name}==<version>",
                f"pin it: `{req.name}==X.Y.Z` (the version you tested), or pin it in a -c constraints file",
            ))


def _torch_pin(parsed: ParsedRequirements, target: Target) -> Requirement | None:
    return next((r for r in _active(parsed.requirements + parsed.constraints, target)
                 if r.name == "torch" and _pinned_version(r)), None)


@rule("requirements.matrix_conflict", "Pins agree with each other's declared constraints")
def matrix_conflict(parsed: ParsedRequirements, matrix: Matrix, target: Target) -> Iterator[Located]:
    """A pinned library whose release line needs another torch, Python or companion package than
    the one pinned or targeted: "transformers 4.52 needs torch >= 2.1, torch is pinned to 2.0.1",
    "torchvision 0.18.0 needs torch ==2.3.0" (its wheel's Requires-Dist: pip refuses the pair),
    "torch 2.2.2 needs numpy <2" (its wheels were built against NumPy 1.x)."""
    torch = _torch_pin(parsed, target)
    torch_version = _pinned_version(torch) if torch else None
    pins: dict[str, Requirement] = {}
    for r in _active(parsed.requirements + parsed.constraints, target):
        if _pinned_version(r):
            pins.setdefault(r.name, r)
    others = {name: str(_pinned_version(r)) for name, r in pins.items()}
    for req in _active(parsed.requirements, target):
        version = _pinned_version(req)
        if version is None:
            continue
        for p in matrix.constraint_problems(req.name, version, torch=None if req.name == "torch" else torch_version,
                                            python=target.python, others=others):
            where = _at(pins[p.what]) if p.what in pins else "the target"
            yield Located(_at(req), Outcome(
                p.status,
                f"{p.describe()} ({where})",
                f"{p.what} {p.spec}",
                f"change one of the two pins [{'; '.join(p.sources)}]",
            ))


def _torch_variants(parsed: ParsedRequirements, torch: Requirement | None) -> list[tuple[str, str]]:
    """(variant, where) from torch's local label and from PyTorch wheel index URLs."""
    out = []
    version = _pinned_version(torch) if torch else None
    if torch and version and "+" in version:
        out.append((version.split("+", 1)[1], _at(torch)))
    from preflight.requirements.parse import torch_variant

    for index in parsed.indexes:
        variant = torch_variant(index.url)
        if variant:
            out.append((variant, f"{index.source}:{index.line}"))
    return out


@rule("requirements.torch_variant", "torch's CUDA variant runs on the target")
def torch_cuda_variant(parsed: ParsedRequirements, matrix: Matrix, target: Target) -> Iterator[Located]:
    """The CUDA variant a PyTorch wheel was built for (``+cu121``, or the ``/whl/cu121`` index)
    against the target driver and GPU: a cu130 wheel needs driver R580+, a cu124 wheel has no
    kernels for an RTX 5090, and a local label that disagrees with the index URL never installs."""
    torch = _torch_pin(parsed, target)
    variants = _torch_variants(parsed, torch)
    cuda = [(v, w) for v, w in variants if v.startswith("cu")]
    if len({v for v, _ in cuda}) > 1:
        listed = ", ".join(f"{v} ({w})" for v, w in cuda)
        yield Located(cuda[-1][1], fail(f"torch CUDA variants disagree: {listed}", "one variant",
                                        "use the same cuXYZ in the version label and the index URL"))
        return
    version = _pinned_version(torch) if torch else None
    release = matrix.torch_release(version) if version else None
    if not cuda and release is not None and release.default_variant and not any(v == "cpu" for v, _ in variants):
        cuda = [(release.default_variant, f"{_at(torch)} (the PyPI default wheel)")]  # type: ignore[arg-type]
    for variant, where in cuda[:1]:
        if target.driver:
            runtime = "{}.{}".format(*cuda_tuple(variant))
            verdict = matrix.driver_verdict(runtime, target.driver)
            if verdict is not None and verdict.status == "too_old":
                need = (verdict.floor or verdict.toolkit).min_driver  # type: ignore[union-attr]
                sourced = (verdict.toolkit or verdict.floor).sourced  # type: ignore[union-attr]
                yield Located(where, Outcome(
                    min(Status.FAIL, sourced.max_status),
                    f"torch {variant} needs driver >= {need}; the target driver is {target.driver}",
                    f"driver >= {need}",
                    f"use a wheel for an older CUDA (--index-url https://download.pytorch.org/whl/cu...) "
                    f"or upgrade the driver [{sourced.cite()}]",
                ))
            elif verdict is not None and verdict.status == "minor_compat":
                yield Located(where, warn(
                    f"torch {variant} on driver {target.driver}: CUDA minor-version compatibility only",
                    f"driver >= {verdict.toolkit.min_driver if verdict.toolkit else '?'}",
                    "upgrade the driver, or accept that kernels needing PTX JIT fail",
                ))
        if target.gpu and release is not None:
            name, cc = matrix.resolve_gpu(target.gpu)
            kind, arch = matrix.arch_support(release, variant, cc)
            if kind == "none" and arch is not None:
                yield Located(where, Outcome(
                    min(Status.FAIL, arch.sourced.max_status),
                    f"torch {release.version} {variant} has no kernels for {name} (compute capability {cc})",
                    f"a wheel with sm_{cc.replace('.', '')}",
                    "pick another torch/CUDA variant: `preflight compat --gpu ... --driver ...` lists them",
                ))
            elif kind == "ptx":
                yield Located(where, warn(
                    f"torch {release.version} {variant} runs on {name} only through PTX JIT",
                    "native kernels", "pick a newer CUDA variant"))


def _flash_attn_label(url: str) -> tuple[int, str, bool, str | None] | None:
    """(CUDA major, torch minor, C++11 ABI, Python "3.11") from a flash-attn release wheel name,
    ``flash_attn-2.6.3+cu123torch2.4cxx11abiFALSE-cp311-cp311-linux_x86_64.whl``."""
    import re

    name = url.split("#", 1)[0].split("?", 1)[0].rsplit("/", 1)[-1]
    label = re.search(r"\+cu(\d+)torch(\d+\.\d+)cxx11abi(TRUE|FALSE)", name, re.I)
    if label is None:
        return None
    digits = label.group(1)
    major = int(digits if len(digits) <= 2 else digits[:-1])  # cu12 -> 12, cu123 -> 12, cu118 -> 11
    python = re.search(r"-cp(\d)(\d+)-", name)
    return major, label.group(2), label.group(3).upper() == "TRUE", \
        f"{python.group(1)}.{python.group(2)}" if python else None


@rule("requirements.flash_attn_wheel", "A flash-attn wheel URL matches the torch it loads into")
def flash_attn_wheel(parsed: ParsedRequirements, matrix: Matrix, target: Target) -> Iterator[Located]:
    """flash-attn's release wheels are built per torch minor, C++ ABI, CUDA major and Python, and
    named for them (``+cu123torch2.4cxx11abiFALSE-cp311``; flash-attn's setup.py picks one by the
    same keys). One built for another torch minor or the other ABI installs, then fails at
    import with ``undefined symbol: _ZN3c10...``; one for another Python does not install. The
    ABI of torch's pip wheels: pre-C++11 before 2.7, C++11 from 2.7 (``compat_matrix/packages.toml``
    ``[flash_attn_abi]``)."""
    wheels = [r for r in parsed.requirements if r.name == "flash-attn" and r.url]
    if not wheels:
        return
    from packaging.version import InvalidVersion, Version

    torch = _torch_pin(parsed, target)
    torch_version = _pinned_version(torch) if torch else None
    for req in _active(wheels, target):
        label = _flash_attn_label(req.url)  # type: ignore[arg-type]
        if label is None:
            continue
        cuda_major, torch_minor, abi, python = label
        problems, fixes = [], []
        if torch is not None and torch_version:
            try:
                pinned = Version(torch_version)
            except InvalidVersion:
                continue
            minor = f"{pinned.major}.{pinned.minor}"
            if minor != torch_minor:
                problems.append(f"built for torch {torch_minor}, torch is pinned to {torch_version} ({_at(torch)})")
                fixes.append(f"the wheel named ...torch{minor}cxx11abi...")
            elif torch.kind == "pinned":  # a pip wheel of torch, from PyPI or the PyTorch index
                expected = matrix.torch_cxx11abi(torch_version)
                if expected is not None and expected != abi:
                    problems.append(f"cxx11abi{str(abi).upper()}, torch {torch_version}'s pip wheels use "
                                    f"cxx11abi{str(expected).upper()}")
                    fixes.append(f"the cxx11abi{str(expected).upper()} wheel")
            variant = next((v for v, _ in _torch_variants(parsed, torch) if v.startswith("cu")), None)
            if variant is not None and cuda_tuple(variant)[0] != cuda_major:
                problems.append(f"built for CUDA {cuda_major}, torch is the {variant} build")
                fixes.append(f"a cu{cuda_tuple(variant)[0]}... wheel")
        if target.python and python and python != _py(target.python):
            problems.append(f"built for Python {python}, the target is {target.python}")
            fixes.append(f"the cp{_py(target.python).replace('.', '')} wheel")
        if problems:
            note = matrix.notes.get("torch_pypi_cxx11abi")
            yield Located(_at(req), fail(
                f"flash-attn wheel {req.url.rsplit('/', 1)[-1]}: " + "; ".join(problems),
                "a wheel for this torch minor, C++ ABI, CUDA major and Python",
                "use " + ", ".join(fixes) + " from https://github.com/Dao-AILab/flash-attention/releases, or "
                "`pip install flash-attn --no-build-isolation` to let its setup.py pick (or build) the right one"
                + (f" [{note.cite()}]" if note and any("cxx11abi" in x for x in problems) else ""),
            ))


@rule("requirements.python_target", "Requirements install on the target Python")
def python_target(parsed: ParsedRequirements, matrix: Matrix, target: Target) -> Iterator[Located]:
    """A marker that drops a critical package on the target Python (``torch; python_version <
    "3.12"`` with a 3.12 target), or a torch pin without wheels for that Python."""
    if not target.python:
        return
    kept = _active(parsed.requirements, target)
    for req in parsed.requirements:
        if req.name in CRITICAL and req not in kept:
            yield Located(_at(req), warn(f"{req.name} is skipped on Python {target.python} by its marker {req.marker!r}",
                                         f"{req.name} installed on the target", "fix the marker"))
    torch = _torch_pin(parsed, target)
    version = _pinned_version(torch) if torch else None
    release = matrix.torch_release(version) if version else None
    if torch is not None and release is not None and release.python and not _contains(release.python, target.python):
        yield Located(_at(torch), Outcome(
            min(Status.FAIL, release.sourced.max_status),
            f"torch {version} has no wheels for Python {target.python} (they cover {release.python})",
            f"Python {release.python}", "change the torch pin or the target Python"))


@rule("requirements.not_checkable", "Lines that cannot be checked offline")
def not_checkable(parsed: ParsedRequirements, matrix: Matrix, target: Target) -> Iterator[Located]:
    """Editable installs, VCS and direct URLs carry no version to check; they are listed so
    nobody mistakes silence for approval."""
    for req in parsed.requirements:
        if req.kind in ("editable", "vcs", "url", "local-path"):
            yield Located(_at(req), skip(f"{req.kind} requirement {req.raw!r}: no version to check offline"))


def judge_requirements(
    parsed: ParsedRequirements,
    matrix: Matrix,
    target: Target,
    *,
    only: tuple[str, ...] = (),
    skip_ids: tuple[str, ...] = (),
) -> list[Finding]:
    """Every rule's findings, located at file:line; a rule with nothing to say passes once."""
    if only or skip_ids:
        import fnmatch  # only to match --only/--skip globs
    for pattern in (*only, *skip_ids):
        if not any(fnmatch.fnmatchcase(r, pattern) for r in RULES):
            raise InputError(f"unknown check id {pattern!r} (requirements rules: {', '.join(RULES)})")
    findings = []
    files = ", ".join(parsed.files) or "(no file)"
    for rule_id, (title, func) in RULES.items():
        if only and not any(fnmatch.fnmatchcase(rule_id, p) for p in only):
            continue
        if any(fnmatch.fnmatchcase(rule_id, p) for p in skip_ids):
            continue
        located = list(func(parsed, matrix, target))
        if not located:
            located = [Located(files, passed("nothing found"))]
        for item in located:
            o = item.outcome
            findings.append(Finding(rule_id, o.status, item.where, title, GROUP, o.observed, o.expected,
                                    o.remediation, dict(o.evidence)))
    return findings
