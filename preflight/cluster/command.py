"""`preflight cluster` and `preflight replay DIR`: collect (or load) every node's facts, judge them
per node and across nodes, render, and return the exit code."""

from __future__ import annotations

import argparse
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from preflight.cluster.judge import NodeEntry, judge_cluster
from preflight.errors import InputError
from preflight.facts import NodeFacts, load_facts, parse_facts, save_facts
from preflight.findings import exit_code
from preflight.report.console import make_console
from preflight.settings import Selection


@dataclass(frozen=True)
class ClusterRequest:
    hosts_file: Path | None
    hosts_format: str
    slurm: bool
    ssh_config: Path | None
    sweep_options: object  # preflight.cluster.sweep.SweepOptions (imported lazily: paramiko)
    save_facts: Path | None
    as_json: bool
    path_options: object = None  # preflight.net.paths.PathOptions; None: no network path tests
    bench_options: object = None  # preflight.bench.run.BenchOptions; None: no benchmark
    rendezvous: tuple[str | None, int] = (None, 29500)  # MASTER_ADDR (None: the first host), MASTER_PORT
    local_python: str | None = None  # the Python that runs a one-node (no hosts file) benchmark
    plan: object = None  # preflight.plan.command.PlanRequest; None: no --plan


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "node"


NETWORK_FILE = "network_tests.json"
BENCH_FILE = "bench.json"


def _save(entries: list[NodeEntry], folder: Path, network: object = None, bench: object = None) -> None:
    """One facts file per node, and the network tests and benchmark results beside them."""
    if folder.exists() and not folder.is_dir():
        raise InputError("exists and is not a directory; --save-facts takes a folder here", source=str(folder))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for entry in entries:
            if entry.facts is not None:
                save_facts(entry.facts, folder / f"{_safe_name(entry.name)}.json")
        for name, result in ((NETWORK_FILE, network), (BENCH_FILE, bench)):
            if result is not None:
                import dataclasses
                import json

                (folder / name).write_text(json.dumps(dataclasses.asdict(result), indent=2) + "\n")
    except OSError as exc:
        raise InputError(f"cannot write facts: {exc.strerror or exc}", source=str(folder)) from None


def _hosts(request: ClusterRequest):  # noqa: ANN202 - list[Host]
    import os

    from preflight.cluster.hosts import Host, load_hosts
    from preflight.cluster.slurm import nodelist_from_env

    if request.slurm:
        names = nodelist_from_env(os.environ)
        if not names:
            raise InputError("--slurm: SLURM_JOB_NODELIST is not set (run inside a Slurm allocation)")
        return [Host(name, source="SLURM_JOB_NODELIST") for name in names]
    assert request.hosts_file is not None
    return load_hosts(request.hosts_file, request.hosts_format)


def _local_entry() -> NodeEntry:
    from preflight.probe import collect

    facts = parse_facts(collect(), "probe output")
    return NodeEntry(facts.node, facts)


