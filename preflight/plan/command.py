"""``preflight plan`` and the plan section of ``preflight cluster --plan MODEL``.

Imports here stay light (``preflight --help`` builds this parser); the planner loads in ``run``.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from preflight import arg_types
from preflight.errors import InputError
from preflight.plan.units import parse_bandwidth, parse_size

if TYPE_CHECKING:
    from preflight.plan.search import Cluster, Constraints

GIB = 2**30
DEFAULT_TFLOPS = 300.0

def _count(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number like 7e9, got {text!r}") from None
    return value


def _add_training_arguments(parser: argparse.ArgumentParser, *, seq_default: int | None) -> None:
    from_help = "(default %(default)s)"
    parser.add_argument("--method", default="full", choices=("full", "freeze", "lora", "qlora", "qlora-8bit"),
                        help=f"what trains: all weights, the last layers, LoRA, LoRA on an NF4 / int8 base {from_help}")
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16", "pure-bf16"),
                        help=f"fp32; bf16/fp16 mixed precision with fp32 master weights; pure bf16 {from_help}")
    parser.add_argument("--optimizer", default="adamw", choices=("adamw", "adamw-8bit", "adafactor", "sgd"),
                        help=from_help)
    parser.add_argument("--seq-len", type=arg_types.count, default=seq_default, metavar="N",
                        help="tokens per sample (default 2048)")
    parser.add_argument("--global-batch", type=arg_types.count, metavar="SAMPLES",
                        help="samples per optimizer step (default: about 1M tokens, a multiple of the GPUs)")
    parser.add_argument("--global-batch-tokens", type=arg_types.count, metavar="TOKENS",
                        help="tokens per optimizer step, instead of --global-batch")
    parser.add_argument("--lora-rank", type=arg_types.count, default=8, metavar="R", help=from_help)
    parser.add_argument("--lora-targets", default="all", choices=("all", "attention"),
                        help=f"all linear layers of the blocks, or the attention projections {from_help}")
    parser.add_argument("--trainable-layers", type=arg_types.count, default=2, metavar="N",
                        help=f"--method freeze: the last N layers train {from_help}")
    parser.add_argument("--attention", default="flash", choices=("flash", "eager"), help=from_help)
    parser.add_argument("--tflops", type=float, default=DEFAULT_TFLOPS, metavar="T",
                        help=f"achieved bf16 TFLOP/s per GPU, for the step-time model {from_help}")
    parser.add_argument("--top", type=arg_types.count, default=3, metavar="N", help=f"recommendations shown {from_help}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--model", help="catalog name (llama-3.1-8b, qwen2.5-72b, mixtral-8x7b, deepseek-v3, ...), "
                       "a local config.json or a model folder (nothing is downloaded)")
    model.add_argument("--params", type=_count, metavar="N", help="parameter count instead of --model, e.g. 7e9")
    model.add_argument("--hidden", type=arg_types.count, metavar="H", help="with --params: hidden size")
    model.add_argument("--layers", type=arg_types.count, metavar="L", help="with --params: layers")
    model.add_argument("--heads", type=arg_types.count, metavar="A", help="with --params: attention heads")
    model.add_argument("--vocab", type=arg_types.count, metavar="V", help="with --params: vocabulary size")
    model.add_argument("--list-models", action="store_true", help="list the catalog and exit")
    _add_training_arguments(parser, seq_default=2048)
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument("--nodes", type=arg_types.count, default=1, help="(default 1)")
    cluster.add_argument("--gpus-per-node", type=arg_types.count, default=8, metavar="G", help="(default 8)")
    cluster.add_argument("--gpu-mem", metavar="SIZE", help="memory per GPU with its unit: 80GiB or 80GB")
    cluster.add_argument("--gpu", metavar="NAME", help="GPU model from the catalog (H100, A100 80GB, ...) for its memory")
    cluster.add_argument("--host-mem", metavar="SIZE", help="CPU RAM per node (checks offload), e.g. 1TiB")
    cluster.add_argument("--intra-node-bw", metavar="BW", help="bus bandwidth inside a node, e.g. 360GB/s")
    cluster.add_argument("--inter-node-bw", metavar="BW", help="bus bandwidth across nodes, e.g. 400Gb/s or 50GB/s")
    layout = parser.add_argument_group("layout (fixes that axis of the search)")
    layout.add_argument("--zero", type=int, choices=(0, 1, 2, 3), help="DeepSpeed ZeRO stage")
    layout.add_argument("--fsdp", choices=("full", "hybrid"), help="FSDP full or hybrid shard")
    layout.add_argument("--tp", type=arg_types.count, help="tensor-parallel degree")
    layout.add_argument("--pp", type=arg_types.count, help="pipeline-parallel degree")
    layout.add_argument("--cp", type=arg_types.count, help="context-parallel degree")
    layout.add_argument("--sp", action="store_true", default=None, help="sequence parallelism (with --tp)")
    layout.add_argument("--micro-batch", type=arg_types.count, metavar="B", help="samples per GPU per micro-step")
    layout.add_argument("--recompute", choices=("none", "selective", "full"), help="activation recomputation")
    layout.add_argument("--offload", choices=("none", "optimizer", "all"), help="CPU offload")
    parser.add_argument("--json", action="store_true", help="print one JSON document (bytes)")


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags ``preflight cluster`` takes to append a plan for the swept machines."""
    group = parser.add_argument_group("plan (with --plan)")
    group.add_argument("--plan", metavar="MODEL", help="append a memory plan and layout for MODEL on these nodes")
    group.add_argument("--method", default="full", choices=("full", "freeze", "lora", "qlora", "qlora-8bit"))
    group.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16", "pure-bf16"))
    group.add_argument("--optimizer", default="adamw", choices=("adamw", "adamw-8bit", "adafactor", "sgd"))
    group.add_argument("--seq-len", type=arg_types.count, default=2048, metavar="N")
    group.add_argument("--global-batch", type=arg_types.count, metavar="SAMPLES")
    group.add_argument("--lora-rank", type=arg_types.count, default=8, metavar="R")


