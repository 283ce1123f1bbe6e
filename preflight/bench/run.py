"""The benchmark controller: lay out the ranks, start every node's launcher, watch each rank's
stage against its deadline, gather the measurements, and stop everything at the end.

Stages and their deadlines (a rank that stays in one longer is reported as hung there, and then
every rank on every node is killed): ``start`` (the launcher and Python start), ``import``
(torch imports), ``rendezvous`` (``init_process_group``: the TCP store at MASTER_ADDR:PORT),
``first`` (the first collective: the backend's own connections between ranks), ``sweep``,
``pairwise``, ``memory``. An error in one rank is waited on for a few seconds (the others usually
fail too, and their messages help), then everything is stopped.
"""

from __future__ import annotations

import json
import queue
import time
from collections import defaultdict
from dataclasses import dataclass, field

from preflight.bench.remote.rank import busbw_factor
from preflight.bench.results import (
    BenchResults,
    Expectation,
    MemoryResult,
    PairResult,
    SizeResult,
    StageProblem,
)
from preflight.bench.transport import Launch, remote_source

MiB = 1 << 20
GiB = 1 << 30
GPU_SIZES = tuple(MiB * 4**i for i in range(6))  # 1 MiB ... 1 GiB
CPU_SIZES = tuple(MiB * 4**i for i in range(4))  # 1 MiB ... 64 MiB
STAGES = ("start", "import", "rendezvous", "first", "sweep", "pairwise", "memory", "done")
ERROR_GRACE_S = 3.0
NCCL_LINES_KEPT = 200


@dataclass(frozen=True)
class BenchOptions:
    backend: str = "auto"  # auto (nccl with GPUs, else gloo), nccl, gloo
    sizes: tuple[int, ...] = ()  # empty: GPU_SIZES or CPU_SIZES
    seconds_per_size: float = 0.5
    min_iters: int = 3
    max_iters: int = 200
    pairwise: str = "auto"  # auto (when the cluster busbw is low), always, never
    memory: bool = True
    memory_fraction: float = 0.9
    copy_bytes: int = 256 * MiB
    copy_iters: int = 10
    pair_bytes: int = 64 * MiB
    cpu_ranks: int | None = None  # gloo processes per node (default 1 per node without GPUs)
    expected_fraction: float = 0.8
    straggler_fraction: float = 0.6
    timeouts: dict[str, float] = field(default_factory=lambda: {
        "start": 60.0, "import": 120.0, "rendezvous": 60.0, "first": 60.0,
        "sweep": 300.0, "pairwise": 180.0, "memory": 180.0, "done": 30.0,
    })


@dataclass(frozen=True)
class NodePlan:
    name: str
    gpus: int  # ranks that use GPUs on this node (0: gloo on CPU)
    ranks: list[int]


def layout(nodes: list[tuple[str, int]], backend: str, cpu_ranks: int | None) -> tuple[str, list[NodePlan]]:
    """(backend, per-node ranks): one rank per GPU with NCCL, else ``cpu_ranks`` (default 1)
    gloo ranks per node. ``nodes`` is (name, GPU count) in rank order: the master first."""
    if backend == "auto":
        backend = "nccl" if nodes and all(g > 0 for _, g in nodes) and not cpu_ranks else "gloo"
    plans, next_rank = [], 0
    for name, gpus in nodes:
        count = gpus if backend == "nccl" else (cpu_ranks or 1)
        plans.append(NodePlan(name, gpus if backend == "nccl" else 0, list(range(next_rank, next_rank + count))))
        next_rank += count
    return backend, plans


def payloads(
    plans: list[NodePlan], backend: str, options: BenchOptions, master_addr: str, master_port: int,
    expected_busbw: float | None, env_extra: dict[str, str] | None = None,
) -> dict[str, bytes]:
    """The one-line JSON each node's launcher reads: its ranks with their environment, and the
    run's configuration."""
    world = sum(len(p.ranks) for p in plans)
    sizes = list(options.sizes or (GPU_SIZES if backend == "nccl" else CPU_SIZES))
    config = {
        "backend": backend,
        "sizes": sizes,
        "seconds_per_size": options.seconds_per_size,
        "min_iters": options.min_iters,
        "max_iters": options.max_iters,
        "collective_timeout": max(options.timeouts["rendezvous"], options.timeouts["first"]),
        "pairwise": options.pairwise,
        "node_ranks": [p.ranks for p in plans],
        "expected_busbw": expected_busbw,
        "expected_fraction": options.expected_fraction,
        "straggler_fraction": options.straggler_fraction,
        "pair_bytes": min(options.pair_bytes, max(sizes)),
        "memory": options.memory,
        "memory_fraction": options.memory_fraction,
        "copy_bytes": options.copy_bytes,
        "copy_iters": options.copy_iters,
    }
    source = remote_source("rank")
    out = {}
    for plan in plans:
        ranks = []
        for local, rank in enumerate(plan.ranks):
            env = {
                "RANK": rank, "WORLD_SIZE": world, "LOCAL_RANK": local, "LOCAL_WORLD_SIZE": len(plan.ranks),
                "MASTER_ADDR": master_addr, "MASTER_PORT": master_port,
                # the transport in use and the known failures, a few lines per rank
                "NCCL_DEBUG": "INFO", "NCCL_DEBUG_SUBSYS": "INIT,NET",
                **(env_extra or {}),
            }
            if backend == "gloo":
                env.setdefault("OMP_NUM_THREADS", 1)
            ranks.append({"rank": rank, "local_rank": local, "env": env})
        body = {"rank_source": source, "ranks": ranks, "config": dict(config, local_world=len(plan.ranks))}
        out[plan.name] = (json.dumps(body) + "\n").encode("utf-8")
    return out


