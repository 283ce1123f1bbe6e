"""A minimal ctypes binding to ``libnvidia-ml.so.1`` with pynvml's names and return shapes.

Only the calls ``gpu_nvml`` makes are bound, for hosts without the nvidia-ml-py package. Struct
layouts and signatures follow NVIDIA's ``nvml.h``; return values follow nvidia-ml-py's
``pynvml``. Standard library only, Python 3.8+.
"""

from __future__ import annotations

import ctypes
import functools
from types import SimpleNamespace
from typing import Any, List, Optional, Tuple

LIBRARY_NAMES = ("libnvidia-ml.so.1", "libnvidia-ml.so")

NVML_SUCCESS = 0
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_VALUE_NOT_AVAILABLE_ULL = 0xFFFFFFFFFFFFFFFF  # (unsigned long long) NVML_VALUE_NOT_AVAILABLE
# Large enough for every string query here: NVML_DEVICE_NAME_V2_BUFFER_SIZE and
# NVML_DEVICE_UUID_V2_BUFFER_SIZE are 96, the driver and NVML version buffers 80.
_TEXT_BUFFER = 96
_PROCESS_NAME_BUFFER = 1024  # what pynvml passes to nvmlSystemGetProcessName
_GROW_TRIES = 4


class NVMLError(Exception):
    """An NVML return code; ``str()`` is NVML's own message, e.g. ``Not Supported``."""

    def __init__(self, value: int, message: Optional[str] = None) -> None:
        self.value = value
        super().__init__(message or "NVML error {}".format(value))


class PciInfo(ctypes.Structure):
    """``nvmlPciInfo_t`` (nvml.h since NVML 9, as ``nvmlDeviceGetPciInfo_v3`` fills it)."""
    _fields_ = [
        ("busIdLegacy", ctypes.c_char * 16),  # NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE
        ("domain", ctypes.c_uint),
        ("bus", ctypes.c_uint),
        ("device", ctypes.c_uint),
        ("pciDeviceId", ctypes.c_uint),
        ("pciSubSystemId", ctypes.c_uint),
        ("busId", ctypes.c_char * 32),  # NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE
    ]


class Memory(ctypes.Structure):
    """``nvmlMemory_t``: note the field order total, free, used."""
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                ("used", ctypes.c_ulonglong)]


class Utilization(ctypes.Structure):
    """``nvmlUtilization_t``."""
    _fields_ = [("gpu", ctypes.c_uint), ("memory", ctypes.c_uint)]


class ProcessInfo(ctypes.Structure):
    """``nvmlProcessInfo_t`` (= ``nvmlProcessInfo_v2_t``) for the ``_v2``/``_v3`` entry points."""
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong),
                ("gpuInstanceId", ctypes.c_uint), ("computeInstanceId", ctypes.c_uint)]


class ProcessInfoV1(ctypes.Structure):
    """``nvmlProcessInfo_v1_t`` for the unversioned (pre-R450) entry point."""
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


# Newest first; the first symbol the library exports is used, with its struct layout.
_PROCESS_ENTRY_POINTS = (
    ("nvmlDeviceGetComputeRunningProcesses_v3", ProcessInfo),
    ("nvmlDeviceGetComputeRunningProcesses_v2", ProcessInfo),
    ("nvmlDeviceGetComputeRunningProcesses", ProcessInfoV1),
)


class _Scalar:
    """A method ``name([device]) -> int`` that calls NVML's ``name([device,] &out)``."""

    def __init__(self, ctype: Any) -> None:
        self.ctype = ctype
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: Optional[type] = None) -> Any:
        return self if obj is None else functools.partial(obj._out, self.name, self.ctype)


