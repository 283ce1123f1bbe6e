"""The training Python: interpreter, virtualenv/conda, and package versions read without importing.

Versions come from ``*.dist-info`` folder names (and ``PKG-INFO`` of ``*.egg-info``) found on
``sys.path``, in ``sys.path`` order as the import system would; torch's CUDA and git version come
from ``torch/version.py`` read as text. Nothing heavy is ever imported, so this takes milliseconds
even with torch installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys

from .sysfs import parse_key_values, read_text

PACKAGES_OF_INTEREST = (
    "torch",
    "torchvision",
    "torchaudio",
    "transformers",
    "accelerate",
    "deepspeed",
    "peft",
    "trl",
    "datasets",
    "tokenizers",
    "safetensors",
    "huggingface-hub",
    "bitsandbytes",
    "flash-attn",
    "xformers",
    "triton",
    "pytorch-triton",
    "vllm",
    "numpy",
    "apex",
    "megatron-core",
    "liger-kernel",
    "unsloth",
    "axolotl",
    "llamafactory",
    "nvidia-ml-py",
    "pynvml",
)

_TORCH_FIELD = re.compile(r"^(\w+)\s*(?::[^=]+)?=\s*(.+?)\s*$")


def normalize(name: str) -> str:
    """PEP 503 normalised project name.

    >>> normalize("Flash_Attn")
    'flash-attn'
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_wanted(name: str) -> bool:
    return name in PACKAGES_OF_INTEREST or name.startswith("nvidia-")


def dist_name_version(entry: str, folder: str):
    """(normalised name, version) of one ``*.dist-info`` / ``*.egg-info`` folder, or None.

    >>> dist_name_version("/x", "flash_attn-2.7.4.post1.dist-info")
    ('flash-attn', '2.7.4.post1')
    """
    if folder.endswith(".dist-info"):
        stem = folder[: -len(".dist-info")]
        name, sep, version = stem.partition("-")
        if sep:
            return normalize(name), version
        return None
    stem = folder[: -len(".egg-info")]
    pkg_info = read_text(os.path.join(entry, folder, "PKG-INFO"))
    if pkg_info is None:
        pkg_info = read_text(os.path.join(entry, folder)) if os.path.isfile(os.path.join(entry, folder)) else None
    if pkg_info:
        fields = parse_key_values(pkg_info.split("\n\n", 1)[0])
        if fields.get("Name") and fields.get("Version"):
            return normalize(fields["Name"]), fields["Version"]
    name, sep, rest = stem.partition("-")
    if sep:
        return normalize(name), rest.split("-py")[0]
    return None


def scan_packages(path_entries):
    """Versions of the packages of interest, and the sys.path entry holding torch (or None)."""
    found = {}
    torch_entry = None
    for entry in path_entries:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for folder in names:
            if not (folder.endswith(".dist-info") or folder.endswith(".egg-info")):
                continue
            pair = dist_name_version(entry, folder)
            if pair is None or not _is_wanted(pair[0]) or pair[0] in found:
                continue
            found[pair[0]] = pair[1]
            if pair[0] == "torch" and torch_entry is None:
                torch_entry = entry
    return found, torch_entry


def parse_torch_version_py(text: str) -> dict:
    """Fields of ``torch/version.py`` as strings (None for ``None``), parsed as text.

    >>> parse_torch_version_py("__version__ = '2.5.1+cu124'\\ncuda: Optional[str] = '12.4'\\nhip = None")
    {'__version__': '2.5.1+cu124', 'cuda': '12.4', 'hip': None}
    """
    out = {}
    for line in text.splitlines():
        match = _TORCH_FIELD.match(line)
        if not match:
            continue
        raw = match.group(2)
        if raw == "None":
            out[match.group(1)] = None
        elif len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            out[match.group(1)] = raw[1:-1]
    return out


_NVCC_RELEASE = re.compile(r"release (\d+\.\d+)")


def nvcc_release(text: str):
    """The toolkit version in ``nvcc --version`` output.

    >>> nvcc_release("Cuda compilation tools, release 12.4, V12.4.131")
    '12.4'
    """
    match = _NVCC_RELEASE.search(text)
    return match.group(1) if match else None


