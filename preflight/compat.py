"""The compatibility matrix: loads ``compat_matrix/*.toml`` and answers "does A work with B", with
the reason and the source.

Knowledge is data: every entry carries its ``source`` and the date it was ``verified``; an entry
marked ``unverified`` can make a rule warn but never fail (``Sourced.max_status``). ``--matrix
DIR`` replaces the shipped data with another folder of the same files.
"""

from __future__ import annotations

import importlib
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from preflight.errors import InputError
from preflight.findings import Status
from preflight.toml_text import TomlError, parse_toml

FILES = ("cuda_driver.toml", "torch.toml", "gpus.toml", "packages.toml")
_CC = re.compile(r"^(?:sm_?)?(\d{1,2})\.?(\d)$")


@dataclass(frozen=True)
class Sourced:
    source: str
    verified: str
    unverified: bool = False
    note: str | None = None

    @property
    def max_status(self) -> Status:
        """The worst status a rule built on this fact may give."""
        return Status.WARN if self.unverified else Status.FAIL

    def cite(self) -> str:
        return self.source + (" (unverified)" if self.unverified else "")


def _sourced(entry: dict[str, Any], where: str) -> Sourced:
    if not entry.get("source") or not entry.get("verified"):
        raise InputError("entry without source or verified date", source=where)
    return Sourced(str(entry["source"]), str(entry["verified"]), bool(entry.get("unverified", False)), entry.get("note"))


def driver_tuple(text: str) -> tuple[int, ...]:
    """``550.54.14`` as ``(550, 54, 14)``, for ordering driver versions.

    >>> driver_tuple("525.60.13") < driver_tuple("525.105.17")
    True
    """
    return tuple(int(p) for p in re.findall(r"\d+", text))


def cc_tuple(text: str) -> tuple[int, int]:
    """A compute capability ``"8.6"`` (or ``"9.0a"``) as ``(8, 6)``."""
    major, _, minor = text.partition(".")
    return int(major), int(re.match(r"\d+", minor or "0").group(0))  # type: ignore[union-attr]


def cuda_tuple(text: str) -> tuple[int, int]:
    """``"12.4"`` or variant ``"cu124"`` as ``(12, 4)``; ``cu118`` is 11.8, ``cu130`` is 13.0."""
    if text.startswith("cu"):
        digits = text[2:]
        return int(digits[:-1]), int(digits[-1])
    major, _, minor = text.partition(".")
    return int(major), int(minor.split(".")[0] or 0)


@dataclass(frozen=True)
class DriverFloor:
    cuda_major: int
    min_driver: str
    sourced: Sourced


@dataclass(frozen=True)
class ToolkitDriver:
    cuda: str
    release: str
    min_driver: str
    sourced: Sourced


@dataclass(frozen=True)
class TorchArch:
    variant: str
    sass: tuple[str, ...]
    ptx: tuple[str, ...]
    sourced: Sourced


@dataclass(frozen=True)
class TorchRelease:
    version: str
    variants: tuple[str, ...]
    default_variant: str | None
    python: str | None
    nccl: str | None
    released: str | None
    archs: dict[str, TorchArch]
    sourced: Sourced


@dataclass(frozen=True)
class GpuModel:
    name: str
    nvml_names: tuple[str, ...]
    compute_capability: str
    memory_gib: float | None
    sourced: Sourced


@dataclass(frozen=True)
class Feature:
    name: str
    min_cc: str | None
    max_cc: str | None
    only_cc: tuple[str, ...]
    sourced: Sourced

    def supported(self, cc: str) -> bool:
        value = cc_tuple(cc)
        if self.only_cc:
            return any(cc_tuple(c) == value for c in self.only_cc)
        if self.min_cc and value < cc_tuple(self.min_cc):
            return False
        return not (self.max_cc and value > cc_tuple(self.max_cc))


