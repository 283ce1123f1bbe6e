"""GPU facts: NVML through pynvml, else NVML through ctypes, else ``nvidia-smi`` CSV.

The first source that answers wins; why each earlier one failed is kept in ``unavailable``
(keys ``pynvml``, ``nvml-ctypes``, ``nvidia-smi``), so "no GPU" always comes with its reason.
``PREFLIGHT_GPU_SOURCE`` (one of those keys) forces a single source; the GPU verification script
uses it to exercise each path on a real machine.
"""

from __future__ import annotations

import os

from . import gpu_nvml

SOURCES = ("pynvml", "nvml-ctypes", "nvidia-smi")


def _pynvml():
    import pynvml  # noqa: PLC0415 - optional, imported only when the probe runs

    return gpu_nvml.read(pynvml, "pynvml")


def _nvml_ctypes():
    from . import nvml_ctypes  # noqa: PLC0415 - loads libnvidia-ml only when asked

    return gpu_nvml.read(nvml_ctypes.load(), "nvml-ctypes")


def _nvidia_smi():
    from . import gpu_smi  # noqa: PLC0415 - runs a subprocess only when asked

    return gpu_smi.read()


_READERS = {"pynvml": _pynvml, "nvml-ctypes": _nvml_ctypes, "nvidia-smi": _nvidia_smi}


def collect() -> dict:
    forced = os.environ.get("PREFLIGHT_GPU_SOURCE")
    order = (forced,) if forced in _READERS else SOURCES
    failures = {}
    for name in order:
        try:
            facts = _READERS[name]()
        except Exception as exc:  # noqa: BLE001 - any failure means "try the next source"
            failures[name] = "{}: {}".format(type(exc).__name__, exc).strip()
            continue
        facts["unavailable"] = dict(failures, **facts["unavailable"])
        return facts
    return {
        "source": None,
        "driver_version": None,
        "cuda_driver_version": None,
        "nvml_version": None,
        "devices": [],
        "unavailable": failures,
    }