# -- the plan ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlanRequest:
    model: str | None
    params: float | None
    hidden: int | None
    layers: int | None
    heads: int | None
    vocab: int | None
    training: Any  # preflight.plan.memory.Training
    global_batch: int | None
    global_batch_tokens: int | None
    constraints: Constraints
    tflops: float
    top: int = 3


def _training(args: argparse.Namespace) -> Any:
    from preflight.plan.memory import Training

    return Training(
        method=args.method, precision=args.precision, optimizer=args.optimizer, seq_len=args.seq_len,
        lora_rank=args.lora_rank, lora_targets=getattr(args, "lora_targets", "all"),
        trainable_layers=getattr(args, "trainable_layers", 2), attention=getattr(args, "attention", "flash"),
    )


def _constraints(args: argparse.Namespace) -> Constraints:
    from preflight.plan.search import Constraints

    if args.zero is not None and args.fsdp is not None:
        raise InputError("give --zero or --fsdp, not both")
    sharding = None
    if args.zero is not None:
        sharding = "none" if args.zero == 0 else f"zero{args.zero}"
    elif args.fsdp is not None:
        sharding = "fsdp" if args.fsdp == "full" else "fsdp-hybrid"
    return Constraints(sharding=sharding, tp=args.tp, pp=args.pp, cp=args.cp, sp=args.sp,
                       micro_batch=args.micro_batch, recompute=args.recompute, offload=args.offload)