@dataclass(frozen=True)
class Constraint:
    package: str
    versions: str
    requires_torch: str | None
    requires_python: str | None
    requires_cuda: str | None
    gpu_min_cc: str | None
    runtime_gate: bool
    sourced: Sourced
    scope: str | None = None  # e.g. "torch.load": the constraint bites only in that code path
    requires: tuple[tuple[str, str], ...] = ()  # (PEP 503 name, specifier) of other packages

    def covers(self, version: str) -> bool:
        return _contains(self.versions, version)


@dataclass(frozen=True)
class ConstraintProblem:
    """A library release line's requirement that the installed (or pinned) stack breaks."""

    package: str
    version: str
    what: str  # "torch" or "Python"
    spec: str
    have: str
    status: Status  # FAIL, or WARN for unverified or scoped facts
    gate: bool  # the library disables torch at import below its minimum
    scope: str | None
    sources: tuple[str, ...]

    def describe(self) -> str:
        gate = " (it disables torch at import)" if self.gate and self.what == "torch" and not self.scope else ""
        scope = f" for {self.scope}" if self.scope else ""
        return f"{self.package} {self.version} needs {self.what} {self.spec}{scope}, found {self.have}{gate}"


@dataclass(frozen=True)
class FlashAttnWheel:
    flash_attn: str
    torch: tuple[str, ...]
    cuda: tuple[str, ...]
    sourced: Sourced


