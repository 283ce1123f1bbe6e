"""`preflight bench` (this machine: every local GPU, or ``--cpu-ranks N`` gloo processes) and the
``--bench`` step of `preflight cluster` (one rank per GPU on every node, over the sweep's SSH
connections). Both judge the results with the ``bench.*`` checks."""

from __future__ import annotations

import argparse
import re
import socket
import sys
from dataclasses import replace
from pathlib import Path

from preflight import arg_types
from preflight.errors import InputError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?\s*$", re.I)


def parse_size(text: str) -> int:
    """``64M``, ``1GiB``, ``4096`` -> bytes (K/M/G are powers of two, as nccl-tests' -b/-e)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a size like 1M or 1GiB, got {text!r}")
    scale = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[(match.group(2) or "")[:1].upper()]
    value = int(float(match.group(1)) * scale)
    if value < 4:
        raise argparse.ArgumentTypeError(f"a message is at least 4 bytes, got {text!r}")
    return value


def _timeout(text: str) -> tuple[str, float]:
    from preflight.bench.run import STAGES

    stage, _, seconds = text.partition("=")
    if stage not in STAGES or not seconds:
        raise argparse.ArgumentTypeError(f"expected STAGE=SECONDS with STAGE one of {', '.join(STAGES)}, got {text!r}")
    try:
        value = float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds after {stage}=, got {seconds!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a timeout is more than 0 seconds, got {value}")
    return stage, value


def add_bench_options(parser: argparse.ArgumentParser) -> None:
    """The benchmark's own options (shared by `preflight bench` and `preflight cluster --bench`)."""
    parser.add_argument("--backend", dest="bench_backend", choices=("auto", "nccl", "gloo"), default="auto",
                        help="auto: NCCL when every node has GPUs, else gloo")
    parser.add_argument("--min-size", type=parse_size, metavar="SIZE",
                        help="smallest message (default 1M); sizes grow x4 up to --max-size")
    parser.add_argument("--max-size", type=parse_size, metavar="SIZE",
                        help="largest message (default 1G on GPUs, 64M on CPU)")
    parser.add_argument("--seconds-per-size", type=float, default=0.5, metavar="S",
                        help="timed iterations per size fill about this long (default 0.5)")
    parser.add_argument("--pairwise", choices=("auto", "always", "never"), default="auto",
                        help="pair the nodes to find a slow one: when the cluster is slow (auto), always, never")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory benchmark")
    parser.add_argument("--memory-fraction", type=float, default=0.9, metavar="F",
                        help="allocate up to this fraction of each GPU's free memory (default 0.9)")
    parser.add_argument("--stage-timeout", type=_timeout, action="append", default=[], metavar="STAGE=S",
                        help="deadline of one stage, e.g. rendezvous=20 (start, import, rendezvous, first, sweep, ...)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from preflight.cli import _add_judging_options

    parser.add_argument("--cpu-ranks", type=arg_types.count, metavar="N", help="N gloo processes on the CPU instead of the GPUs")
    parser.add_argument("--python", default=sys.executable,
                        help="the Python (with torch) that runs the ranks (default: this one)")
    parser.add_argument("--master-port", type=int, metavar="PORT", help="rendezvous port (default: a free one)")
    parser.add_argument("--save-facts", type=Path, metavar="DIR",
                        help="write this machine's facts and bench.json into DIR (replay DIR judges them again)")
    add_bench_options(parser)
    _add_judging_options(parser)


def bench_options(args: argparse.Namespace, thresholds: dict) -> object:
    """BenchOptions from the command line and the judging thresholds (the straggler search uses
    the same fractions the checks judge with)."""
    from preflight.bench.run import CPU_SIZES, GPU_SIZES, BenchOptions

    sizes: tuple[int, ...] = ()
    if args.min_size or args.max_size:
        low = args.min_size or min(GPU_SIZES)
        high = args.max_size or (max(GPU_SIZES) if args.bench_backend != "gloo" else max(CPU_SIZES))
        if low > high:
            raise InputError(f"--min-size {low} B is larger than --max-size {high} B")
        sizes_list = []
        size = low
        while size < high:
            sizes_list.append(size)
            size *= 4
        sizes = tuple(sizes_list + [high])
    if not 0 < args.memory_fraction <= 0.98:
        raise InputError(f"--memory-fraction must be in (0, 0.98], got {args.memory_fraction}")
    if args.seconds_per_size <= 0:
        raise InputError(f"--seconds-per-size must be more than 0, got {args.seconds_per_size}")
    options = BenchOptions(
        backend=args.bench_backend, sizes=sizes, seconds_per_size=args.seconds_per_size, pairwise=args.pairwise,
        memory=not args.no_memory, memory_fraction=args.memory_fraction,
        cpu_ranks=getattr(args, "cpu_ranks", None),
        expected_fraction=float(thresholds.get("bench.allreduce_bandwidth", {}).get("min_fraction", 0.8)),
        straggler_fraction=float(thresholds.get("bench.straggler", {}).get("min_fraction_of_best", 0.6)),
    )
    if args.stage_timeout:
        options = replace(options, timeouts={**options.timeouts, **dict(args.stage_timeout)})
    return options


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def visible_gpus(facts) -> int:  # noqa: ANN001 - NodeFacts
    """GPUs the training processes will see: ``CUDA_VISIBLE_DEVICES`` (from the node's
    environment) narrows what NVML lists; empty means none."""
    devices = len(facts.gpu.devices)
    value = facts.network.env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return devices
    named = [v for v in value.split(",") if v.strip()]
    return min(devices, len(named))


def default_gpu_sizes(nodes: list) -> tuple[int, ...]:
    """1 MiB .. 1 GiB, plus the size the sourced busbw figure for this system was measured at
    (e.g. 16 GiB for 8x H100), when every GPU has memory for it three times over (the timed
    buffer, the correctness buffer and headroom): without it a default run could not be
    compared with anything."""
    from preflight.bench.expectations import load_expectations
    from preflight.bench.run import GPU_SIZES

    first = nodes[0].gpu.devices if nodes else []
    if not first or not first[0].name:
        return GPU_SIZES
    nvlink = any((d.nvlink_up or 0) > 0 for d in first)
    figure = load_expectations(None).allreduce_busbw(first[0].name, len(first), nvlink, 1 << 40)
    at = figure.at_bytes if figure is not None else None
    smallest_memory = min((d.memory_total_bytes or 0) for n in nodes for d in n.gpu.devices)
    if at and at > max(GPU_SIZES) and smallest_memory >= 3 * at:
        return (*GPU_SIZES, at)
    return GPU_SIZES


def not_runnable(facts_by_node: dict, network: object = None, check_torch: bool = True) -> list:
    """Why the benchmark cannot start, known before launching anything (so that the user does
    not wait for a deadline): torch missing from a node's training Python, or a rendezvous port
    the network tests found taken or blocked."""
    from preflight.bench.results import StageProblem

    problems = []
    missing = [name for name, f in facts_by_node.items() if check_torch and "torch" not in f.python.packages]
    if missing:
        where = ", ".join(f"{n} ({facts_by_node[n].python.executable})" for n in missing)
        problems.append(StageProblem("import", "not-run", missing, [],
                                     f"torch is not installed in the training Python on {where}", 0.0))
    if network is not None:
        if network.port_free is False:  # type: ignore[attr-defined]
            problems.append(StageProblem(
                "rendezvous", "not-run", [network.master], [],  # type: ignore[attr-defined]
                f"port {network.master_port} is in use on {network.master} (net.master_port_free)", 0.0))  # type: ignore[attr-defined]
        blocked = sorted({p.source for p in network.paths  # type: ignore[attr-defined]
                          if p.purpose == "rendezvous" and p.status != "ok"})
        if blocked:
            problems.append(StageProblem(
                "rendezvous", "not-run", blocked, [],
                f"{', '.join(blocked)} cannot reach {network.master_addr}:{network.master_port} "  # type: ignore[attr-defined]
                "(net.master_port_reachable)", 0.0))
    return problems


def measure(launches: dict, facts_by_node: dict, options, master_addr: str, master_port: int,  # noqa: ANN001
            console, network: object = None, check_torch: bool = True) -> object:  # noqa: ANN001
    """Lay out the ranks over the nodes (in ``facts_by_node`` order: the master first), run the
    benchmark with a live stage display, and return the results."""
    from preflight.bench.expected_busbw import expected_busbw, ib_rate_bps
    from preflight.bench.results import BenchResults
    from preflight.bench.run import CPU_SIZES, GPU_SIZES, layout, run_bench

    nodes = [(name, visible_gpus(f)) for name, f in facts_by_node.items()]
    backend, plans = layout(nodes, options.backend, options.cpu_ranks)
    if backend == "nccl" and any(p.gpus == 0 for p in plans):
        raise InputError("--backend nccl: a node without GPUs; use --backend gloo or --cpu-ranks")
    if backend == "nccl" and not options.sizes:
        options = replace(options, sizes=default_gpu_sizes(list(facts_by_node.values())))
    largest = max(options.sizes or (GPU_SIZES if backend == "nccl" else CPU_SIZES))
    expected, missing = expected_busbw(list(facts_by_node.values()), backend, largest)
    blocked = not_runnable(facts_by_node, network, check_torch)
    if blocked:
        return BenchResults(backend, sum(len(p.ranks) for p in plans), [p.name for p in plans],
                            {p.name: len(p.ranks) for p in plans}, master_addr, master_port, problems=blocked,
                            expected_busbw=expected, expected_missing=missing)
    status = console.status("benchmark: start", spinner="dots") if console.is_terminal else None
    if status:
        status.start()
    try:
        results = run_bench(launches, plans, backend, options, master_addr, master_port, expected,
                            on_stage=lambda stage: status.update(f"benchmark: {stage}") if status else None)
    finally:
        if status:
            status.stop()
    results.ib_nodes = [name for name, f in facts_by_node.items() if ib_rate_bps(f) > 0]
    results.expected_missing = missing
    return results


def run(args: argparse.Namespace) -> int:
    """`preflight bench`: this machine as a one-node cluster."""
    from preflight.bench.transport import LocalLaunch
    from preflight.cli import _bench_thresholds, _selection
    from preflight.cluster.command import _save, render
    from preflight.cluster.judge import NodeEntry
    from preflight.cluster.remote_probe import Interpreter
    from preflight.facts import parse_facts
    from preflight.probe import collect
    from preflight.report.console import make_console

    sel = _selection(args, only=("bench.*",))
    options = bench_options(args, _bench_thresholds(sel))
    if args.save_facts is not None and args.save_facts.exists() and not args.save_facts.is_dir():
        raise InputError("exists and is not a directory; --save-facts takes a folder here", source=str(args.save_facts))
    facts = parse_facts(collect(), "probe output")
    if options.backend == "nccl" and not facts.gpu.devices:
        raise InputError("--backend nccl: this machine shows no GPU; use --cpu-ranks N for gloo")
    port = args.master_port or _free_port()
    launches = {facts.node: LocalLaunch(facts.node, Interpreter(args.python))}
    # the facts describe this Python; another --python is checked by running it
    results = measure(launches, {facts.node: facts}, options, "127.0.0.1", port, make_console(stderr=True),
                      check_torch=args.python == sys.executable)
    entries = [NodeEntry(facts.node, facts)]
    if args.save_facts is not None:
        _save(entries, args.save_facts, bench=results)
    return render("bench", entries, sel, as_json=args.json, console=make_console(), bench=results)
