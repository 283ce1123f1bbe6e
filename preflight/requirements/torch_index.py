"""Which PyTorch build (CUDA, ROCm, CPU, XPU) a package index or find-links URL serves."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# cu121, cu118, cpu, cpu-cxx11-abi, rocm6.2, rocm5.4.2, xpu
_VARIANT_RE = re.compile(r"^(?:cpu(?:[-_]cxx11[-_]abi)?|cu\d{2,3}|rocm\d+(?:\.\d+)*|xpu)$")
# the channel segments between /whl/ and the variant: /whl/nightly/cu124, /whl/test/cu121
_CHANNELS = frozenset({"nightly", "test"})


def torch_variant(url: str) -> str | None:
    """The build variant a PyTorch wheel index serves: ``"cu121"``, ``"cpu"``, ``"rocm6.2"``.

    Recognised layouts: ``https://download.pytorch.org/whl/<variant>`` (also under ``nightly/``
    or ``test/``, with a trailing ``/``, ``/torch/`` or ``/torch_stable.html``) on any
    ``*.pytorch.org`` host, and the mirror layouts ``.../pytorch-wheels/<variant>`` and
    ``.../pytorch/whl/<variant>`` on any host. ``None`` for every other URL, including
    ``https://download.pytorch.org/whl/torch_stable.html`` (all variants in one page) and
    indexes of other projects that happen to use ``/whl/cu121`` (FlashInfer, AutoGPTQ).
    """
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
    except ValueError:  # e.g. an unbalanced "[" in the host
        return None
    if parts.scheme.lower() not in ("http", "https", "file"):
        return None
    segments = [s.lower() for s in parts.path.split("/") if s]
    on_pytorch_org = host == "pytorch.org" or host.endswith(".pytorch.org")
    for i, segment in enumerate(segments):
        if segment == "pytorch-wheels" or (
            segment == "whl" and (on_pytorch_org or (i > 0 and segments[i - 1] == "pytorch"))
        ):
            rest = segments[i + 1 :]
            if rest and rest[0] in _CHANNELS:
                rest = rest[1:]
            if rest and _VARIANT_RE.match(rest[0]):
                return rest[0]
            return None
    return None