def _nvcc(environ, unavailable):
    """The CUDA toolkit extensions would be built with: CUDA_HOME's nvcc, else PATH's (as
    torch.utils.cpp_extension looks), else /usr/local/cuda."""
    candidates = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if environ.get(var):
            candidates.append(os.path.join(environ[var], "bin", "nvcc"))
    candidates += [shutil.which("nvcc") or "", "/usr/local/cuda/bin/nvcc"]
    nvcc = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    if nvcc is None:
        unavailable["nvcc_version"] = "no nvcc (CUDA_HOME, PATH, /usr/local/cuda): extensions cannot be built here"
        return None
    try:
        done = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        unavailable["nvcc_version"] = "{} --version failed: {}".format(nvcc, exc)
        return None
    return nvcc_release(done.stdout)


# --- how a compiled torch extension was built --------------------------------------------------
#
# A C++ extension of torch (flash-attn's flash_attn_2_cuda) imports c10/ATen symbols whose
# mangled names carry the C++ ABI: with _GLIBCXX_USE_CXX11_ABI=1 a std::string parameter is
# ``NSt7__cxx1112basic_string...``, with 0 it is ``Ss``. flash-attn's setup.py builds with the
# ABI of the torch installed at build time (torch._C._GLIBCXX_USE_CXX11_ABI), and its release
# wheels carry it in their file names (flash_attn-2.6.3+cu123torch2.4cxx11abiFALSE-...whl). An
# extension and a torch of different ABIs fail at import with "undefined symbol: _ZN3c10...".
# The installed metadata does not record the torch of the build (the release wheels are built as
# plain "2.6.3" and only renamed), but a wheel installed from a URL leaves that file name in the
# dist-info's direct_url.json (PEP 610).

_SHT_DYNSYM = 11
_WHEEL_LOCAL = re.compile(r"\+cu(\d+)torch(\d+\.\d+)cxx11abi(TRUE|FALSE)-", re.IGNORECASE)


def elf_dynamic_strings(path, limit=64 << 20):
    """The dynamic string table of a 64-bit little-endian ELF shared library: the names of the
    symbols it exports and imports, read from its section table without loading it (a few
    hundred kilobytes of a library that may weigh a gigabyte). None when the file is not such a
    library, has no section table, or the table is over ``limit`` bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4:6] != b"\x02\x01":
                return None
            (shoff,) = struct.unpack_from("<Q", head, 0x28)
            shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
            if not shoff or shentsize < 64 or not shnum:
                return None
            f.seek(shoff)
            table = f.read(shentsize * shnum)
            if len(table) < shentsize * shnum:
                return None
            for i in range(shnum):
                (kind,) = struct.unpack_from("<I", table, i * shentsize + 4)
                if kind != _SHT_DYNSYM:
                    continue
                (link,) = struct.unpack_from("<I", table, i * shentsize + 40)
                if link >= shnum:
                    return None
                offset, size = struct.unpack_from("<QQ", table, link * shentsize + 24)
                if size > limit:
                    return None
                f.seek(offset)
                data = f.read(size)
                return data if len(data) == size else None
    except (OSError, struct.error):
        return None
    return None


def cxx11_abi(dynstr):
    """Whether the c10 symbols named in a dynamic string table use the C++11 ABI; None when no
    c10 symbol with a std::string in its signature is named.

    >>> cxx11_abi(b"\\0_ZN3c105ErrorC2ENS_14SourceLocationENSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE\\0")
    True
    >>> cxx11_abi(b"\\0_ZN3c106detail14torchCheckFailEPKcS2_jRKSs\\0")
    False
    >>> cxx11_abi(b"\\0_ZN3c1010TensorImpl7releaseEv\\0memcpy\\0") is None
    True
    """
    old = False
    for name in dynstr.split(b"\0"):
        if not (name.startswith(b"_ZN3c10") or name.startswith(b"_ZNK3c10")):
            continue
        if b"__cxx11" in name:
            return True
        if b"RKSs" in name or b"ESs" in name:
            old = True
    return False if old else None


def wheel_build_tag(url):
    """(torch major.minor, C++11 ABI) from the file name of a flash-attn release wheel.

    >>> wheel_build_tag("https://github.com/Dao-AILab/flash-attention/releases/download/v2.6.3/"
    ...                 "flash_attn-2.6.3%2Bcu123torch2.4cxx11abiFALSE-cp311-cp311-linux_x86_64.whl")
    ('2.4', False)
    >>> wheel_build_tag("https://pypi.org/flash_attn-2.6.3.tar.gz") is None
    True
    """
    try:
        from urllib.parse import unquote
    except ImportError:  # pragma: no cover - every CPython has it
        return None
    match = _WHEEL_LOCAL.search(unquote(url.rsplit("/", 1)[-1]))
    if not match:
        return None
    return match.group(2), match.group(3).upper() == "TRUE"


def torch_cxx11_abi(torch_entry):
    """torch's own C++ ABI, from the c10 library it ships (torch/lib/libc10.so)."""
    dynstr = elf_dynamic_strings(os.path.join(torch_entry, "torch", "lib", "libc10.so"))
    return cxx11_abi(dynstr) if dynstr is not None else None