def _contains(specifier: str, version: str) -> bool:
    """Whether ``version`` (local label ignored) satisfies ``specifier``; pre-releases count."""
    try:
        return SpecifierSet(specifier).contains(Version(version).public, prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return False


@dataclass(frozen=True)
class WheelOption:
    """An official torch wheel that works on a GPU and driver: ``code`` is ``sass`` (native) or
    ``ptx`` (JIT), ``driver`` is ``native`` or ``minor_compat``."""

    torch: str
    variant: str
    code: str
    driver: str


@dataclass(frozen=True)
class DriverVerdict:
    """Whether a driver runs code built for a CUDA version: ``native``, ``minor_compat`` (runs,
    without PTX JIT of newer code) or ``too_old``; with the drivers that would do."""

    status: str
    toolkit: ToolkitDriver | None
    floor: DriverFloor | None


@dataclass(frozen=True)
class Matrix:
    floors: tuple[DriverFloor, ...]
    toolkits: tuple[ToolkitDriver, ...]
    torch: tuple[TorchRelease, ...]
    gpus: tuple[GpuModel, ...]
    features: tuple[Feature, ...]
    constraints: tuple[Constraint, ...]
    flash_attn_wheels: tuple[FlashAttnWheel, ...]
    origin: str = "shipped"
    notes: dict[str, Sourced] = field(default_factory=dict)
    # (torch specifier, C++11 ABI) of torch's pip wheels: which ABI an extension must match
    torch_pip_cxx11abi: tuple[tuple[str, bool], ...] = ()

    # -- driver and CUDA ---------------------------------------------------------------------
    def toolkit_driver(self, cuda: str) -> ToolkitDriver | None:
        """The lowest driver shipped with any release of CUDA ``major.minor``."""
        want = cuda_tuple(cuda)
        rows = [t for t in self.toolkits if cuda_tuple(t.cuda) == want]
        return min(rows, key=lambda t: driver_tuple(t.min_driver)) if rows else None

    def floor(self, cuda_major: int) -> DriverFloor | None:
        return next((f for f in self.floors if f.cuda_major == cuda_major), None)

    def driver_verdict(self, cuda: str, driver: str) -> DriverVerdict | None:
        """None when the matrix knows neither the toolkit nor its family."""
        toolkit = self.toolkit_driver(cuda)
        floor = self.floor(cuda_tuple(cuda)[0])
        if toolkit is None and floor is None:
            return None
        have = driver_tuple(driver)
        if toolkit is not None and have >= driver_tuple(toolkit.min_driver):
            return DriverVerdict("native", toolkit, floor)
        if floor is not None and have >= driver_tuple(floor.min_driver):
            return DriverVerdict("minor_compat", toolkit, floor)
        return DriverVerdict("too_old", toolkit, floor)

    # -- torch wheels ------------------------------------------------------------------------
    def torch_release(self, torch_version: str) -> TorchRelease | None:
        try:
            release = Version(torch_version).release
        except InvalidVersion:
            return None
        key = f"{release[0]}.{release[1] if len(release) > 1 else 0}"
        return next((r for r in self.torch if r.version == key), None)

    def arch_support(self, release: TorchRelease, variant: str, cc: str) -> tuple[str, TorchArch | None]:
        """``sass`` (native code for this GPU), ``ptx`` (JIT-compiled at first use: slow start,
        works), ``none`` (no kernel image), or ``unknown``. SASS for sm_XY runs on X.Z with Z >= Y
        (same major); PTX for X.Y runs on any newer GPU."""
        arch = release.archs.get(variant)
        if arch is None:
            return "unknown", None
        value = cc_tuple(cc)
        plain = [a for a in arch.sass if not a.endswith(("a", "f"))]
        if any(cc_tuple(a)[0] == value[0] and cc_tuple(a)[1] <= value[1] for a in plain):
            return "sass", arch
        if any(cc_tuple(p) <= value for p in arch.ptx):
            return "ptx", arch
        return "none", arch

    def working_wheels(self, cc: str | None, driver: str | None) -> list[WheelOption]:
        """Official torch wheels with kernels for ``cc`` that run on ``driver``, best first:
        newest torch, native code before PTX, native driver support before minor-version compat."""
        out = []
        for release in self.torch:
            for variant in release.variants:
                code = self.arch_support(release, variant, cc)[0] if cc else "sass"
                if code not in ("sass", "ptx"):
                    continue
                verdict = self.driver_verdict("{}.{}".format(*cuda_tuple(variant)), driver) if driver else None
                if driver and (verdict is None or verdict.status == "too_old"):
                    continue
                out.append(WheelOption(release.version, variant, code, verdict.status if verdict else "native"))
        out.sort(
            key=lambda o: (Version(o.torch), o.code == "sass", o.driver == "native", cuda_tuple(o.variant)),
            reverse=True,
        )
        return out

    # -- GPUs --------------------------------------------------------------------------------
    def gpu(self, query: str) -> GpuModel | None:
        """A GPU by NVML name, marketing name (case and spacing ignored) or a unique substring."""
        def norm(text: str) -> str:
            return re.sub(r"[^a-z0-9]", "", text.lower())

        q = norm(query.replace("NVIDIA", "").replace("GeForce", ""))
        for g in self.gpus:
            if query in g.nvml_names or norm(g.name) == q:
                return g
        matches = [g for g in self.gpus if q and (q in norm(g.name) or any(q in norm(n) for n in g.nvml_names))]
        by_cc = {g.compute_capability for g in matches}
        return matches[0] if matches and len(by_cc) == 1 else None

    def resolve_gpu(self, query: str) -> tuple[str, str]:
        """(display name, compute capability) from a GPU name or a capability (``8.6``, ``sm_90``)."""
        match = _CC.match(query.strip())
        if match:
            cc = f"{int(match.group(1))}.{match.group(2)}"
            return f"a compute capability {cc} GPU", cc
        model = self.gpu(query)
        if model is None:
            known = ", ".join(sorted({g.name for g in self.gpus}))
            raise InputError(f"GPU {query!r}: unknown or ambiguous (known: {known}; or give a capability like 8.6)")
        return model.name, model.compute_capability

    def features_for(self, cc: str) -> dict[str, Feature]:
        return {f.name: f for f in self.features if f.supported(cc)}

    def feature(self, name: str) -> Feature | None:
        return next((f for f in self.features if f.name == name), None)

    # -- packages ----------------------------------------------------------------------------
    def constraints_for(self, package: str, version: str) -> list[Constraint]:
        return [c for c in self.constraints if c.package == package and c.covers(version)]

    def constraint_problems(
        self, package: str, version: str, *, torch: str | None, python: str | None,
        others: Mapping[str, str] | None = None,
    ) -> list[ConstraintProblem]:
        """What ``package==version`` requires of torch, Python and ``others`` (PEP 503 name ->
        version of the other packages pinned or installed) that they break; entries stating the
        same requirement are merged, their sources kept together."""
        merged: dict[tuple[str, str, str | None], ConstraintProblem] = {}
        others = others or {}
        for c in self.constraints_for(package, version):
            wanted = [("torch", c.requires_torch, torch), ("Python", c.requires_python, python)]
            wanted += [(name, spec, others.get(name)) for name, spec in c.requires]
            for what, spec, have in wanted:
                if not spec or not have or _contains(spec, have):
                    continue
                status = Status.WARN if c.scope else c.sourced.max_status
                key = (what, spec, c.scope)
                old = merged.get(key)
                merged[key] = ConstraintProblem(
                    package, version, what, spec, have,
                    max(status, old.status) if old else status,
                    c.runtime_gate or bool(old and old.gate),
                    c.scope,
                    (*(old.sources if old else ()), c.sourced.cite()),
                )
        return sorted(merged.values(), key=lambda p: -p.status)

    def torch_cxx11abi(self, torch_version: str) -> bool | None:
        """Whether torch's pip wheels of this version use the C++11 ABI (None: not known)."""
        return next((abi for spec, abi in self.torch_pip_cxx11abi if _contains(spec, torch_version)), None)

    def flash_attn_wheel(self, version: str) -> FlashAttnWheel | None:
        return next((w for w in self.flash_attn_wheels if w.flash_attn == Version(version).public), None)


def _read(folder: Path, name: str) -> dict[str, Any]:
    path = folder / name
    where = str(path)
    try:
        return parse_toml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("missing compatibility data file", source=where) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", source=where) from None
    except TomlError as exc:
        raise InputError(f"invalid TOML: {exc}", source=where, line=exc.line) from None


def _tuple(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in (value or ()))


def parse_matrix(data: dict[str, dict[str, Any]], origin: str) -> Matrix:
    cuda, torch, gpus, packages = (data[f] for f in FILES)
    try:
        return Matrix(
            floors=tuple(
                DriverFloor(int(e["cuda_major"]), str(e["min_driver"]), _sourced(e, "cuda_driver.toml [[family]]"))
                for e in cuda.get("family", [])
            ),
            toolkits=tuple(
                ToolkitDriver(str(e["cuda"]), str(e.get("release", "GA")), str(e["min_driver"]),
                              _sourced(e, "cuda_driver.toml [[toolkit]]"))
                for e in cuda.get("toolkit", [])
            ),
            torch=tuple(
                TorchRelease(
                    version=str(e["version"]),
                    variants=_tuple(e.get("variants")),
                    default_variant=e.get("default_variant"),
                    python=e.get("python"),
                    nccl=e.get("nccl"),
                    released=e.get("released"),
                    archs={
                        str(a["variant"]): TorchArch(
                            str(a["variant"]), _tuple(a.get("sass")), _tuple(a.get("ptx")),
                            _sourced(a, f"torch.toml {e['version']} arch"),
                        )
                        for a in e.get("arch", [])
                    },
                    sourced=_sourced(e, f"torch.toml {e['version']}"),
                )
                for e in torch.get("release", [])
            ),
            gpus=tuple(
                GpuModel(str(e["name"]), _tuple(e.get("nvml_names")), str(e["compute_capability"]),
                         e.get("memory_gib"), _sourced(e, f"gpus.toml {e['name']}"))
                for e in gpus.get("gpu", [])
            ),
            features=tuple(
                Feature(str(e["name"]), e.get("min_cc"), e.get("max_cc"), _tuple(e.get("only_cc")),
                        _sourced(e, f"gpus.toml feature {e['name']}"))
                for e in gpus.get("feature", [])
            ),
            constraints=tuple(
                Constraint(
                    str(e["package"]), str(e["versions"]), e.get("requires_torch"), e.get("requires_python"),
                    e.get("requires_cuda"), e.get("gpu_min_cc"), bool(e.get("runtime_gate", False)),
                    _sourced(e, f"packages.toml {e['package']} {e['versions']}"), e.get("scope"),
                    tuple((_pep503(k), str(v)) for k, v in sorted(e.get("requires", {}).items())),
                )
                for e in packages.get("constraint", [])
            ),
            flash_attn_wheels=tuple(
                FlashAttnWheel(str(e["flash_attn"]), _tuple(e.get("torch")), _tuple(e.get("cuda")),
                               _sourced(e, f"packages.toml flash_attn_wheel {e['flash_attn']}"))
                for e in packages.get("flash_attn_wheel", [])
            ),
            origin=origin,
            notes=_notes(packages),
            torch_pip_cxx11abi=tuple(
                (str(e["torch"]), bool(e["cxx11abi"]))
                for e in packages.get("flash_attn_abi", {}).get("torch_pypi_cxx11abi", [])
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"malformed compatibility data: {type(exc).__name__}: {exc}", source=origin) from None


def _pep503(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _notes(packages: dict[str, Any]) -> dict[str, Sourced]:
    """Sourced facts that are not entries of a list: the C++ ABI of torch's pip wheels."""
    abi = packages.get("flash_attn_abi")
    if not abi or not abi.get("torch_pypi_cxx11abi"):
        return {}
    source = abi.get("torch_pypi_cxx11abi_source")
    if not source or not abi.get("verified"):
        raise InputError("flash_attn_abi.torch_pypi_cxx11abi without its source or verified date",
                         source="packages.toml [flash_attn_abi]")
    return {"torch_pypi_cxx11abi": Sourced(str(source), str(abi["verified"]))}


COMPILED = "compiled.json"


def _digest(folder: Path) -> str:
    """Fingerprint of the TOML sources, to tell whether ``compiled.json`` is theirs."""
    crc = 0
    for name in FILES:
        crc = zlib.crc32((folder / name).read_bytes(), crc)
    return f"crc32:{crc:08x}"


def shipped_folder() -> Path:
    """Where the shipped data lies (``compat_matrix/`` in a checkout, package data when installed)."""
    package = importlib.import_module("preflight.compat_matrix")
    return Path(package.__file__).parent  # type: ignore[arg-type]


def compile_matrix(folder: Path) -> dict[str, Any]:
    """The TOML sources as one JSON document (tomllib costs tens of milliseconds per run; a
    pre-commit hook must not be noticed). ``python -m preflight.compat`` rewrites it."""
    return {"sources_crc32": _digest(folder), "data": {name: _read(folder, name) for name in FILES}}


@cache
def shipped_matrix() -> Matrix:
    folder = shipped_folder()
    try:
        compiled = json.loads((folder / COMPILED).read_text(encoding="utf-8"))
        if compiled.get("sources_crc32") == _digest(folder):
            return parse_matrix(compiled["data"], "shipped compat_matrix")
    except (OSError, ValueError):
        compiled = None  # a missing or stale compiled copy: read the TOML itself
    return parse_matrix({name: _read(folder, name) for name in FILES}, "shipped compat_matrix")


def load_matrix(directory: Path | None = None) -> Matrix:
    """The shipped matrix, or the one in ``directory`` (``--matrix DIR``)."""
    if directory is None:
        return shipped_matrix()
    if not directory.is_dir():
        raise InputError("not a directory of compatibility data", source=str(directory))
    return parse_matrix({name: _read(directory, name) for name in FILES}, str(directory))


if __name__ == "__main__":
    _folder = shipped_folder()
    _target = _folder / COMPILED
    _target.write_text(json.dumps(compile_matrix(_folder), sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {_target}")
