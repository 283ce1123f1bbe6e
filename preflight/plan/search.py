"""Layout search: every layout the cluster allows, a step-time cost model, the ranking, and the
smallest change that makes a job fit when nothing does.

Search space (memory_formulas.md §5): TP over powers of two up to the GPUs of a node (NVLink-class
links only; Narayanan et al. 2021 takeaway 1), PP over divisors of the node count (pipeline stages
across nodes), data parallelism over the rest with ZeRO stage 0-3 or FSDP hybrid shard (no PP with
ZeRO-2/3: DeepSpeed forbids it), recomputation none / selective / full, micro-batch 1..64
(powers of two) with gradient accumulation making up the global batch, and CPU offload of the
optimizer (ZeRO-1/2/3) or of everything (ZeRO-3).

Cost model, seconds per optimizer step (documented in the README, "Will it fit"):
- compute: tokens x FLOPs per token / (GPUs x achieved FLOP/s). FLOPs per token: 6·N_active for
  full fine-tuning (2N forward, 4N backward; Kaplan et al. 2020, EleutherAI Transformer Math 101),
  4·N + 2·N_trainable when the base is frozen, plus attention 12·L·s·(heads·head_dim)
  (Korthikanti et al. 2022 model-FLOPs term). Full recomputation adds a forward pass (2N +
  4·L·s·heads·head_dim); selective adds the attention forward with eager attention (with
  FlashAttention the scores are recomputed anyway).
- data-parallel traffic per GPU (Rajbhandari et al. 2020 §7): DDP/ZeRO-1 all-reduce the gradients
  once per step, 2·Ψ·(d-1)/d bytes; ZeRO-2 reduce-scatters them every micro-step and all-gathers the
  weights once; ZeRO-3/FSDP all-gather the weights twice and reduce-scatter the gradients every
  micro-step (3Ψ); hybrid shard does that inside a node and all-reduces the shard across nodes.
  Time = bytes / bus bandwidth of the slowest link the group crosses (nccl-tests' busbw).
  Gradient traffic overlaps the backward pass (2/3 of compute) and ZeRO-3 prefetching overlaps the
  whole forward/backward; only the rest is counted.
- tensor-parallel traffic, on the critical path: 8·b·s·h·(t-1)/t elements per layer per
  micro-batch (Narayanan et al. 2021), x1.5 with full recomputation, over the intra-node bus.
- context parallelism (ring attention): every rank receives all K and V of its layers, forward and
  backward, counted with the tensor-parallel traffic.
- pipeline: point-to-point b·s·h forward and backward per micro-batch, plus the 1F1B bubble,
  (p-1)/m of the compute with m micro-batches (Narayanan et al. 2021).
- offload: the gradients to the host and the weights back over PCIe (25 GB/s per GPU assumed),
  every micro-step for offloaded parameters, and the optimizer step on the node's CPU (assumed
  1e9 parameters per second per node; DeepSpeed's CPU Adam, not overlapped with the GPUs).

A layout fits when its peak (``memory.Estimate.total``) leaves at least 5 % of the GPU free for the
allocator's fragmentation (the ZeRO paper saw OOM with over 30 % free in extreme cases, §5.4), and
its offloaded states fit 90 % of the host RAM when that is known.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import ceil

from preflight.plan.memory import Estimate, Layout, ModelMemory, Training, check_layout
from preflight.plan.model import ModelSpec

DEFAULT_INTRA_BW = 150e9  # assumed when neither facts nor flags give it (NVLink class), and said so
DEFAULT_INTER_BW = 25e9  # assumed likewise: 200 Gb/s per node
FREE_FRACTION = 0.05
HOST_FRACTION = 0.9
PCIE_BYTES_PER_S = 25e9
CPU_ADAM_PARAMS_PER_S = 1e9  # an assumption, not a measurement: one node's CPU updating offloaded states
DP_OVERLAP = 2 / 3  # the backward pass's share of compute


@dataclass(frozen=True)
class Cluster:
    """The machines the job runs on; ``sources`` says where each number came from."""

    nodes: int
    gpus_per_node: int
    gpu_memory: int  # bytes per GPU
    intra_bw: float  # bus bandwidth inside a node, bytes/s
    inter_bw: float  # bus bandwidth across nodes, bytes/s
    flops: float  # achieved FLOP/s per GPU
    host_memory: int | None = None  # bytes per node
    gpu_name: str | None = None
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def world(self) -> int:
        return self.nodes * self.gpus_per_node


@dataclass(frozen=True)
class Constraints:
    """Axes the user fixed on the command line; None leaves the axis to the search."""

    sharding: str | None = None
    tp: int | None = None
    pp: int | None = None
    cp: int | None = None
    sp: bool | None = None
    micro_batch: int | None = None
    recompute: str | None = None
    offload: str | None = None


@dataclass(frozen=True)
class StepTime:
    compute: float
    data_parallel: float
    tensor_parallel: float
    pipeline: float
    bubble: float
    offload: float

    @property
    def total(self) -> float:
        return self.compute + self.data_parallel + self.tensor_parallel + self.pipeline + self.bubble + self.offload


@dataclass(frozen=True)
class Candidate:
    layout: Layout
    estimate: Estimate
    time: StepTime
    headroom: int  # bytes free on the busiest GPU

    @property
    def family(self) -> tuple[object, ...]:
        lay = self.layout
        return (lay.sharding, lay.tp, lay.pp, lay.offload)


def _powers_of_two(limit: int) -> list[int]:
    out, v = [], 1
    while v <= limit:
        out.append(v)
        v *= 2
    return out


def _divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def default_global_batch(cluster: Cluster, seq_len: int) -> int:
    """About a million tokens per step (the Ultra-Scale Playbook's benchmarks), rounded up to a
    multiple of the GPU count."""
    samples = max(1, round(2**20 / seq_len))
    return ceil(samples / cluster.world) * cluster.world


class Planner:
    """Search over layouts for one model, training setup and cluster."""

    def __init__(self, memory: ModelMemory, cluster: Cluster, global_batch: int,
                 constraints: Constraints = Constraints()) -> None:
        self.memory, self.cluster, self.global_batch, self.fixed = memory, cluster, global_batch, constraints
        spec, t = memory.spec, memory.training
        attn = 12 * spec.layers * t.seq_len * spec.heads * spec.head_dim
        n_active = memory.counted.active
        frozen_base = t.method != "full"
        self.flops_per_token = (4 * n_active + 2 * memory.trainable if frozen_base else 6 * n_active) + attn
        self.recompute_flops = {
            "none": 0.0,
            "selective": 0.0 if t.attention == "flash" else attn / 3,
            "full": 2 * n_active + attn / 3,
        }

    # -- enumeration ------------------------------------------------------------------------------
    def layouts(self) -> list[Layout]:
        c, f, spec = self.cluster, self.fixed, self.memory.spec
        tps = [f.tp] if f.tp else _powers_of_two(c.gpus_per_node)
        pps = [f.pp] if f.pp else [p for p in _divisors(c.nodes) if p <= spec.layers]
        shardings = [f.sharding] if f.sharding else ["none", "zero1", "zero2", "zero3"] + (
            ["fsdp-hybrid"] if c.nodes > 1 else [])
        recomputes = [f.recompute] if f.recompute else ["none", "selective", "full"]
        offloads = [f.offload] if f.offload else ["none", "optimizer", "all"]
        cp = f.cp or 1
        mbs = [f.micro_batch] if f.micro_batch else _powers_of_two(64)
        out = []
        for tp in tps:
            for pp in pps:
                if c.world % (tp * pp * cp):
                    continue
                dp = c.world // (tp * pp * cp)
                for sharding in shardings:
                    for recompute in recomputes:
                        for offload in offloads:
                            for mb in mbs:
                                if self.global_batch % (mb * dp):
                                    continue
                                layout = Layout(
                                    dp=dp, tp=tp, pp=pp, cp=cp, sp=f.sp if f.sp is not None else tp > 1,
                                    sharding=sharding, shard_group=max(1, c.gpus_per_node // (tp * cp)),
                                    micro_batch=mb, grad_accum=self.global_batch // (mb * dp),
                                    recompute=recompute, offload=offload,
                                )
                                if check_layout(spec, layout) is None:
                                    out.append(layout)
        return out

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, layout: Layout) -> Candidate:
        est = self.memory.estimate(layout, gpus_per_node=self.cluster.gpus_per_node)
        return Candidate(layout, est, self.step_time(layout, est), self.cluster.gpu_memory - est.total)

    def fits(self, cand: Candidate) -> bool:
        if cand.headroom < FREE_FRACTION * self.cluster.gpu_memory:
            return False
        host = self.cluster.host_memory
        return host is None or cand.estimate.host_bytes_per_node <= HOST_FRACTION * host

    def step_time(self, layout: Layout, est: Estimate) -> StepTime:
        c, mem, spec, t = self.cluster, self.memory, self.memory.spec, self.memory.training
        tokens = self.global_batch * t.seq_len
        compute = tokens * (self.flops_per_token + self.recompute_flops[layout.recompute]) / (c.world * c.flops)
        gb = 4 if t.precision == "fp32" else 2
        d = layout.dp * layout.cp
        stage = (mem.block * ceil(spec.layers / layout.pp) / spec.layers + max(mem.embed, mem.head)
                 if layout.pp > 1 else mem.param_count)
        local_share = stage / mem.param_count / layout.tp
        trainable = mem.trainable * local_share
        weights = (mem.trainable * gb + mem.frozen_bytes) * local_share
        ga = layout.grad_accum
        # does the data-parallel group leave the node?
        crosses = layout.tp * layout.cp * d > c.gpus_per_node
        dp_bw = c.inter_bw if crosses else c.intra_bw
        frac = (d - 1) / d if d > 1 else 0.0
        if d == 1:
            dp = 0.0
        elif layout.sharding in ("none", "zero1"):
            dp = 2 * trainable * gb * frac / dp_bw
            dp = max(0.0, dp - DP_OVERLAP * compute)
        elif layout.sharding == "zero2":
            dp = (trainable * gb * frac * ga + weights * frac) / dp_bw
            dp = max(0.0, dp - DP_OVERLAP * compute)
        elif layout.sharding in ("zero3", "fsdp"):
            dp = (2 * weights + trainable * gb) * frac * ga / dp_bw
            dp = max(0.0, dp - compute)
        else:  # fsdp-hybrid: shard inside the node, replicate across nodes
            r = layout.shard
            inner = (2 * weights + trainable * gb) * ((r - 1) / r if r > 1 else 0.0) * ga / c.intra_bw
            replicas = d // max(1, r)
            outer = 2 * trainable * gb / max(1, r) * ((replicas - 1) / replicas if replicas > 1 else 0.0) * ga
            dp = max(0.0, inner + outer / c.inter_bw - compute)
        s, b, h = t.seq_len // layout.cp, layout.micro_batch, spec.hidden
        act_bytes = 4 if t.precision == "fp32" else 2
        tp = 0.0
        if layout.tp > 1:
            per_layer = 8 * b * s * h * (layout.tp - 1) / layout.tp * act_bytes
            per_layer *= 1.5 if layout.recompute == "full" else 1.0
            tp = per_layer * ceil(spec.layers / layout.pp) * ga / c.intra_bw
        if layout.cp > 1:  # ring attention: every rank sees all K and V, forward and backward
            kv_bytes = 2 * b * t.seq_len * spec.kv_heads * spec.head_dim * act_bytes * (layout.cp - 1) / layout.cp
            cp_bw = c.intra_bw if layout.tp * layout.cp <= c.gpus_per_node else c.inter_bw
            tp += 2 * kv_bytes * ceil(spec.layers / layout.pp) * ga / cp_bw
        pipe = bubble = 0.0
        if layout.pp > 1:
            pipe = 2 * b * s * h * act_bytes * ga / c.inter_bw
            bubble = compute * (layout.pp - 1) / ga
        off = 0.0
        if layout.offload != "none":
            shard_params = trainable / (layout.shard if layout.zero_level >= 1 else 1)
            moved = trainable * (4 + gb) / (layout.shard if layout.zero_level >= 2 else 1)
            if layout.offload == "all":
                moved += 2 * weights / max(1, layout.shard) * ga
            # transfers over PCIe, then the node's CPU updates its GPUs' shards (not overlapped)
            off = moved / PCIE_BYTES_PER_S + shard_params * min(c.gpus_per_node, c.world) / CPU_ADAM_PARAMS_PER_S
        return StepTime(compute, dp, tp, pipe, bubble, off)

    # -- ranking ----------------------------------------------------------------------------------
    def search(self) -> tuple[list[Candidate], Candidate | None, int]:
        """(feasible candidates, fastest first; the most frugal one evaluated; layouts evaluated).

        Memory grows with the micro-batch, so for each layout family the micro-batches are tried
        smallest first and the first that does not fit ends that family's walk."""
        feasible: list[Candidate] = []
        frugal: Candidate | None = None
        evaluated = 0
        stop: set[tuple[object, ...]] = set()
        for layout in sorted(self.layouts(), key=lambda lay: lay.micro_batch):
            key = (layout.sharding, layout.tp, layout.pp, layout.recompute, layout.offload)
            if key in stop:
                continue
            cand = self.evaluate(layout)
            evaluated += 1
            if frugal is None or cand.estimate.total < frugal.estimate.total:
                frugal = cand
            if self.fits(cand):
                feasible.append(cand)
            else:
                stop.add(key)
        feasible.sort(key=lambda cand: (float(f"{cand.time.total:.2e}"), _complexity(cand.layout), -cand.headroom))
        return feasible, frugal, evaluated


def _complexity(layout: Layout) -> tuple[int, ...]:
    """Among equally fast layouts, the plainest first: fewer parallel axes, less sharding, no offload."""
    order = {"none": 0, "zero1": 1, "zero2": 2, "fsdp-hybrid": 3, "zero3": 4, "fsdp": 4}
    return (layout.tp * layout.pp * layout.cp, order[layout.sharding], ("none", "optimizer", "all").index(layout.offload),
            ("none", "selective", "full").index(layout.recompute))


def top_distinct(feasible: list[Candidate], n: int = 3) -> list[Candidate]:
    """The best layout of each family (sharding, TP, PP, offload), fastest first."""
    seen: set[tuple[object, ...]] = set()
    out = []
    for cand in feasible:
        if cand.family in seen:
            continue
        seen.add(cand.family)
        out.append(cand)
        if len(out) == n:
            break
    return out


def describe(layout: Layout) -> str:
    parts = [f"DP {layout.dp}"]
    if layout.tp > 1:
        parts.append(f"TP {layout.tp}" + (" + SP" if layout.sp else ""))
    if layout.pp > 1:
        parts.append(f"PP {layout.pp}")
    if layout.cp > 1:
        parts.append(f"CP {layout.cp}")
    parts.append({"none": "no sharding (DDP)", "zero1": "ZeRO-1", "zero2": "ZeRO-2", "zero3": "ZeRO-3",
                  "fsdp": "FSDP full shard", "fsdp-hybrid": "FSDP hybrid shard"}[layout.sharding])
    parts.append(f"micro-batch {layout.micro_batch} x {layout.grad_accum} accumulation")
    if layout.recompute != "none":
        parts.append(f"{layout.recompute} recomputation")
    if layout.offload != "none":
        parts.append("offload " + ("optimizer" if layout.offload == "optimizer" else "optimizer and parameters"))
    return ", ".join(parts)


def reasons(ranked: list[Candidate], gib: float = 2**30) -> list[str]:
    """Why each recommendation wins, against the first one."""
    out = []
    for i, cand in enumerate(ranked):
        t = cand.time
        terms = {"compute": t.compute, "data-parallel traffic": t.data_parallel,
                 "tensor-parallel traffic": t.tensor_parallel, "pipeline traffic": t.pipeline,
                 "pipeline bubble": t.bubble, "offload transfers": t.offload}
        costs = [f"{k} {v:.2f} s" for k, v in terms.items() if v > 0.005 * t.total or k == "compute"]
        if i == 0:
            lead = "fastest step of the layouts that fit"
        else:
            best = ranked[0]
            slower = (t.total / best.time.total - 1) * 100 if best.time.total else 0.0
            more = (cand.headroom - best.headroom) / gib
            lead = f"{slower:+.0f}% step time against #1"
            if more > 0.05:
                lead += f", {more:.1f} GiB more headroom"
            if cand.layout.dp * cand.layout.cp > 1 and cand.layout.sharding == "none":
                lead += ", no sharding: the plainest to run"
            elif cand.layout.tp == 1 and cand.layout.pp == 1 and (best.layout.tp > 1 or best.layout.pp > 1):
                lead += ", no model parallelism: runs with the plain HF Trainer"
        out.append(f"{lead}; about {t.total:.2f} s per step ({', '.join(costs)}); "
                   f"{cand.headroom / gib:.1f} GiB headroom")
    return out


@dataclass(frozen=True)
class Change:
    what: str
    detail: str


def smallest_changes(spec: ModelSpec, training: Training, groups: list, cluster: Cluster,
                     global_batch: int, constraints: Constraints) -> list[Change]:
    """When nothing fits: changes that make it fit, the least disruptive first (offload keeps
    the job as it is, more GPUs keep it too, LoRA and QLoRA change what trains, shorter
    sequences change the data). Each is checked with the search itself."""
    changes: list[Change] = []

    def fits(mem_training: Training, c: Cluster, fixed: Constraints, batch: int) -> Candidate | None:
        frugal = replace(fixed, micro_batch=fixed.micro_batch or 1, recompute=fixed.recompute or "full")
        planner = Planner(ModelMemory(spec, groups, mem_training), c, batch, frugal)
        feasible, _, _ = planner.search()
        return feasible[0] if feasible else None

    if constraints.offload == "none":
        found = fits(training, cluster, replace(constraints, offload=None), global_batch)
        if found:
            host = found.estimate.host_bytes_per_node / 2**30
            changes.append(Change("offload", f"allow CPU offload: {describe(found.layout)} "
                                             f"(with {host:,.0f} GiB of host RAM per node)"))
    nodes = cluster.nodes
    for _ in range(7):
        nodes *= 2
        bigger = replace(cluster, nodes=nodes)
        batch = ceil(global_batch / bigger.world) * bigger.world
        found = fits(training, bigger, constraints, batch)
        if found:
            changes.append(Change("more GPUs", f"{nodes} nodes ({bigger.world} GPUs): {describe(found.layout)}"))
            break
    for method in ("lora", "qlora"):
        if training.method in ("full", "freeze") or (method == "qlora" and training.method == "lora"):
            found = fits(replace(training, method=method), cluster, constraints, global_batch)
            if found:
                changes.append(Change(method, f"--method {method}: {describe(found.layout)}"))
                break
    seq = training.seq_len
    while seq > 256:
        seq //= 2
        found = fits(replace(training, seq_len=seq), cluster, constraints, global_batch)
        if found:
            changes.append(Change("shorter sequences", f"--seq-len {seq}: {describe(found.layout)}"))
            break
    return changes