class Nvml:
    """The loaded library, exposing pynvml-named functions that raise ``NVMLError``."""

    NVMLError = NVMLError

    def __init__(self, lib: ctypes.CDLL, path: str) -> None:
        self._lib = lib
        self.path = path
        error_string = getattr(lib, "nvmlErrorString", None)  # absent from a broken library
        if error_string is not None:
            error_string.restype = ctypes.c_char_p

    def _symbol(self, *names: str) -> Any:
        """The first of ``names`` the library exports; NVMLError(FUNCTION_NOT_FOUND) if none."""
        for name in names:
            try:
                return getattr(self._lib, name)
            except AttributeError:
                continue
        raise NVMLError(
            NVML_ERROR_FUNCTION_NOT_FOUND,
            "Function Not Found: {} is not exported by {}".format(" / ".join(names), self.path),
        )

    def _error(self, code: int) -> NVMLError:
        try:
            message = self._lib.nvmlErrorString(ctypes.c_int(code))
            text = message.decode("utf-8", "replace") if message else None
        except AttributeError:
            text = None
        return NVMLError(code, text)

    def _call(self, names: Any, *args: Any) -> None:
        ret = self._symbol(*((names,) if isinstance(names, str) else names))(*args)
        if ret != NVML_SUCCESS:
            raise self._error(ret)

    def _out(self, name: Any, ctype: Any, *args: Any) -> Any:
        """Value of the single output parameter that follows ``args``."""
        out = ctype()
        self._call(name, *args, ctypes.byref(out))
        return out.value

    def _outs(self, name: str, ctype: Any, count: int, *args: Any) -> Tuple[Any, ...]:
        outs = [ctype() for _ in range(count)]
        self._call(name, *args, *[ctypes.byref(o) for o in outs])
        return tuple(o.value for o in outs)

    def _string(self, name: str, *args: Any, size: int = _TEXT_BUFFER) -> str:
        buffer = ctypes.create_string_buffer(size)
        self._call(name, *args, buffer, ctypes.c_uint(size))
        return buffer.value.decode("utf-8", "replace")

    def nvmlInit(self) -> None:
        self._call(("nvmlInit_v2", "nvmlInit"))

    def nvmlShutdown(self) -> None:
        self._call("nvmlShutdown")

    def nvmlSystemGetDriverVersion(self) -> str:
        return self._string("nvmlSystemGetDriverVersion")

    def nvmlSystemGetNVMLVersion(self) -> str:
        return self._string("nvmlSystemGetNVMLVersion")

    nvmlSystemGetCudaDriverVersion = _Scalar(ctypes.c_int)  # e.g. 12040 for CUDA 12.4
    nvmlSystemGetCudaDriverVersion_v2 = _Scalar(ctypes.c_int)

    def nvmlSystemGetProcessName(self, pid: int) -> str:
        pid_arg = ctypes.c_uint(pid)
        return self._string("nvmlSystemGetProcessName", pid_arg, size=_PROCESS_NAME_BUFFER)

    def nvmlDeviceGetCount(self) -> int:
        return self._out(("nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"), ctypes.c_uint)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> ctypes.c_void_p:
        handle = ctypes.c_void_p()
        names = ("nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex")
        self._call(names, ctypes.c_uint(index), ctypes.byref(handle))
        return handle

    def nvmlDeviceGetName(self, h: ctypes.c_void_p) -> str:
        return self._string("nvmlDeviceGetName", h)

    def nvmlDeviceGetUUID(self, h: ctypes.c_void_p) -> str:
        return self._string("nvmlDeviceGetUUID", h)

    def nvmlDeviceGetPciInfo(self, h: ctypes.c_void_p) -> SimpleNamespace:
        info = PciInfo()
        self._call("nvmlDeviceGetPciInfo_v3", h, ctypes.byref(info))
        fields = {name: getattr(info, name) for name, _ in PciInfo._fields_}
        fields["busId"] = info.busId.decode("ascii", "replace")
        fields["busIdLegacy"] = info.busIdLegacy.decode("ascii", "replace")
        return SimpleNamespace(**fields)

    def nvmlDeviceGetMemoryInfo(self, h: ctypes.c_void_p) -> Memory:
        memory = Memory()
        self._call("nvmlDeviceGetMemoryInfo", h, ctypes.byref(memory))
        return memory

    def nvmlDeviceGetUtilizationRates(self, h: ctypes.c_void_p) -> Utilization:
        rates = Utilization()
        self._call("nvmlDeviceGetUtilizationRates", h, ctypes.byref(rates))
        return rates

    def nvmlDeviceGetCudaComputeCapability(self, h: ctypes.c_void_p) -> Tuple[int, int]:
        return self._outs("nvmlDeviceGetCudaComputeCapability", ctypes.c_int, 2, h)  # type: ignore

    def nvmlDeviceGetEccMode(self, h: ctypes.c_void_p) -> Tuple[int, int]:
        return self._outs("nvmlDeviceGetEccMode", ctypes.c_int, 2, h)  # type: ignore

    def nvmlDeviceGetTotalEccErrors(self, h: ctypes.c_void_p, error_type: int, counter: int) -> int:
        args = (h, ctypes.c_int(error_type), ctypes.c_int(counter))
        return self._out("nvmlDeviceGetTotalEccErrors", ctypes.c_ulonglong, *args)

    def nvmlDeviceGetRetiredPages(self, h: ctypes.c_void_p, cause: int) -> List[int]:
        """Addresses of pages retired for ``cause``: a sizing call, then a filled buffer."""
        fn = self._symbol("nvmlDeviceGetRetiredPages")
        count = ctypes.c_uint(0)
        ret = fn(h, ctypes.c_int(cause), ctypes.byref(count), None)
        for _ in range(_GROW_TRIES):
            if ret == NVML_SUCCESS and count.value == 0:
                return []
            if ret not in (NVML_SUCCESS, NVML_ERROR_INSUFFICIENT_SIZE):
                break
            count.value = count.value * 2 + 5  # room for pages retired between the calls
            pages = (ctypes.c_ulonglong * count.value)()
            ret = fn(h, ctypes.c_int(cause), ctypes.byref(count), pages)
            if ret == NVML_SUCCESS:
                return [int(a) for a in pages[: count.value]]
        raise self._error(ret)

    def nvmlDeviceGetRemappedRows(self, h: ctypes.c_void_p) -> Tuple[int, int, int, int]:
        """``(corrRows, uncRows, isPending, failureOccurred)``."""
        return self._outs("nvmlDeviceGetRemappedRows", ctypes.c_uint, 4, h)  # type: ignore

    def nvmlDeviceGetTemperature(self, h: ctypes.c_void_p, sensor: int) -> int:
        return self._out("nvmlDeviceGetTemperature", ctypes.c_uint, h, ctypes.c_int(sensor))

    def nvmlDeviceGetMigMode(self, h: ctypes.c_void_p) -> Tuple[int, int]:
        return self._outs("nvmlDeviceGetMigMode", ctypes.c_uint, 2, h)  # type: ignore

    def nvmlDeviceGetNvLinkState(self, h: ctypes.c_void_p, link: int) -> int:
        return self._out("nvmlDeviceGetNvLinkState", ctypes.c_int, h, ctypes.c_uint(link))

    # Queries of one device handle with one integer output, as pynvml returns them.
    nvmlDeviceGetRetiredPagesPendingStatus = _Scalar(ctypes.c_int)
    nvmlDeviceGetPowerManagementLimit = _Scalar(ctypes.c_uint)  # milliwatts
    nvmlDeviceGetCurrentClocksEventReasons = _Scalar(ctypes.c_ulonglong)
    nvmlDeviceGetCurrentClocksThrottleReasons = _Scalar(ctypes.c_ulonglong)
    nvmlDeviceGetPersistenceMode = _Scalar(ctypes.c_int)
    nvmlDeviceGetCurrPcieLinkGeneration = _Scalar(ctypes.c_uint)
    nvmlDeviceGetMaxPcieLinkGeneration = _Scalar(ctypes.c_uint)
    nvmlDeviceGetCurrPcieLinkWidth = _Scalar(ctypes.c_uint)
    nvmlDeviceGetMaxPcieLinkWidth = _Scalar(ctypes.c_uint)

    def nvmlDeviceGetComputeRunningProcesses(self, h: ctypes.c_void_p) -> List[SimpleNamespace]:
        """Compute processes with ``.pid`` and ``.usedGpuMemory`` (None when NVML has no figure)."""
        found = [(getattr(self._lib, n, None), s) for n, s in _PROCESS_ENTRY_POINTS]
        fn, struct = next(((f, s) for f, s in found if f is not None), (None, None))
        if fn is None:
            self._symbol(*(n for n, _ in _PROCESS_ENTRY_POINTS))  # raises FUNCTION_NOT_FOUND
        count = ctypes.c_uint(0)
        ret = fn(h, ctypes.byref(count), None)
        for _ in range(_GROW_TRIES):
            if ret == NVML_SUCCESS:
                return []  # the sizing call succeeds only when nothing is running
            if ret != NVML_ERROR_INSUFFICIENT_SIZE:
                break
            count.value = count.value * 2 + 5  # room for processes started between the calls
            infos = (struct * count.value)()
            ret = fn(h, ctypes.byref(count), infos)
            if ret == NVML_SUCCESS:
                return [_process(infos[i]) for i in range(count.value)]
        raise self._error(ret)


def _process(info: Any) -> SimpleNamespace:
    used = info.usedGpuMemory
    return SimpleNamespace(
        pid=int(info.pid),
        usedGpuMemory=None if used == NVML_VALUE_NOT_AVAILABLE_ULL else int(used),
        gpuInstanceId=getattr(info, "gpuInstanceId", None),
        computeInstanceId=getattr(info, "computeInstanceId", None),
    )


def load() -> Nvml:
    """Open libnvidia-ml; OSError naming every file tried when the driver library is absent."""
    errors = []
    for name in LIBRARY_NAMES:
        try:
            return Nvml(ctypes.CDLL(name), name)
        except OSError as exc:
            errors.append("{} ({})".format(name, exc))
    raise OSError(
        "NVIDIA Management Library not found: is the NVIDIA driver installed and visible to "
        "this process? Tried " + "; ".join(errors)
    )
