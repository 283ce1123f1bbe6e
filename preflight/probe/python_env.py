"""The training Python: interpreter, virtualenv/conda, and package versions read without importing.

Versions come from ``*.dist-info`` folder names (and ``PKG-INFO`` of ``*.egg-info``) found on
``sys.path``, in ``sys.path`` order as the import system would; torch's CUDA and git version come
from ``torch/version.py`` read as text. Nothing heavy is ever imported, so this takes milliseconds
even with torch installed.
"""

from __future__ import annotations

import os
import re
import shutil
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
    }