def _sweep_entries(request: ClusterRequest, console: Console) -> tuple[list[NodeEntry], object, object]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from preflight.cluster.ssh_config import load_ssh_config
    from preflight.cluster.sweep import close_all, sweep

    logging.getLogger("paramiko").setLevel(logging.CRITICAL)  # its transport threads print tracebacks
    hosts = _hosts(request)
    config = load_ssh_config(request.ssh_config)
    failed = 0
    with Progress(
        TextColumn("sweeping"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} done, {task.fields[failed]} failed, {task.fields[pending]} pending"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("sweep", total=len(hosts), failed=0, pending=len(hosts))

        def done(result) -> None:  # noqa: ANN001
            nonlocal failed
            failed += result.facts is None
            progress.update(task, advance=1, failed=failed, pending=len(hosts) - progress.tasks[0].completed - 1)

        options = request.sweep_options
        if request.path_options is not None or request.bench_options is not None:
            from dataclasses import replace

            options = replace(options, keep_connections=True)  # type: ignore[type-var]
        results = sweep(hosts, config, options, on_done=done)  # type: ignore[arg-type]
    network = bench = None
    try:
        reached = [r for r in results if r.facts is not None and r.connection is not None]
        if request.path_options is not None and len(reached) > 1:
            from preflight.net.paths import run_network_tests

            with console.status("testing network paths between the nodes", spinner="dots") if console.is_terminal \
                    else _quiet():
                network = run_network_tests(
                    {r.host.target: r.connection for r in reached},  # type: ignore[misc]
                    {r.host.target: r.facts for r in reached},  # type: ignore[misc]
                    request.path_options,  # type: ignore[arg-type]
                )
        if request.bench_options is not None and reached:
            bench = _cluster_bench(request, reached, network, console)
    finally:
        close_all(results)
    entries = []
    for r in results:
        if r.facts is not None:
            entries.append(NodeEntry(r.host.target, r.facts))
        else:
            assert r.failure is not None
            entries.append(NodeEntry(r.host.target, None, r.failure.check_id, r.failure.message, r.failure.remediation))
    return entries, network, bench


def _cluster_bench(request: ClusterRequest, reached: list, network: object, console: Console) -> object:
    """The benchmark over the sweep's connections: the rendezvous the network tests checked (the
    master's node gets rank 0, as torchrun gives it), one rank per GPU on every node."""
    from preflight.bench.command import measure
    from preflight.bench.transport import SshLaunch

    interpreter = request.sweep_options.interpreter  # type: ignore[attr-defined]
    by_name = {r.host.target: r for r in reached}
    if network is not None:
        master, master_addr, master_port = network.master, network.master_addr, network.master_port  # type: ignore[attr-defined]
    else:
        master = reached[0].host.target
        master_addr = request.rendezvous[0] or reached[0].connection.endpoint.alias
        master_port = request.rendezvous[1]
    order = [master] + [name for name in by_name if name != master]
    launches = {name: SshLaunch(name, by_name[name].connection, interpreter) for name in order}
    return measure(launches, {name: by_name[name].facts for name in order}, request.bench_options,
                   master_addr, master_port, console, network)


def _local_bench(request: ClusterRequest, entry: NodeEntry, console: Console) -> object:
    import sys

    from preflight.bench.command import _free_port, measure
    from preflight.bench.transport import LocalLaunch
    from preflight.cluster.remote_probe import Interpreter

    assert entry.facts is not None
    launches = {entry.name: LocalLaunch(entry.name, Interpreter(request.local_python or sys.executable))}
    port = request.rendezvous[1] if request.rendezvous[0] else _free_port()
    return measure(launches, {entry.name: entry.facts}, request.bench_options, "127.0.0.1", port, console)


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def load_directory(folder: Path) -> list[NodeEntry]:
    """Facts files saved by ``cluster --save-facts DIR``, as a cluster, in name order."""
    files = sorted(p for p in folder.glob("*.json") if p.is_file() and p.name not in (NETWORK_FILE, BENCH_FILE))
    if not files:
        raise InputError("no facts files (*.json) in this folder", source=str(folder))
    entries = []
    seen: dict[str, Path] = {}
    for path in files:
        facts: NodeFacts = load_facts(path)
        if facts.node in seen:
            raise InputError(f"node {facts.node} is also in {seen[facts.node].name}", source=str(path))
        seen[facts.node] = path
        entries.append(NodeEntry(facts.node, facts))
    return entries


def _load_result(folder: Path, name: str, cls: type, what: str) -> object:
    """A result saved beside the facts (``name`` in ``folder``) as ``cls``, or None if absent."""
    path = folder / name
    if not path.is_file():
        return None
    import json

    from preflight.typed_json import DecodeError, decode

    try:
        return decode(cls, json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, DecodeError) as exc:
        raise InputError(f"invalid {what}: {exc}", source=str(path)) from None


def load_network(folder: Path) -> object:
    """The network path tests saved beside the facts, if any."""
    from preflight.net.results import NetworkTests

    return _load_result(folder, NETWORK_FILE, NetworkTests, "network test results")


def load_bench(folder: Path) -> object:
    """The benchmark results saved beside the facts, if any."""
    from preflight.bench.results import BenchResults

    return _load_result(folder, BENCH_FILE, BenchResults, "benchmark results")


def render(
    command: str, entries: list[NodeEntry], sel: Selection, *, as_json: bool, console: Console, network: object = None,
    bench: object = None,
) -> int:
    per_node, cluster = judge_cluster(entries, sel.specs, sel.thresholds, sel.options, network, bench)
    everything = [f for fs in per_node.values() for f in fs] + cluster
    code = exit_code(everything, strict=sel.strict)
    if as_json:
        from preflight.report.json_report import cluster_document, render_json

        print(render_json(cluster_document(command, entries, per_node, cluster, code, network, bench)))
    else:
        from preflight.report.cluster_terminal import render_cluster_terminal

        if bench is not None:
            from preflight.report.bench_terminal import render_bench

            render_bench(console, bench)  # type: ignore[arg-type]
        render_cluster_terminal(console, command, entries, per_node, cluster, code, strict=sel.strict)
    return code


def run_cluster(request: ClusterRequest, sel: Selection) -> int:
    console = make_console()
    progress_console = make_console(stderr=True)
    network = bench = None
    if request.hosts_file is None and not request.slurm:
        entries = [_local_entry()]
        if request.bench_options is not None:
            bench = _local_bench(request, entries[0], progress_console)
    else:
        entries, network, bench = _sweep_entries(request, progress_console)
    if request.save_facts is not None:
        _save(entries, request.save_facts, network, bench)
    if request.plan is not None:  # --plan MODEL: the plan for these nodes follows the report (preflight.plan)
        from preflight.plan.command import render_with_plan

        return render_with_plan(
            request.plan, [e.facts for e in entries], as_json=request.as_json, console=console, bench=bench,
            render_cluster=lambda: render("cluster", entries, sel, as_json=request.as_json, console=console,
                                          network=network, bench=bench))
    return render("cluster", entries, sel, as_json=request.as_json, console=console, network=network, bench=bench)


def request_from_args(args: argparse.Namespace, thresholds: dict | None = None) -> ClusterRequest:
    """The cluster run the command line asks for (SSH, probe, network-test, benchmark options);
    ``thresholds`` (check id -> values) feed the benchmark's straggler search."""
    if args.hosts is not None and args.slurm:
        raise InputError("give a hosts file or --slurm, not both")
    sweep_options = None
    if args.hosts is not None or args.slurm:
        from preflight.cluster.connect import ConnectOptions
        from preflight.cluster.remote_probe import Interpreter
        from preflight.cluster.ssh_config import Overrides
        from preflight.cluster.sweep import SweepOptions

        sweep_options = SweepOptions(
            connect=ConnectOptions(
                connect_timeout=args.connect_timeout,
                accept_new_host_keys=args.accept_new_host_keys,
                overrides=Overrides(args.user, args.port, tuple(args.identity)),
            ),
            interpreter=Interpreter(args.python, args.env, args.conda),
            command_timeout=args.command_timeout,
            parallel=max(1, args.parallel),
        )
    path_options = None
    master_addr, master_port = args.master_addr, args.master_port
    if args.launcher_config is not None:
        from preflight.net.launcher_config import rendezvous_from_config

        config_addr, config_port = rendezvous_from_config(args.launcher_config)
        master_addr, master_port = master_addr or config_addr, master_port or config_port
    if sweep_options is not None and master_addr:
        from dataclasses import replace

        sweep_options = replace(sweep_options, resolve_also=(master_addr,))
    default_port = 29400 if args.rdzv else int(os.environ.get("MASTER_PORT", "29500") or 29500)
    if sweep_options is not None and not args.no_network_tests:
        from preflight.net.paths import PathOptions

        path_options = PathOptions(
            python=args.python,
            master_addr=master_addr,
            master_port=master_port or default_port,
            all_pairs=args.all_pairs,
            step_timeout=max(5.0, args.connect_timeout),
            connect_timeout=min(3.0, args.connect_timeout),
        )
    bench_options = None
    if args.bench:
        from preflight.bench.command import bench_options as options_from_args

        bench_options = options_from_args(args, thresholds)
    from preflight.plan.command import plan_request_from_args  # --plan MODEL (preflight.plan)

    request = ClusterRequest(
        hosts_file=args.hosts,
        hosts_format=args.hosts_format,
        slurm=args.slurm,
        ssh_config=args.ssh_config,
        sweep_options=sweep_options,
        save_facts=args.save_facts,
        as_json=args.json,
        path_options=path_options,
        bench_options=bench_options,
        rendezvous=(master_addr, master_port or default_port),
        local_python=args.python if args.python != "python3" else None,
        plan=plan_request_from_args(args),
    )
    return request
