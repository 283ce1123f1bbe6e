"""Cross-node checks: every node of the job must run the same stack, be a distinct machine, agree
on names and time, and use the same transports. The odd node out is named with the majority value,
and listed in the finding's ``evidence["nodes"]`` so reports can mark it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from preflight.facts import NodeFacts
from preflight.findings import Outcome, fail, passed, skip, warn
from preflight.net.address import is_address, is_loopback
from preflight.registry import CheckContext, ClusterContext, check

GROUP = "Cluster consistency"
TRAINING_PACKAGES = (
    "transformers", "accelerate", "deepspeed", "peft", "trl", "datasets", "flash-attn",
    "bitsandbytes", "xformers", "triton", "tokenizers", "safetensors",
)
MISSING = "not installed"


def _odd_ones_out(values: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The majority value and the nodes that differ from it."""
    counts = Counter(values.values())
    majority = counts.most_common(1)[0][0]
    return majority, {node: v for node, v in values.items() if v != majority}


def _same_everywhere(
    ctx: ClusterContext, what: str, value: Callable[[NodeFacts], str | None], fix: str
) -> Outcome:
    """Fail naming the nodes whose ``value`` differs from the majority's."""
    if len(ctx.nodes) < 2:
        return skip("fewer than two nodes answered")
    values = {n.node: value(n) for n in ctx.nodes}
    known = {node: v for node, v in values.items() if v is not None}
    if not known:
        return skip(f"no node reported its {what}")
    majority, odd = _odd_ones_out({node: v or "unknown" for node, v in values.items()})
    if not odd:
        return passed(f"{what} {majority} on all {len(values)} nodes", values=values)
    share = sum(1 for v in values.values() if (v or "unknown") == majority)
    listed = "; ".join(f"{node}: {v}" for node, v in odd.items())
    return fail(
        f"{listed} (majority: {majority} on {share} of {len(values)} nodes)",
        f"the same {what} on every node",
        fix.format(majority=majority, nodes=", ".join(odd)),
        values=values,
        nodes=sorted(odd),
    )


def _torch(n: NodeFacts) -> str | None:
    version = n.python.packages.get("torch")
    if version is None:
        return MISSING
    return f"{version} (CUDA {n.python.torch_cuda})" if n.python.torch_cuda else version


@check("consistency.torch", group=GROUP, title="Same torch and CUDA build on every node", scope="cluster")
def same_torch(ctx: ClusterContext) -> Outcome:
    """Different torch releases or CUDA builds across nodes break collectives in ways that look
    like network faults (NCCL version or protocol mismatch, pickled objects that do not load)."""
    return _same_everywhere(ctx, "torch", _torch, "install torch {majority} on {nodes} (same wheel index URL)")


def _nccl(n: NodeFacts) -> str | None:
    wheels = sorted(
        f"{name} {version}" for name, version in n.python.packages.items() if name.startswith("nvidia-nccl-")
    )
    return ", ".join(wheels) if wheels else None


@check("consistency.nccl", group=GROUP, title="Same NCCL on every node", scope="cluster")
def same_nccl(ctx: ClusterContext) -> Outcome:
    """torch wheels load NCCL from the ``nvidia-nccl-*`` wheel; ranks on different NCCL versions
    can hang or fail at communicator creation."""
    return _same_everywhere(ctx, "NCCL wheel", _nccl, "install {majority} on {nodes} (or the torch that pins it)")


@check("consistency.driver", group=GROUP, title="Same NVIDIA driver on every node", scope="cluster")
def same_driver(ctx: ClusterContext) -> Outcome:
    """Mixed drivers mean mixed CUDA capabilities and firmware; fleets are validated per driver."""
    return _same_everywhere(
        ctx, "driver", lambda n: n.gpu.driver_version, "upgrade or downgrade {nodes} to driver {majority}"
    )


@check("consistency.python", group=GROUP, title="Same Python on every node", scope="cluster")
def same_python(ctx: ClusterContext) -> Outcome:
    """A different Python minor version means different wheels and different pickles."""
    return _same_everywhere(
        ctx,
        "Python",
        lambda n: ".".join(n.python.version.split(".")[:2]),
        "use the same environment (Python {majority}) on {nodes}",
    )