def flash_attn_build(path_entries):
    """What flash-attn's installed files say of its build, from the first sys.path entry holding
    its metadata (the one Python imports): its extension library and that library's C++ ABI, and
    for a wheel installed from a URL the torch and ABI in the wheel's file name. None when
    flash-attn is not installed."""
    for entry in path_entries:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        dist = next((n for n in names if n.endswith(".dist-info")
                     and (dist_name_version(entry, n) or ("",))[0] == "flash-attn"), None)
        if dist is None:
            continue
        library = next((os.path.join(entry, n) for n in sorted(names)
                        if n.startswith("flash_attn_2_cuda") and n.endswith(".so")), None)
        dynstr = elf_dynamic_strings(library) if library else None
        out = {
            "library": library,
            "cxx11_abi": cxx11_abi(dynstr) if dynstr is not None else None,
            "wheel_url": None,
            "wheel_torch": None,
            "wheel_cxx11_abi": None,
        }
        direct = read_text(os.path.join(entry, dist, "direct_url.json"))
        try:
            url = json.loads(direct).get("url") if direct else None
        except (ValueError, AttributeError):
            url = None
        if isinstance(url, str):
            out["wheel_url"] = url
            tag = wheel_build_tag(url)
            if tag:
                out["wheel_torch"], out["wheel_cxx11_abi"] = tag
        return out
    return None


def collect() -> dict:
    unavailable = {}
    packages, torch_entry = scan_packages(sys.path)
    torch_cuda = torch_git = None
    if torch_entry is not None:
        text = read_text(os.path.join(torch_entry, "torch", "version.py"))
        if text is None:
            unavailable["torch_cuda"] = "torch/version.py not found beside its metadata"
        else:
            fields = parse_torch_version_py(text)
            torch_cuda = fields.get("cuda")
            torch_git = fields.get("git_version")
            if torch_cuda is None:
                unavailable["torch_cuda"] = "torch is a CPU-only build" + (
                    " (ROCm {})".format(fields["hip"]) if fields.get("hip") else ""
                )
    else:
        unavailable["torch_cuda"] = "torch is not installed in this Python"
    abi = None
    if torch_entry is not None:
        abi = torch_cxx11_abi(torch_entry)
        if abi is None:
            unavailable["torch_cxx11_abi"] = "torch/lib/libc10.so not found or names no std::string symbol"
    flash = flash_attn_build(sys.path) if "flash-attn" in packages else None
    if flash is not None and flash["library"] is None:
        unavailable["flash_attn_build"] = "no flash_attn_2_cuda*.so beside flash-attn's metadata"
    virtualenv = sys.prefix if sys.prefix != getattr(sys, "base_prefix", sys.prefix) else None
    virtualenv = virtualenv or os.environ.get("VIRTUAL_ENV") or None
    conda_env = None
    if os.path.isdir(os.path.join(sys.prefix, "conda-meta")):
        conda_env = os.environ.get("CONDA_DEFAULT_ENV") or sys.prefix
    return {
        "executable": sys.executable,
        "version": ".".join(str(p) for p in sys.version_info[:3]),
        "implementation": sys.implementation.name,
        "virtualenv": virtualenv,
        "conda_env": conda_env,
        "packages": dict(sorted(packages.items())),
        "torch_cuda": torch_cuda,
        "torch_git_version": torch_git,
        "unavailable": unavailable,
        "nvcc_version": _nvcc(os.environ, unavailable),
        "torch_cxx11_abi": abi,
        "flash_attn_build": flash,
    }