def _cluster_from_args(args: argparse.Namespace) -> Cluster:
    from preflight.plan.search import DEFAULT_INTER_BW, DEFAULT_INTRA_BW, Cluster

    sources: dict[str, str] = {}
    if args.gpu_mem is not None:
        memory = parse_size(args.gpu_mem)
        sources["gpu_memory"] = "--gpu-mem"
    elif args.gpu is not None:
        from preflight.compat import shipped_matrix

        matrix = shipped_matrix()
        model = matrix.gpu(args.gpu)
        wanted = re.sub(r"[^a-z0-9]", "", args.gpu.lower())
        sizes = {g.name: g.memory_gib for g in matrix.gpus if wanted and wanted in re.sub(r"[^a-z0-9]", "", g.name.lower())}
        if model is not None and wanted != re.sub(r"[^a-z0-9]", "", model.name.lower()) \
                and len(set(sizes.values())) > 1:
            listed = ", ".join(f"{name} ({size} GiB)" if size else name for name, size in sizes.items())
            raise InputError(f"--gpu {args.gpu!r} names GPUs of different memory: {listed}; name one, or give --gpu-mem")
        if model is None:
            shipped_matrix().resolve_gpu(args.gpu)  # raises the error listing the known GPUs
            raise InputError(f"--gpu {args.gpu!r}: a compute capability has no memory size; give --gpu-mem")
        if not getattr(model, "memory_gib", None):
            raise InputError(f"--gpu {args.gpu!r}: the catalog has no memory size for {model.name}; give --gpu-mem")
        memory = int(model.memory_gib * GIB)
        sources["gpu_memory"] = f"catalog: {model.name} {model.memory_gib} GiB nominal (NVML shows slightly less)"
    else:
        raise InputError("give the GPU memory: --gpu-mem 80GiB, or --gpu NAME from the catalog")
    intra = parse_bandwidth(args.intra_node_bw, "--intra-node-bw") if args.intra_node_bw else DEFAULT_INTRA_BW
    inter = parse_bandwidth(args.inter_node_bw, "--inter-node-bw") if args.inter_node_bw else DEFAULT_INTER_BW
    sources["intra_bw"] = "--intra-node-bw" if args.intra_node_bw else "assumed (NVLink class); give --intra-node-bw"
    sources["inter_bw"] = "--inter-node-bw" if args.inter_node_bw else "assumed (200 Gb/s); give --inter-node-bw"
    host = parse_size(args.host_mem, "--host-mem") if args.host_mem else None
    if args.tflops <= 0:
        raise InputError(f"--tflops: expected more than 0, got {args.tflops}")
    return Cluster(nodes=args.nodes, gpus_per_node=args.gpus_per_node, gpu_memory=memory, intra_bw=intra,
                   inter_bw=inter, flops=args.tflops * 1e12, host_memory=host, gpu_name=args.gpu, sources=sources)


def resolve_spec(request: PlanRequest) -> Any:
    from preflight.plan.model import resolve_model, spec_from_params

    if request.model and request.params:
        raise InputError("give --model or --params, not both")
    if request.model:
        return resolve_model(request.model)
    if request.params:
        return spec_from_params(request.params, hidden=request.hidden, layers=request.layers,
                                heads=request.heads, vocab=request.vocab)
    raise InputError("give --model NAME|config.json|folder, or --params N")