@check("consistency.packages", group=GROUP, title="Same training packages on every node", scope="cluster")
def same_packages(ctx: ClusterContext) -> Outcome:
    """transformers, accelerate, deepspeed, peft and friends must match across ranks: config and
    checkpoint formats change between releases, and DeepSpeed checks its own version on every rank."""
    if len(ctx.nodes) < 2:
        return skip("fewer than two nodes answered")
    differing = {}
    for package in TRAINING_PACKAGES:
        values = {n.node: n.python.packages.get(package, MISSING) for n in ctx.nodes}
        if len(set(values.values())) > 1:
            majority, odd = _odd_ones_out(values)
            differing[package] = (majority, odd)
    if not differing:
        return passed(f"the same versions of {len(TRAINING_PACKAGES)} training packages on every node")
    parts = [
        f"{pkg}: " + ", ".join(f"{node} {v}" for node, v in odd.items()) + f" (majority {majority})"
        for pkg, (majority, odd) in differing.items()
    ]
    pins = " ".join(f"{pkg}=={majority}" for pkg, (majority, _) in differing.items() if majority != MISSING)
    return fail(
        "; ".join(parts),
        "identical versions on every node",
        f"install the same versions everywhere, e.g. `pip install {pins}` on the odd nodes" if pins
        else "install the same packages on every node",
        differing={pkg: odd for pkg, (_, odd) in differing.items()},
        nodes=sorted({node for _, odd in differing.values() for node in odd}),
    )


@check("consistency.gpu_model", group=GROUP, title="Same GPU model on every node", scope="cluster")
def same_gpu_model(ctx: ClusterContext) -> Outcome:
    """A slower GPU model in the job makes every step wait for it (and bf16/FlashAttention support
    may differ)."""
    return _same_everywhere(
        ctx,
        "GPU model",
        lambda n: ", ".join(sorted({d.name or "?" for d in n.gpu.devices})) or None,
        "keep {nodes} out of this job, or run a separate job per GPU model",
    )


@check("consistency.gpu_count", group=GROUP, title="Same GPU count on every node", scope="cluster")
def same_gpu_count(ctx: ClusterContext) -> Outcome:
    """torchrun launches the same ``--nproc-per-node`` on every node: a node with fewer GPUs fails
    to start its extra ranks, one with more leaves GPUs idle."""
    return _same_everywhere(
        ctx,
        "GPU count",
        lambda n: str(len(n.gpu.devices)),
        "check `nvidia-smi -L` on {nodes} (a GPU may have fallen off the bus), or drop them from the job",
    )


@check("consistency.distinct_machines", group=GROUP, title="Every node is a distinct machine", scope="cluster")
def distinct_machines(ctx: ClusterContext) -> Outcome:
    """Two hosts-file entries with the same boot id are one machine reached twice (an alias and
    its IP): its GPUs would be oversubscribed. The same machine id on different boots means cloned
    VM images, which breaks tools that key on it."""
    if len(ctx.nodes) < 2:
        return skip("fewer than two nodes answered")
    boots: dict[str, list[str]] = {}
    machines: dict[str, list[str]] = {}
    for n in ctx.nodes:
        if n.identity.boot_id_sha256:
            boots.setdefault(n.identity.boot_id_sha256, []).append(n.node)
        if n.identity.machine_id_sha256:
            machines.setdefault(n.identity.machine_id_sha256, []).append(n.node)
    same_boot = [nodes for nodes in boots.values() if len(nodes) > 1]
    if same_boot:
        return fail(
            "; ".join(_listing(nodes) + " are the same machine (same boot id)" for nodes in same_boot),
            "one hosts-file entry per machine",
            "remove the duplicate entries from the hosts file",
            groups=same_boot,
            nodes=sorted(node for nodes in same_boot for node in nodes[1:]),
        )
    cloned = [nodes for nodes in machines.values() if len(nodes) > 1]
    if cloned:
        return warn(
            "; ".join(_listing(nodes) + " share a machine id" for nodes in cloned),
            "a unique /etc/machine-id per machine",
            "regenerate it on cloned VMs: `rm /etc/machine-id && systemd-machine-id-setup`",
            groups=cloned,
        )
    return passed(f"{len(ctx.nodes)} distinct machines")