class _Watch:
    """Every rank's current stage and when it entered it."""

    def __init__(self, plans: list[NodePlan], now: float) -> None:
        self.node_of = {r: p.name for p in plans for r in p.ranks}
        self.stage = {r: ("start", now) for r in self.node_of}
        self.left: dict[str, float] = {}

    def enter(self, rank: int, stage: str, now: float) -> None:
        old = self.stage.get(rank, ("start", now))[0]
        self.left[old] = now
        self.stage[rank] = (stage, now)

    def overdue(self, now: float, timeouts: dict[str, float]) -> tuple[str, list[int], float] | None:
        """The earliest stage in which some rank has been longer than its deadline."""
        late = [(STAGES.index(s), s, r, now - t) for r, (s, t) in self.stage.items()
                if s != "finished" and now - t > timeouts.get(s, 60.0)]
        if not late:
            return None
        _, stage, _, _ = min(late)
        ranks = sorted(r for r, (s, _) in self.stage.items() if s == stage)
        waited = max(w for _, s, _, w in late if s == stage)
        return stage, ranks, waited


HANG_CAUSE = {
    "start": "the launcher did not start (the node's Python or its activation command hangs)",
    "import": "importing torch took too long (a slow shared file system, or a broken install)",
    "rendezvous": "the ranks could not meet at MASTER_ADDR:MASTER_PORT (a firewall, a wrong address, "
                  "or the port taken)",
    "first": "the first collective did not complete: the ranks met, but the backend's own connections "
             "between them did not (a firewall on ephemeral ports, or the wrong network interface)",
    "sweep": "a collective stalled during the sweep (a link went down, or a node is overloaded)",
    "pairwise": "a pairwise test stalled",
    "memory": "the memory benchmark stalled",
    "done": "the ranks did not finish",
}


def run_bench(
    launches: dict[str, Launch],
    plans: list[NodePlan],
    backend: str,
    options: BenchOptions,
    master_addr: str,
    master_port: int,
    expected: Expectation | None = None,
    on_stage=lambda stage: None,  # noqa: ANN001 - progress callback
    env_extra: dict[str, str] | None = None,
) -> BenchResults:
    """Run the benchmark on every node and return what it measured (problems included)."""
    start = time.monotonic()
    results = BenchResults(
        backend=backend, world_size=sum(len(p.ranks) for p in plans), nodes=[p.name for p in plans],
        ranks_per_node={p.name: len(p.ranks) for p in plans}, master_addr=master_addr, master_port=master_port,
        expected_busbw=expected, expected_fraction=options.expected_fraction,
        straggler_fraction=options.straggler_fraction,
    )
    bodies = payloads(plans, backend, options, master_addr, master_port, expected.value if expected else None,
                      env_extra)
    sizes = options.sizes or (GPU_SIZES if backend == "nccl" else CPU_SIZES)
    timeouts = dict(options.timeouts)
    # a sweep over many sizes with a long per-size budget needs longer than the default deadline
    timeouts["sweep"] = max(timeouts["sweep"], len(sizes) * (3 * options.seconds_per_size + 10))
    events: queue.Queue = queue.Queue()
    watch = _Watch(plans, start)
    per_size: dict[int, dict[int, dict]] = defaultdict(dict)
    node_index = [p.name for p in plans]
    finished_nodes: set[str] = set()
    first_problem_at: float | None = None
    reported_stage = "start"
    try:
        for name, launch in launches.items():
            try:
                launch.start(bodies[name], events)
            except Exception as exc:  # noqa: BLE001 - an SSH channel that cannot open is a result
                results.problems.append(StageProblem("start", "error", [name], [], f"cannot start: {exc}", 0.0))
                finished_nodes.add(name)
                first_problem_at = time.monotonic()
        while len(finished_nodes) < len(launches):
            try:
                node, line = events.get(timeout=0.2)
            except queue.Empty:
                node, line = None, None
            now = time.monotonic()
            if node is not None and line is None:
                finished_nodes.add(node)
                if not any(r for r, n in watch.node_of.items() if n == node and watch.stage[r][0] == "finished"):
                    tail = " | ".join(x for x in launches[node].stderr_text().splitlines()[-3:]
                                      if not x.startswith("preflight-bench: pid"))
                    if tail and not any(node in p.nodes for p in results.problems):
                        results.problems.append(StageProblem("start", "error", [node], [],
                                                             f"the launcher failed: {tail}", now - start))
                        first_problem_at = first_problem_at or now
            elif node is not None:
                event = _parse(line)
                if event is not None:
                    problem = _consume(event, node, now - start, watch, results, per_size, node_index, now)
                    if problem and first_problem_at is None:
                        first_problem_at = now
            stages = {s for s, _ in watch.stage.values() if s != "finished"}
            if stages:
                current = min(stages, key=STAGES.index)
                if current != reported_stage:
                    reported_stage = current
                    on_stage(current)
            if first_problem_at is not None and now - first_problem_at > ERROR_GRACE_S:
                break
            late = watch.overdue(now, timeouts)
            if late and first_problem_at is None:
                stage, ranks, waited = late
                nodes = sorted({watch.node_of[r] for r in ranks}, key=node_index.index)
                results.problems.append(StageProblem(
                    stage, "hang", nodes, ranks,
                    f"{stage} did not finish within {timeouts.get(stage, 60.0):.0f} s: {HANG_CAUSE[stage]}",
                    round(waited, 1)))
                break
    finally:
        for name, launch in launches.items():
            if name not in finished_nodes or results.problems:
                results.killed.append(name)
                launch.kill()
        for launch in launches.values():
            launch.close(wait_s=5.0)
    results.sizes = _aggregate(per_size, results.world_size)
    results.stage_seconds = {s: round(t - start, 2) for s, t in sorted(watch.left.items(), key=lambda x: x[1])}
    results.seconds = round(time.monotonic() - start, 2)
    return results


