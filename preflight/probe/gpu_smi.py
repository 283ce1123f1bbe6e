"""GPU facts from the ``nvidia-smi`` command, the last resort when NVML cannot be loaded.

One ``--query-gpu`` CSV call gives the per-GPU fields. Old drivers reject the whole query when
one field is unknown to them (``Field "compute_cap" is not a valid field to query.``, exit 2),
so the rejected field is dropped, recorded in each device's ``unavailable`` map, and the query
is retried; a field with a newer or older name (``clocks_event_reasons`` / the pre-R535
``clocks_throttle_reasons``) is swapped for the other. Values such as ``[N/A]`` or
``[Not Supported]`` become None with that reason. Compute processes, the CUDA version and the
NVLink states come from three further calls, each of which may fail without losing the rest.
Parsing is split into pure functions (text in, values out); ``_Runner`` is the only code that
starts a process. Standard library only, Python 3.8+.
"""

from __future__ import annotations

import os
import re
import subprocess
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .gpu_nvml import throttle_reason_names

TIMEOUT_S = 10
MIB = 1024 * 1024
NVIDIA_SMI = "nvidia-smi"

# Every driver since R450 answers these (nvidia-smi --help-query-gpu); a rejection here is fatal.
BASE_FIELDS = (
    "index", "name", "uuid", "pci.bus_id", "memory.total", "memory.used", "memory.free",
    "driver_version",
)
# Dropped one by one when a driver rejects them.
OPTIONAL_FIELDS = (
    "compute_cap",  # R510+
    "ecc.mode.current", "ecc.errors.uncorrected.volatile.total",
    "retired_pages.single_bit_ecc.count", "retired_pages.double_bit.count",
    "retired_pages.pending",
    "remapped_rows.pending", "remapped_rows.failure",
    "temperature.gpu", "power.limit", "utilization.gpu",
    "clocks_event_reasons.active",  # R535+; older drivers call it clocks_throttle_reasons
    "persistence_mode", "mig.mode.current",
    "pcie.link.gen.current", "pcie.link.gen.max", "pcie.link.width.current",
    "pcie.link.width.max",
)
# A rejected field is replaced by its other name, once.
ALTERNATIVE_FIELDS = {"clocks_event_reasons.active": "clocks_throttle_reasons.active"}
CLOCK_FIELDS = ("clocks_event_reasons.active", "clocks_throttle_reasons.active")
APPS_FIELDS = ("gpu_uuid", "pid", "process_name", "used_memory")

# CSV field -> GpuDevice key it feeds, for the reasons recorded in ``unavailable``.
DEVICE_KEYS = {
    "name": "name", "uuid": "uuid", "pci.bus_id": "pci_bus_id",
    "memory.total": "memory_total_bytes", "memory.used": "memory_used_bytes",
    "memory.free": "memory_free_bytes", "compute_cap": "compute_capability",
    "ecc.mode.current": "ecc_enabled",
    "ecc.errors.uncorrected.volatile.total": "ecc_uncorrected_volatile",
    "retired_pages.single_bit_ecc.count": "retired_pages",
    "retired_pages.double_bit.count": "retired_pages",
    "retired_pages.pending": "retired_pages_pending",
    "remapped_rows.pending": "row_remap_pending", "remapped_rows.failure": "row_remap_failed",
    "temperature.gpu": "temperature_c", "power.limit": "power_limit_w",
    "utilization.gpu": "utilization_percent",
    "clocks_event_reasons.active": "throttle_reasons",
    "clocks_throttle_reasons.active": "throttle_reasons",
    "persistence_mode": "persistence_mode", "mig.mode.current": "mig_enabled",
    "pcie.link.gen.current": "pcie_gen_current", "pcie.link.gen.max": "pcie_gen_max",
    "pcie.link.width.current": "pcie_width_current", "pcie.link.width.max": "pcie_width_max",
}

_REJECTED = re.compile(r'Field "([^"]+)" is not a valid field to query')
_CUDA = re.compile(r"CUDA Version\s*:\s*([0-9]+\.[0-9]+)")
_NUMBER = re.compile(r"^\s*(-?[0-9]+(?:\.[0-9]+)?)(?:\s*[A-Za-z%/]+)?\s*$")
_TRUE = {"yes", "enabled", "on", "true", "1", "active"}
_FALSE = {"no", "disabled", "off", "false", "0", "not active"}