def make_plan(request: PlanRequest, cluster: Cluster) -> dict[str, Any]:
    """The whole plan as one JSON-ready document (bytes, seconds)."""
    from dataclasses import asdict

    from preflight.plan.emit import settings
    from preflight.plan.memory import ModelMemory
    from preflight.plan.params import tensor_groups
    from preflight.plan.search import (
        Planner,
        default_global_batch,
        describe,
        reasons,
        smallest_changes,
        top_distinct,
    )

    spec = resolve_spec(request)
    training = request.training
    groups = tensor_groups(spec)
    memory = ModelMemory(spec, groups, training)
    if request.global_batch and request.global_batch_tokens:
        raise InputError("give --global-batch or --global-batch-tokens, not both")
    if request.global_batch_tokens:
        batch = max(1, request.global_batch_tokens // training.seq_len)
    else:
        batch = request.global_batch or default_global_batch(cluster, training.seq_len)
    fixed = request.constraints
    if fixed.tp and fixed.tp > cluster.gpus_per_node:
        raise InputError(f"--tp {fixed.tp}: more than the {cluster.gpus_per_node} GPUs of a node")
    planner = Planner(memory, cluster, batch, fixed)
    feasible, frugal, evaluated = planner.search()
    ranked = top_distinct(feasible, request.top)
    why = reasons(ranked)
    model_ref = request.model or "MODEL"
    recommendations = []
    for cand, reason in zip(ranked, why):
        host = cand.estimate.host_bytes_per_node
        if host:
            reason += (f"; offload needs {host / GIB:,.0f} GiB of host RAM per node"
                       + ("" if cluster.host_memory else " (not checked: give --host-mem)"))
        recommendations.append({
            "layout": asdict(cand.layout), "summary": describe(cand.layout), "why": reason,
            "memory": cand.estimate.to_json(), "headroom": cand.headroom,
            "step_seconds": round(cand.time.total, 4), "step_breakdown": {k: round(v, 4) for k, v in asdict(cand.time).items()},
            "settings": settings(spec, model_ref, training, cand.layout, batch, cluster.nodes, cluster.gpus_per_node),
        })
    if ranked:
        shown = ranked[0]
    else:
        shown = frugal
    if shown is None:  # no layout at all (e.g. a global batch smaller than the data-parallel degree)
        problem = _why_no_layout(spec, cluster, batch, fixed)
        raise InputError(f"no layout to evaluate: {problem}")
    est = shown.estimate
    changes = [] if ranked else smallest_changes(spec, training, groups, cluster, batch, fixed)
    counted = memory.counted
    return {
        "model": {"name": spec.name, "source": spec.source, "model_type": spec.model_type,
                  "exact": counted.exact, "notes": list(spec.notes)},
        "param_count": counted.total,
        "active_params": counted.active,
        "trainable_params": memory.trainable_params,
        "embedding_params": counted.embedding,
        "lm_head_params": counted.lm_head,
        "training": asdict(training),
        "global_batch": batch,
        "tokens_per_step": batch * training.seq_len,
        "cluster": {"nodes": cluster.nodes, "gpus_per_node": cluster.gpus_per_node, "gpu_memory": cluster.gpu_memory,
                    "intra_node_bus_bandwidth": cluster.intra_bw, "inter_node_bus_bandwidth": cluster.inter_bw,
                    "achieved_flops": cluster.flops, "host_memory": cluster.host_memory, "sources": cluster.sources},
        "units": "bytes; seconds; bandwidth in bytes/s",
        "fits": bool(ranked),
        "layout": asdict(shown.layout),
        "layout_summary": describe(shown.layout),
        **{k: getattr(est, k) for k in ("parameters", "gradients", "optimizer_states", "activations", "buffers",
                                        "overhead", "total")},
        "peak_phase": est.peak_phase,
        "host_bytes_per_node": est.host_bytes_per_node,
        "headroom": shown.headroom,
        "layouts_evaluated": evaluated,
        "recommendations": recommendations,
        "changes_that_fit": [asdict(c) for c in changes],
    }


def _why_no_layout(spec: Any, cluster: Cluster, batch: int, fixed: Constraints) -> str:
    """Why the search had no layout at all to evaluate (not even one that does not fit)."""
    from preflight.plan.memory import Layout, check_layout

    if batch < cluster.world // ((fixed.tp or 1) * (fixed.pp or 1) * (fixed.cp or 1)):
        return (f"the global batch ({batch} samples) is smaller than the data-parallel degree; "
                "raise --global-batch or use fewer GPUs")
    lay = Layout(tp=fixed.tp or 1, pp=fixed.pp or 1, cp=fixed.cp or 1, sp=bool(fixed.sp),
                 sharding=fixed.sharding or "none", offload=fixed.offload or "none")
    problem = check_layout(spec, lay)
    if problem:
        return problem
    return ("the fixed axes leave no layout whose micro-batch x data-parallel degree divides the global batch "
            f"({batch} samples)")


def _request(args: argparse.Namespace, model: str | None) -> PlanRequest:
    return PlanRequest(
        model=model, params=getattr(args, "params", None), hidden=getattr(args, "hidden", None),
        layers=getattr(args, "layers", None), heads=getattr(args, "heads", None), vocab=getattr(args, "vocab", None),
        training=_training(args), global_batch=args.global_batch,
        global_batch_tokens=getattr(args, "global_batch_tokens", None),
        constraints=_constraints(args) if hasattr(args, "zero") else _empty_constraints(),
        tflops=getattr(args, "tflops", DEFAULT_TFLOPS), top=getattr(args, "top", 3),
    )


def _empty_constraints() -> Constraints:
    from preflight.plan.search import Constraints

    return Constraints()


def _list_models() -> int:
    from preflight.plan.model import load_catalog

    seen = set()
    for entry in load_catalog().values():
        if entry.name in seen:
            continue
        seen.add(entry.name)
        print(f"{entry.name:16} {entry.source}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list_models:
        return _list_models()
    request = _request(args, args.model)
    resolve_spec(request)  # a missing or wrong model is the first thing to say
    cluster = _cluster_from_args(args)
    plan = make_plan(request, cluster)
    if args.json:
        import json

        print(json.dumps(plan, indent=2))
    else:
        from preflight.plan.render import render_plan
        from preflight.report.console import make_console

        render_plan(make_console(), plan)
    return 0 if plan["fits"] else 1


# -- preflight cluster --plan -----------------------------------------------------------------------

def plan_request_from_args(args: argparse.Namespace) -> PlanRequest | None:
    """``preflight cluster --plan MODEL ...`` as a request, or None without --plan. The model is
    resolved here, so a wrong name or config fails before any node is contacted."""
    if not getattr(args, "plan", None):
        return None
    request = _request(args, args.plan)
    resolve_spec(request)
    return request


def cluster_plan(request: PlanRequest, facts_list: list[Any], *, measured_inter_bus_bw: float | None = None,
                 measured_intra_bus_bw: float | None = None) -> dict[str, Any]:
    """The plan for the swept nodes; a measured bus bandwidth (bytes/s, from a benchmark) wins over
    the link speeds in the facts."""
    from dataclasses import replace

    from preflight.plan.swept import cluster_from_facts

    cluster = cluster_from_facts(facts_list, measured_inter_bus_bw=measured_inter_bus_bw, tflops=request.tflops)
    if measured_intra_bus_bw:
        cluster = replace(cluster, intra_bw=measured_intra_bus_bw,
                          sources={**cluster.sources, "intra_bw": "measured bus bandwidth (benchmark)"})
    return make_plan(request, cluster)


def render_with_plan(request: PlanRequest, facts_list: list[Any], render_cluster: Any, *, as_json: bool,
                     console: Any, bench: Any = None, measured_inter_bus_bw: float | None = None) -> int:
    """Render the cluster report, then the plan: in JSON as a ``plan`` key of the same document.
    The exit code is the cluster's, or 1 when the job does not fit (and the cluster passed).
    ``bench`` (``preflight.bench.results.BenchResults``) supplies measured bus bandwidths."""
    import contextlib
    import io
    import json

    from preflight.plan.render import render_plan
    from preflight.plan.swept import measured_bus_bandwidth

    intra, inter = measured_bus_bandwidth(bench)
    try:
        plan: dict[str, Any] | None = cluster_plan(request, facts_list,
                                                   measured_inter_bus_bw=measured_inter_bus_bw or inter,
                                                   measured_intra_bus_bw=intra)
        error = None
    except InputError as exc:
        plan, error = None, str(exc)
    if as_json:
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = render_cluster()
        document = json.loads(buffer.getvalue())
        document["plan"] = plan if plan is not None else {"error": error}
        print(json.dumps(document, indent=2))
    else:
        code = render_cluster()
        console.print()
        if plan is None:
            console.print(f"[red]plan[/red]: {error}")
        else:
            render_plan(console, plan)
    if plan is None or not plan["fits"]:
        return max(code, 1)
    return code
