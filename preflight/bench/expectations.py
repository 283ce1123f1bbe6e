"""What a healthy system should measure, from ``compat_matrix/bench.toml`` (each figure sourced).

Four kinds of expectation, all in bytes per second (decimal, as NVIDIA and nccl-tests quote them):

* GPU memory bandwidth: the datasheet peak per GPU model, the ceiling a device-to-device copy
  is compared with.
* Single-node all-reduce busbw per GPU model x GPUs per node x interconnect, at the message size
  the figure was measured at (Azure's node-health-check floors: a node below them fails there).
* PCIe per-direction line rate from generation and width: GT/s x lanes x encoding / 8
  (8b/10b for gen 1-2, 128b/130b for gen 3-5, 1b/1b Flit for gen 6). Gen 4 x16 is 31.5 GB/s,
  gen 5 x16 63 GB/s; a downtrained link shows here.
* NIC bytes per second from the link speed the kernel reports in Mb/s.

``bench.toml`` is read only when a benchmark asks (not at import, not with the rest of the
matrix). A ``--matrix`` folder without its own ``bench.toml`` uses the shipped one: the other
matrix files describe software compatibility, and a replacement folder made for them should
not silently switch the benchmark verdicts off; ``Expectations.origin`` says which file was read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preflight.compat import FILES, Matrix, load_matrix, shipped_folder
from preflight.errors import InputError
from preflight.toml_text import TomlError, parse_toml

BENCH_FILE = "bench.toml"
INTERCONNECTS = ("nvlink", "pcie")


@dataclass(frozen=True)
class Expected:
    value: float  # bytes/s
    source: str
    note: str = ""  # e.g. "measured at 16 GiB; smaller messages reach less"
    at_bytes: int | None = None


@dataclass(frozen=True)
class _AllReduce:
    gpu: str
    gpus_per_node: int
    interconnect: str
    expected: Expected


@dataclass(frozen=True)
class _Pcie:
    gt_per_s: float
    encoding: tuple[int, int]
    source: str
    note: str


@dataclass
class Expectations:
    """The parsed ``bench.toml``; ``origin`` is the file it came from."""

    origin: str
    memory: dict[str, Expected]
    allreduce: list[_AllReduce]
    pcie: dict[int, _Pcie]
    nic_source: str
    nic_note: str
    matrix: Matrix = field(repr=False)

    def _model(self, gpu_name: str) -> str | None:
        model = self.matrix.gpu(gpu_name)
        return model.name if model else None

    def memory_bandwidth(self, gpu_name: str) -> Expected | None:
        """Datasheet memory bandwidth of an NVML name (``NVIDIA H200``) or a gpus.toml name."""
        model = self._model(gpu_name)
        return self.memory.get(model) if model else None

    def _allreduce_candidates(self, gpu_name: str, gpus_per_node: int, nvlink: bool) -> list[_AllReduce]:
        model = self._model(gpu_name)
        interconnect = "nvlink" if nvlink else "pcie"
        return [e for e in self.allreduce
                if e.gpu == model and e.gpus_per_node == gpus_per_node and e.interconnect == interconnect]

    def allreduce_busbw(self, gpu_name: str, gpus_per_node: int, nvlink: bool, size_bytes: int) -> Expected | None:
        """The busbw a healthy node reaches at ``size_bytes``, or None.

        busbw grows with the message size until it plateaus (nccl-tests' own tables; a figure
        measured at 16 GiB says nothing about 1 MiB), so only figures measured at a size no
        larger than ``size_bytes`` are used, the one measured closest to it. A benchmark that
        stops below every sourced size gets None; ``why_no_allreduce`` says why.
        """
        usable = [e for e in self._allreduce_candidates(gpu_name, gpus_per_node, nvlink)
                  if e.expected.at_bytes is not None and e.expected.at_bytes <= size_bytes]
        if not usable:
            return None
        return max(usable, key=lambda e: e.expected.at_bytes or 0).expected

    def why_no_allreduce(self, gpu_name: str, gpus_per_node: int, nvlink: bool, size_bytes: int) -> str:
        """One line on why ``allreduce_busbw`` gave None (empty when it gives a figure)."""
        if self.allreduce_busbw(gpu_name, gpus_per_node, nvlink, size_bytes):
            return ""
        model = self._model(gpu_name)
        if model is None:
            return f"GPU {gpu_name!r} is not in compat_matrix/gpus.toml"
        system = f"{gpus_per_node}x {model} over {'NVLink' if nvlink else 'PCIe'}"
        found = self._allreduce_candidates(gpu_name, gpus_per_node, nvlink)
        if not found:
            return f"no sourced all-reduce figure for {system}"
        smallest = min(e.expected.at_bytes or 0 for e in found)
        return (f"the sourced figure for {system} was measured at {smallest} bytes; "
                f"run the benchmark up to at least that size to compare")

    def pcie_bandwidth(self, gen: int, width: int) -> Expected | None:
        """Theoretical per-direction bandwidth of a PCIe link; None for an unknown generation
        or a width that is not a positive lane count."""
        entry = self.pcie.get(gen)
        if entry is None or width <= 0:
            return None
        payload, line = entry.encoding
        value = entry.gt_per_s * 1e9 * width * payload / line / 8
        return Expected(value, entry.source, entry.note or f"gen{gen} x{width} line rate per direction")

    def nic_bandwidth(self, speed_mbps: int) -> Expected:
        """Bytes per second of a link that reports ``speed_mbps`` (``/sys/class/net/*/speed``;
        an InfiniBand rate of 400 Gb/s is 400000). Raises ValueError for a speed of 0 or less,
        which the kernel reports for a link that is down or of unknown speed."""
        if speed_mbps <= 0:
            raise ValueError(f"link speed {speed_mbps} Mb/s: the link is down or its speed is unknown")
        return Expected(speed_mbps * 1e6 / 8, self.nic_source, self.nic_note)


def load_expectations(folder: Path | None = None) -> Expectations:
    """``bench.toml`` from ``folder`` (a ``--matrix`` replacement) when it has one, else the shipped
    file; GPU names resolve through the matrix of the same folder when it is complete."""
    path = folder / BENCH_FILE if folder is not None else None
    if path is None or not path.is_file():
        path = shipped_folder() / BENCH_FILE
    if folder is not None and all((folder / name).is_file() for name in FILES):
        matrix = load_matrix(folder)
    else:
        matrix = load_matrix()
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", source=where) from None
    try:
        data = parse_toml(text)
    except TomlError as exc:
        raise InputError(f"invalid TOML: {exc}", source=where, line=exc.line) from None
    return _parse(data, text, where, matrix)


def _header_lines(text: str, table: str) -> list[int]:
    """Line numbers of each ``[[table]]`` header, so an error names the entry's line."""
    pattern = re.compile(rf"^\s*\[\[\s*{re.escape(table)}\s*\]\]")
    return [n for n, line in enumerate(text.splitlines(), 1) if pattern.match(line)]


def _parse(data: dict[str, Any], text: str, where: str, matrix: Matrix) -> Expectations:
    known = {g.name for g in matrix.gpus}

    def entries(table: str) -> list[tuple[dict[str, Any], int | None]]:
        rows = data.get(table, [])
        if not isinstance(rows, list):
            raise InputError(f"[[{table}]] must be an array of tables", source=where)
        lines = _header_lines(text, table)
        return [(row, lines[i] if i < len(lines) else None) for i, row in enumerate(rows)]

    def fail(message: str, line: int | None) -> InputError:
        return InputError(message, source=where, line=line)

    def sourced(row: dict[str, Any], line: int | None) -> tuple[str, str]:
        if not row.get("source") or not row.get("verified"):
            raise fail("entry without source or verified date", line)
        return str(row["source"]), str(row.get("note", ""))

    def positive(row: dict[str, Any], key: str, line: int | None) -> float:
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise fail(f"{key} must be a positive number, got {value!r}", line)
        return float(value)

    def gpu(row: dict[str, Any], line: int | None) -> str:
        name = row.get("gpu")
        if name not in known:
            raise fail(f"gpu {name!r} is not a name in gpus.toml", line)
        return str(name)

    memory: dict[str, Expected] = {}
    for row, line in entries("memory_bandwidth"):
        source, note = sourced(row, line)
        memory[gpu(row, line)] = Expected(positive(row, "bytes_per_s", line), source, note)

    allreduce: list[_AllReduce] = []
    for row, line in entries("allreduce"):
        source, note = sourced(row, line)
        interconnect = row.get("interconnect")
        if interconnect not in INTERCONNECTS:
            raise fail(f"interconnect must be one of {', '.join(INTERCONNECTS)}, got {interconnect!r}", line)
        count = int(positive(row, "gpus_per_node", line))
        at_bytes = int(positive(row, "at_bytes", line))
        expected = Expected(positive(row, "busbw_bytes_per_s", line), source, note, at_bytes)
        allreduce.append(_AllReduce(gpu(row, line), count, str(interconnect), expected))

    pcie: dict[int, _Pcie] = {}
    for row, line in entries("pcie"):
        source, note = sourced(row, line)
        encoding = row.get("encoding")
        if (not isinstance(encoding, list) or len(encoding) != 2
                or not all(isinstance(n, int) and n > 0 for n in encoding) or encoding[0] > encoding[1]):
            raise fail(f"encoding must be [payload bits, line bits], got {encoding!r}", line)
        gen = int(positive(row, "gen", line))
        pcie[gen] = _Pcie(positive(row, "gt_per_s", line), (encoding[0], encoding[1]), source, note)

    nic = data.get("nic")
    if not isinstance(nic, dict):
        raise InputError("missing [nic] table", source=where)
    nic_line = next((n for n, text_line in enumerate(text.splitlines(), 1)
                     if text_line.strip() == "[nic]"), None)
    nic_source, nic_note = sourced(nic, nic_line)
    return Expectations(where, memory, allreduce, pcie, nic_source, nic_note, matrix)