# (returncode, stdout, stderr) of one nvidia-smi call
RunResult = Tuple[int, str, str]
Run = Callable[[Sequence[str]], RunResult]


# -- pure parsing ---------------------------------------------------------------------------


def rejected_field(text: str) -> Optional[str]:
    """The field an old nvidia-smi refused, from its message.

    >>> rejected_field('Field "compute_cap" is not a valid field to query.')
    'compute_cap'
    """
    match = _REJECTED.search(text)
    return match.group(1) if match else None


def missing_reason(raw: str) -> Optional[str]:
    """Why a CSV value is absent (``[N/A]``, ``[Not Supported]``, ``N/A``...), else None.

    >>> missing_reason("[Not Supported]"), missing_reason("N/A"), missing_reason("81920")
    ('Not Supported', 'N/A', None)
    """
    value = raw.strip()
    if not value:
        return "empty value"
    if value.startswith("[") and value.endswith("]"):
        return value[1:-1].strip() or "empty value"
    if value.upper() in ("N/A", "NOT SUPPORTED"):
        return value
    return None


def number(raw: str) -> float:
    """A CSV number with or without its unit (``81920``, ``81920 MiB``, ``250.00 W``, ``0 %``)."""
    match = _NUMBER.match(raw)
    if not match:
        raise ValueError("not a number: {!r}".format(raw))
    return float(match.group(1))


