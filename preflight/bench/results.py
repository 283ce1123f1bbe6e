"""What a benchmark run measured: facts, kept apart from the code that launches it, so that judging
(``checks/bench.py``), rendering and replay never import paramiko or torch.

Units: bytes, seconds, bytes per second (decimal GB/s = 1e9 B/s in tables, as nccl-tests prints).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SizeResult:
    """One all-reduce message size, as nccl-tests reports it (time averaged over ranks)."""

    bytes: int
    count: int
    iters: int
    seconds_avg: float
    seconds_max: float
    algbw: float  # bytes / seconds_avg
    busbw: float  # algbw * 2(n-1)/n
    wrong: int  # elements with a wrong sum, over all ranks


@dataclass(frozen=True)
class PairResult:
    """An all-reduce between the ranks of two nodes only."""

    nodes: list[str]
    bytes: int
    seconds: float
    ranks: int
    busbw: float


@dataclass(frozen=True)
class MemoryResult:
    node: str
    device: str  # "gpu0" ... or "host"
    name: str | None = None
    free_bytes: int | None = None
    total_bytes: int | None = None
    target_bytes: int | None = None
    usable_bytes: int | None = None
    mismatched_chunks: int | None = None
    allocation_error: str | None = None
    copy_bytes: int | None = None
    d2d_bps: float | None = None
    h2d_bps: float | None = None
    d2h_bps: float | None = None
    host_bps: float | None = None


@dataclass(frozen=True)
class StageProblem:
    """A stage that failed (an error a rank reported) or hung (its deadline passed)."""

    stage: str  # start, import, rendezvous, first, sweep, pairwise, memory
    kind: str  # "error", "hang", or "not-run" (known before launching: torch missing, port blocked)
    nodes: list[str]
    ranks: list[int]
    message: str
    seconds: float


@dataclass(frozen=True)
class Expectation:
    value: float  # bytes/s
    source: str
    note: str = ""


@dataclass
class BenchResults:
    backend: str
    world_size: int
    nodes: list[str]
    ranks_per_node: dict[str, int]
    master_addr: str
    master_port: int
    sizes: list[SizeResult] = field(default_factory=list)
    pairs: list[PairResult] = field(default_factory=list)
    memory: list[MemoryResult] = field(default_factory=list)
    problems: list[StageProblem] = field(default_factory=list)
    nccl_lines: dict[str, list[str]] = field(default_factory=dict)  # node -> NCCL debug lines (capped)
    ib_nodes: list[str] = field(default_factory=list)  # nodes with active InfiniBand/RoCE ports
    versions: dict[str, str] = field(default_factory=dict)  # node -> "torch X, NCCL Y"
    gpu_names: dict[str, str] = field(default_factory=dict)  # node -> GPU name
    expected_busbw: Expectation | None = None
    expected_missing: str = ""  # why there is no expectation, when there is none
    expected_fraction: float = 0.8
    straggler_fraction: float = 0.6
    stage_seconds: dict[str, float] = field(default_factory=dict)  # stage -> when the last rank left it
    seconds: float = 0.0
    killed: list[str] = field(default_factory=list)  # nodes whose ranks were killed at the end

    @property
    def completed(self) -> bool:
        return not self.problems and bool(self.sizes)

    def largest(self) -> SizeResult | None:
        return max(self.sizes, key=lambda s: s.bytes) if self.sizes else None