def _listing(nodes: list[str], shown: int = 6) -> str:
    """``a and b``, or ``a, b, c, ... and 18 more`` for long lists."""
    if len(nodes) <= shown:
        return " and ".join(nodes)
    return ", ".join(nodes[:shown]) + f" and {len(nodes) - shown} more"


def _job_env(n: NodeFacts) -> dict[str, str]:
    return {k: v for k, v in n.network.env.items() if k.startswith("NCCL_") or k == "CUDA_VISIBLE_DEVICES"}


@check("consistency.env", group=GROUP, title="Same NCCL_* and CUDA_VISIBLE_DEVICES on every node", scope="cluster")
def same_env(ctx: ClusterContext) -> Outcome:
    """NCCL variables set on some nodes only (or to other values) give ranks different transports
    or interfaces; NCCL then hangs at communicator creation."""
    if len(ctx.nodes) < 2:
        return skip("fewer than two nodes answered")
    names = sorted({k for n in ctx.nodes for k in _job_env(n)})
    differing = {}
    for name in names:
        values = {n.node: _job_env(n).get(name, "(unset)") for n in ctx.nodes}
        if len(set(values.values())) > 1:
            differing[name] = values
    if not differing:
        return passed(f"{len(names)} variable(s), identical on every node" if names else "none set on any node")
    parts = []
    for name, values in differing.items():
        majority, odd = _odd_ones_out(values)
        parts.append(f"{name}: " + ", ".join(f"{node}={v}" for node, v in odd.items()) + f" (others: {majority})")
    return warn(
        "; ".join(parts),
        "the same values on every node",
        "set these variables in the launcher (torchrun/srun/deepspeed env), not per node",
        differing=differing,
        nodes=sorted({node for values in differing.values() for node in _odd_ones_out(values)[1]}),
    )


def _loopback(addresses: list[str]) -> bool:
    return bool(addresses) and all(is_loopback(a) for a in addresses)


@check("consistency.name_resolution", group=GROUP, title="Node names resolve alike on every node", scope="cluster")
def name_resolution(ctx: ClusterContext) -> Outcome:
    """Each node looks up every host name of the job. A name that does not resolve on some node,
    resolves to loopback there, or to different addresses on different nodes makes torchrun's
    rendezvous or NCCL's bootstrap connect to the wrong place and hang."""
    if len(ctx.nodes) < 2:
        return skip("fewer than two nodes answered")
    names = sorted({name for n in ctx.nodes for name in n.network.resolved if not is_address(name)})
    if not names:
        return skip("the hosts are given as IP addresses (nothing to resolve)")
    broken, differing = [], []
    for name in names:
        views = {n.node: sorted(n.network.resolved.get(name, [])) for n in ctx.nodes if name in n.network.resolved}
        for node, addresses in views.items():
            if not addresses:
                broken.append(f"{name} does not resolve on {node}")
            elif _loopback(addresses):
                broken.append(f"{name} resolves to {', '.join(addresses)} on {node}")
        routable = {node: a for node, a in views.items() if a and not _loopback(a)}
        if len({tuple(a) for a in routable.values()}) > 1:
            differing.append(f"{name}: " + "; ".join(f"on {node} {', '.join(a)}" for node, a in routable.items()))
    fix = "make /etc/hosts (or DNS) give every node the same address for every node name"
    if broken:
        return fail("; ".join(broken + differing), "every name resolves to the same routable address everywhere", fix)
    if differing:
        return warn("; ".join(differing), "the same addresses on every node", fix)
    return passed(f"{len(names)} name(s) resolve alike on {len(ctx.nodes)} nodes")