def flag(raw: str) -> bool:
    """``Enabled``/``Disabled``, ``Yes``/``No`` and the like as a bool."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("not a yes/no value: {!r}".format(raw))


def parse_csv(text: str, fields: Sequence[str]) -> List[Dict[str, str]]:
    """``--format=csv`` lines as dicts keyed by the queried field names.

    A header line (present without ``noheader``) is skipped. Commas inside a GPU name, the one
    free-text column, are kept by joining the surplus cells back into ``name``.
    """
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cells = [cell.strip() for cell in line.split(",")]
        if cells[0].split(" [")[0] == fields[0]:
            continue
        surplus = len(cells) - len(fields)
        if surplus > 0 and "name" in fields:
            at = list(fields).index("name")
            cells[at : at + surplus + 1] = [", ".join(cells[at : at + surplus + 1])]
        if len(cells) != len(fields):
            raise ValueError(
                "nvidia-smi CSV line has {} values for {} fields: {!r}".format(
                    len(cells), len(fields), line
                )
            )
        rows.append(dict(zip(fields, cells)))
    return rows


def parse_compute_apps(text: str) -> Dict[str, List[dict]]:
    """``--query-compute-apps=gpu_uuid,pid,process_name,used_memory`` as processes per GPU UUID."""
    by_gpu: Dict[str, List[dict]] = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) < len(APPS_FIELDS) or cells[0] == APPS_FIELDS[0]:
            continue
        uuid, pid, used = cells[0], cells[1], cells[-1]
        name = ", ".join(cells[2:-1])  # a process path may itself hold commas
        by_gpu.setdefault(uuid, []).append(
            {
                "pid": int(pid),
                "name": None if missing_reason(name) else os.path.basename(name),
                "used_bytes": None if missing_reason(used) else int(number(used) * MIB),
            }
        )
    return by_gpu


def parse_cuda_version(text: str) -> Optional[str]:
    """``CUDA Version: 12.4`` from the ``nvidia-smi`` banner, or the ``-q`` report's line.

    >>> parse_cuda_version("| NVIDIA-SMI 535.86.10  Driver Version: 535.86.10  CUDA Version: 12.2")
    '12.2'
    """
    match = _CUDA.search(text)
    return match.group(1) if match else None


def parse_nvlink_status(text: str) -> Dict[int, Tuple[int, int]]:
    """``nvidia-smi nvlink -s`` as ``{gpu index: (links up, links down)}``.

    A link reads ``Link 3: <inactive>`` when down and ``Link 0: 25.781 GB/s`` when up; a GPU
    without NVLink lists no links and is left out.
    """
    links: Dict[int, List[bool]] = {}
    gpu = None
    for line in text.splitlines():
        head = re.match(r"^GPU (\d+):", line)
        if head:
            gpu = int(head.group(1))
            continue
        link = re.match(r"^\s+Link \d+:\s*(.*)$", line)
        if link and gpu is not None:
            state = link.group(1).strip().lower()
            links.setdefault(gpu, []).append(bool(state) and "inactive" not in state)
    return {g: (sum(s), len(s) - sum(s)) for g, s in links.items()}


def device_from_row(
    row: Dict[str, str],
    rejected: Dict[str, str],
    processes: Optional[List[dict]] = None,
    processes_reason: Optional[str] = None,
    nvlink: Optional[Tuple[int, int]] = None,
    nvlink_reason: Optional[str] = None,
) -> dict:
    """One GpuDevice dict from a parsed CSV row; every None value gets its reason."""
    unavailable: Dict[str, str] = {}

    def get(field: str, convert: Callable[[str], object]) -> object:
        key = DEVICE_KEYS[field]
        if field not in row:
            reason = rejected.get(field, "{} was not queried".format(field))
            unavailable.setdefault(key, reason)
            return None
        missing = missing_reason(row[field])
        if missing:
            unavailable.setdefault(key, "nvidia-smi {}: {}".format(field, missing))
            return None
        try:
            return convert(row[field])
        except ValueError as exc:
            unavailable.setdefault(key, "nvidia-smi {}: {}".format(field, exc))
            return None

    def as_int(raw: str) -> int:
        return int(number(raw))

    def mib(raw: str) -> int:
        return int(number(raw) * MIB)

    ecc = get("ecc.mode.current", flag)
    uncorrected = get("ecc.errors.uncorrected.volatile.total", as_int)
    if ecc is False:
        uncorrected = None
        unavailable["ecc_uncorrected_volatile"] = "ECC is disabled on this GPU"
    sbe = get("retired_pages.single_bit_ecc.count", as_int)
    dbe = get("retired_pages.double_bit.count", as_int)
    clock_field = next((f for f in CLOCK_FIELDS if f in row), CLOCK_FIELDS[0])
    mask = get(clock_field, lambda raw: int(raw.strip(), 16))
    if nvlink is None:
        reason = nvlink_reason or "no NVLink links reported"
        unavailable["nvlink_up"] = unavailable["nvlink_down"] = reason
    if processes is None:
        unavailable["processes"] = processes_reason or "nvidia-smi compute-apps query failed"
    return {
        "index": int(row["index"]),
        "name": get("name", str),
        "uuid": get("uuid", str),
        "pci_bus_id": get("pci.bus_id", str),
        "memory_total_bytes": get("memory.total", mib),
        "memory_used_bytes": get("memory.used", mib),
        "memory_free_bytes": get("memory.free", mib),
        "compute_capability": get("compute_cap", str),
        "ecc_enabled": ecc,
        "ecc_uncorrected_volatile": uncorrected,
        "retired_pages": sbe + dbe if sbe is not None and dbe is not None else None,  # type: ignore
        "retired_pages_pending": get("retired_pages.pending", flag),
        "row_remap_pending": get("remapped_rows.pending", flag),
        "row_remap_failed": get("remapped_rows.failure", flag),
        "temperature_c": get("temperature.gpu", as_int),
        "power_limit_w": get("power.limit", number),
        "utilization_percent": get("utilization.gpu", as_int),
        "throttle_reasons": None if mask is None else throttle_reason_names(mask),  # type: ignore
        "persistence_mode": get("persistence_mode", flag),
        "mig_enabled": get("mig.mode.current", flag),
        "pcie_gen_current": get("pcie.link.gen.current", as_int),
        "pcie_gen_max": get("pcie.link.gen.max", as_int),
        "pcie_width_current": get("pcie.link.width.current", as_int),
        "pcie_width_max": get("pcie.link.width.max", as_int),
        "processes": processes,
        "nvlink_up": nvlink[0] if nvlink is not None else None,
        "nvlink_down": nvlink[1] if nvlink is not None else None,
        "unavailable": unavailable,
    }


# -- running nvidia-smi ---------------------------------------------------------------------


class _Runner:
    """Runs nvidia-smi with a timeout; after one timeout the rest are skipped, not waited on."""

    def __init__(self) -> None:
        self.timed_out: Optional[str] = None

    def __call__(self, args: Sequence[str]) -> RunResult:
        if self.timed_out:
            raise RuntimeError("skipped: an earlier call timed out ({})".format(self.timed_out))
        try:
            done = subprocess.run(
                [NVIDIA_SMI] + list(args), capture_output=True, text=True, timeout=TIMEOUT_S
            )
        except FileNotFoundError:
            raise FileNotFoundError("nvidia-smi not found on PATH") from None
        except subprocess.TimeoutExpired:
            self.timed_out = "nvidia-smi {} took over {} s".format(" ".join(args), TIMEOUT_S)
            raise RuntimeError(self.timed_out) from None
        return done.returncode, done.stdout, done.stderr


def _first_line(*texts: str) -> str:
    for text in texts:
        for line in text.splitlines():
            if line.strip():
                return line.strip()
    return "no output"


def query_gpus(run: Run) -> Tuple[List[Dict[str, str]], Dict[str, str]]:
    """Rows of ``--query-gpu`` and ``{field: reason}`` for the fields this driver rejected."""
    optional = list(OPTIONAL_FIELDS)
    rejected: Dict[str, str] = {}
    for _ in range(len(OPTIONAL_FIELDS) + len(ALTERNATIVE_FIELDS) + 1):
        fields = list(BASE_FIELDS) + optional
        rc, out, err = run(["--query-gpu=" + ",".join(fields), "--format=csv,noheader,nounits"])
        bad = rejected_field(out + "\n" + err)
        if bad is None:
            if rc != 0:
                raise RuntimeError(
                    "nvidia-smi --query-gpu failed (exit {}): {}".format(rc, _first_line(out, err))
                )
            return parse_csv(out, fields), rejected
        if bad not in optional:
            reason = "nvidia-smi rejected the field {!r}: {}".format(bad, _first_line(out, err))
            raise RuntimeError(reason)
        optional.remove(bad)
        rejected[bad] = "this nvidia-smi does not know the field {!r}".format(bad)
        alternative = ALTERNATIVE_FIELDS.get(bad)
        if alternative and alternative not in rejected:
            optional.append(alternative)
    raise RuntimeError("nvidia-smi kept rejecting query fields: {}".format(sorted(rejected)))


def _optional(
    run: Run, args: Sequence[str], any_exit: bool = False
) -> Tuple[Optional[str], Optional[str]]:
    """(stdout, None) from a call that may fail, or (None, why it failed)."""
    try:
        rc, out, err = run(args)
    except Exception as exc:  # noqa: BLE001 - a side query never sinks the whole source
        return None, "{}: {}".format(type(exc).__name__, exc)
    if rc != 0 and not any_exit:
        return None, "nvidia-smi {} exited {}: {}".format(" ".join(args), rc, _first_line(out, err))
    return out, None


def read(run: Optional[Run] = None) -> dict:
    """GpuInfo dict from nvidia-smi; raises when nvidia-smi is missing or its GPU query fails."""
    run = run or _Runner()
    rows, rejected = query_gpus(run)
    apps_args = ["--query-compute-apps=" + ",".join(APPS_FIELDS), "--format=csv,noheader,nounits"]
    apps_text, apps_reason = _optional(run, apps_args)
    apps = parse_compute_apps(apps_text) if apps_text is not None else None
    banner, cuda_reason = _optional(run, [], any_exit=True)  # banner precedes errors
    cuda = parse_cuda_version(banner) if banner is not None else None
    links_text, links_reason = _optional(run, ["nvlink", "-s"])
    links = parse_nvlink_status(links_text) if links_text is not None else {}
    devices = [
        device_from_row(
            row,
            rejected,
            processes=apps.get(row.get("uuid", ""), []) if apps is not None else None,
            processes_reason=apps_reason,
            nvlink=links.get(int(row["index"])),
            nvlink_reason=links_reason,
        )
        for row in rows
    ]
    unavailable = {"nvml_version": "not reported by nvidia-smi"}
    if cuda is None:
        unavailable["cuda_driver_version"] = cuda_reason or "no 'CUDA Version' in nvidia-smi output"
    driver = rows[0].get("driver_version") if rows else None
    if driver is None or missing_reason(driver):
        driver = None
        unavailable["driver_version"] = "nvidia-smi listed no GPU" if not rows else "not reported"
    return {
        "source": "nvidia-smi",
        "driver_version": driver,
        "cuda_driver_version": cuda,
        "nvml_version": None,
        "devices": devices,
        "unavailable": unavailable,
    }