def _parse(line: str) -> dict | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None


def _consume(event: dict, node: str, elapsed: float, watch: _Watch, results: BenchResults,
             per_size: dict, node_index: list[str], now: float) -> bool:
    """Fold one event into the results; True when it reports a problem."""
    kind, rank = event.get("event"), event.get("rank")
    if kind == "stage" and isinstance(rank, int):
        watch.enter(rank, event["stage"], now)
        if event["stage"] == "done":
            watch.enter(rank, "finished", now)
    elif kind == "info":
        bits = [f"torch {event.get('torch')}"] + ([f"NCCL {event['nccl']}"] if event.get("nccl") else [])
        results.versions.setdefault(node, ", ".join(bits))
        if event.get("device"):
            results.gpu_names.setdefault(node, event["device"])
    elif kind == "size" and isinstance(rank, int):
        per_size[int(event["bytes"])][rank] = event
    elif kind == "pair":
        a, b = event["nodes"]
        seconds, ranks = float(event["seconds"]), int(event["ranks"])
        busbw = event["bytes"] / seconds * busbw_factor(ranks) if seconds > 0 else 0.0
        results.pairs.append(PairResult([node_index[a], node_index[b]], int(event["bytes"]), seconds, ranks, busbw))
    elif kind == "memory":
        fields = {k: event.get(k) for k in MemoryResult.__dataclass_fields__ if k not in ("node",)}
        results.memory.append(MemoryResult(node=node, **fields))
    elif kind == "log":
        lines = results.nccl_lines.setdefault(node, [])
        if len(lines) < NCCL_LINES_KEPT:
            lines.append(str(event.get("line", "")))
    elif kind == "error":
        stage = str(event.get("stage", "?"))
        ranks = [rank] if isinstance(rank, int) else []
        same = next((p for p in results.problems if p.kind == "error" and p.stage == stage
                     and p.message == event.get("message")), None)
        if same is not None:
            if node not in same.nodes:
                same.nodes.append(node)
            same.ranks.extend(ranks)
        else:
            results.problems.append(StageProblem(stage, "error", [node], ranks, str(event.get("message")),
                                                 round(elapsed, 1)))
        if isinstance(rank, int):
            watch.enter(rank, "finished", now)
        return True
    elif kind == "exit" and isinstance(rank, int):
        if event.get("rc") not in (0, None) and watch.stage.get(rank, ("",))[0] != "finished":
            tail = " | ".join(event.get("stderr_tail", [])[-3:]) or f"exit status {event.get('rc')}"
            stage = watch.stage.get(rank, ("start", 0))[0]
            results.problems.append(StageProblem(stage, "error", [node], [rank], f"rank {rank} died: {tail}",
                                                 round(elapsed, 1)))
            watch.enter(rank, "finished", now)
            return True
        watch.enter(rank, "finished", now)
    return False


def _aggregate(per_size: dict[int, dict[int, dict]], world: int) -> list[SizeResult]:
    """nccl-tests' numbers per size: time averaged over ranks (and the slowest rank's), algbw and
    busbw from the average, wrong elements summed. Only sizes every rank reported."""
    out = []
    for size in sorted(per_size):
        rows = per_size[size]
        if len(rows) < world:
            continue
        seconds = [float(r["seconds"]) for r in rows.values()]
        avg = sum(seconds) / len(seconds)
        algbw = size / avg if avg > 0 else 0.0
        first = rows[min(rows)]
        out.append(SizeResult(size, int(first["count"]), int(first["iters"]), avg, max(seconds), algbw,
                              algbw * busbw_factor(world), sum(int(r["wrong"]) for r in rows.values())))
    return out