@check(
    "consistency.clock_skew",
    group=GROUP,
    title="Clocks agree across nodes",
    thresholds={"warn_s": 1.0, "fail_s": 30.0},
    scope="cluster",
)
def clock_skew(ctx: ClusterContext) -> Outcome:
    """Clock offsets measured during the sweep (each corrected by half its round trip). Skewed
    clocks scramble logs and timeouts across nodes and break TLS and Kerberos-backed storage
    (Kerberos tolerates 5 minutes); NTP keeps nodes within milliseconds."""
    offsets = {n.node: n.sweep for n in ctx.nodes if n.sweep is not None and n.sweep.clock_offset_s is not None}
    if len(offsets) < 2:
        return skip("clock offsets need two or more nodes reached over SSH")
    fastest = max(offsets, key=lambda node: offsets[node].clock_offset_s or 0.0)
    slowest = min(offsets, key=lambda node: offsets[node].clock_offset_s or 0.0)
    hi, lo = offsets[fastest], offsets[slowest]
    spread = (hi.clock_offset_s or 0.0) - (lo.clock_offset_s or 0.0)
    uncertainty = ((hi.rtt_s or 0.0) + (lo.rtt_s or 0.0)) / 2
    skew = max(0.0, spread - uncertainty)
    observed = f"{fastest} is {spread:.3f} s ahead of {slowest} (±{uncertainty:.3f} s)"
    evidence = {node: s.clock_offset_s for node, s in offsets.items()}
    fix = "enable time sync on every node (`timedatectl set-ntp true`, chrony or systemd-timesyncd)"
    if skew > float(ctx.thresholds["fail_s"]):
        return fail(observed, f"under {ctx.thresholds['warn_s']} s", fix, offsets_s=evidence)
    if skew > float(ctx.thresholds["warn_s"]):
        return warn(observed, f"under {ctx.thresholds['warn_s']} s", fix, offsets_s=evidence)
    return passed(observed, f"under {ctx.thresholds['warn_s']} s", offsets_s=evidence)


@check("consistency.infiniband", group=GROUP, title="InfiniBand on all nodes or none", scope="cluster")
def infiniband_everywhere(ctx: ClusterContext) -> Outcome:
    """NCCL picks one network for a communicator; with InfiniBand on some nodes only, the job runs
    over TCP sockets at a fraction of the bandwidth, or fails to connect."""
    if len(ctx.nodes) < 2:
        return skip("fewer than two nodes answered")
    with_ib = [n.node for n in ctx.nodes if any((p.state or "").upper() == "ACTIVE" for p in n.network.infiniband)]
    without = [n.node for n in ctx.nodes if n.node not in with_ib]
    if with_ib and without:
        return warn(
            f"active InfiniBand/RoCE on {', '.join(with_ib)}; none on {', '.join(without)}",
            "all nodes or none",
            f"check the RDMA ports on {', '.join(without)} (`ibstat`), or keep them out of this job",
            nodes=without,
        )
    return passed("active RDMA on every node" if with_ib else "no node has active RDMA ports")


@check("consistency.slots_vs_gpus", group=GROUP, title="Declared slots match the GPUs found")
def slots_vs_gpus(ctx: CheckContext) -> Outcome:
    """A hostfile's ``slots=N`` (DeepSpeed, Open MPI) is the number of ranks launched there: more
    slots than GPUs puts two ranks on a GPU or a rank on none; fewer leaves GPUs idle."""
    sweep = ctx.facts.sweep
    if sweep is None or sweep.slots is None:
        return skip("no slots declared for this node")
    gpus = len(ctx.facts.gpu.devices)
    if sweep.slots > gpus:
        return fail(f"slots={sweep.slots} but {gpus} GPU(s)", f"slots={gpus}", f"set slots={gpus} in the hostfile")
    if sweep.slots < gpus:
        return warn(f"slots={sweep.slots} but {gpus} GPU(s)", f"slots={gpus}", f"set slots={gpus} to use every GPU")
    return passed(f"slots={sweep.slots}, {gpus} GPU(s)")
