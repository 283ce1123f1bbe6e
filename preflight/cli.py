"""Command line: parses arguments and dispatches; the work lives in the modules that own it.

Exit codes: 0 all checks passed (warnings allowed), 1 a check failed (or warned, with
``--strict``), 2 usage or input error, 3 internal error (a preflight bug).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from preflight import __version__, arg_types
from preflight.errors import InputError

EXIT_USAGE = 2
CHECKS_FOR_COMPAT = ("driver.torch_cuda", "packages.torch_cuda_build", "versions.*")
EXIT_INTERNAL = 3


def _csv(values: list[str] | None) -> tuple[str, ...]:
    return tuple(p.strip() for v in values or [] for p in v.split(",") if p.strip())


def _add_judging_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.add_argument(
        "--only", action="append", metavar="IDS", help="run only these check ids or globs (gpu.*), comma-separated"
    )
    parser.add_argument("--skip", action="append", metavar="IDS", help="skip these check ids or globs")
    parser.add_argument("--strict", action="store_true", default=None, help="warnings fail (exit 1)")
    parser.add_argument("--expect-gpus", type=arg_types.non_negative_int, metavar="N", help="the node must show N GPUs")
    parser.add_argument(
        "--config", type=Path, metavar="PATH", help="settings file (default: nearest .preflight.toml or pyproject.toml)"
    )
    parser.add_argument(
        "--use", action="append", metavar="FEATURES", help="features the job uses: bf16,tf32,fp8,flash-attention-2,..."
    )
    parser.add_argument(
        "--matrix", type=Path, metavar="DIR", help="compatibility data folder replacing the shipped compat_matrix/"
    )


def _add_node(sub) -> None:  # noqa: ANN001 - argparse's subparsers action
    node = sub.add_parser("node", help="inspect this machine and judge it")
    _add_judging_options(node)
    node.add_argument("--save-facts", type=Path, metavar="PATH", help="also write the collected facts to PATH")


def _add_cluster(sub) -> None:  # noqa: ANN001 - argparse's subparsers action
    cluster = sub.add_parser(
        "cluster",
        help="sweep every node of a job over SSH, judge each and compare them (no hosts file: this machine)",
    )
    cluster.add_argument("hosts", type=Path, nargs="?", help="hosts file (plain, DeepSpeed, Open MPI, MPICH, Slurm)")
    cluster.add_argument(
        "--hosts-format", default="auto", choices=("auto", "plain", "deepspeed", "openmpi", "mpich", "slurm")
    )
    cluster.add_argument("--slurm", action="store_true", help="take the nodes from SLURM_JOB_NODELIST")
    cluster.add_argument("-l", "--user", help="SSH user for every host (a user@ in the hosts file wins)")
    cluster.add_argument("-p", "--port", type=arg_types.port, help="SSH port for every host (a :port in the hosts file wins)")
    cluster.add_argument("-i", "--identity", action="append", default=[], metavar="KEY", help="private key file")
    cluster.add_argument("--ssh-config", type=Path, metavar="PATH", help="SSH client config (default ~/.ssh/config)")
    cluster.add_argument(
        "--accept-new-host-keys", action="store_true", help="record unknown host keys (changed keys are always refused)"
    )
    cluster.add_argument("--parallel", type=arg_types.non_negative_int, default=64, metavar="N", help="hosts at once (default 64)")
    cluster.add_argument("--connect-timeout", type=arg_types.seconds, default=10.0, metavar="S", help="per host (default 10)")
    cluster.add_argument("--command-timeout", type=arg_types.seconds, default=60.0, metavar="S", help="probe run (default 60)")
    cluster.add_argument("--python", default="python3", help="the nodes' training Python (default python3)")
    cluster.add_argument("--env", metavar="CMD", help='shell run first on each node, e.g. ". /opt/venv/bin/activate"')
    cluster.add_argument("--conda", metavar="ENV", help="conda environment to activate on each node")
    cluster.add_argument("--save-facts", type=Path, metavar="DIR", help="write one facts file per node into DIR")
    cluster.add_argument("--master-addr", metavar="ADDR", help="rendezvous address (default: MASTER_ADDR, else the first host)")
    cluster.add_argument("--master-port", type=arg_types.port, metavar="PORT", help="rendezvous port (default: MASTER_PORT or 29500)")
    cluster.add_argument("--rdzv", action="store_true", help="torchrun c10d rendezvous: default port 29400")
    cluster.add_argument("--launcher-config", type=Path, metavar="PATH",
                         help="Accelerate config naming main_process_ip / main_process_port")
    cluster.add_argument("--all-pairs", action="store_true", help="test NCCL ports between every pair, not a ring")
    cluster.add_argument("--no-network-tests", action="store_true", help="skip the cross-node path tests")
    cluster.add_argument("--bench", action="store_true",
                         help="then run the all-reduce and memory benchmarks on every node (one rank per GPU)")
    cluster.add_argument("--cpu-ranks", type=arg_types.non_negative_int, metavar="N", help="--bench: N gloo ranks per node on the CPU")
    from preflight.bench.command import add_bench_options
    from preflight.plan.command import add_cluster_arguments as add_plan_options

    add_bench_options(cluster)
    add_plan_options(cluster)  # --plan MODEL
    _add_judging_options(cluster)


def _add_replay(sub) -> None:  # noqa: ANN001 - argparse's subparsers action
    replay = sub.add_parser("replay", help="judge saved facts (a file, or a folder from cluster --save-facts)")
    replay.add_argument("facts", type=Path, help="a facts JSON file, or a folder of them (judged as a cluster)")
    _add_judging_options(replay)


def _add_compat(sub) -> None:  # noqa: ANN001 - argparse's subparsers action
    compat = sub.add_parser(
        "compat", help="what-if: judge a GPU / driver / torch / Python / package combination, no machine needed"
    )
    compat.add_argument("--gpu", help='GPU name ("H100", "RTX 5090") or compute capability (8.6, sm_90)')
    compat.add_argument("--gpus", type=arg_types.non_negative_int, default=1, metavar="N", help="GPUs per node (default 1)")
    compat.add_argument("--driver", help="NVIDIA driver version, e.g. 535.104.05")
    compat.add_argument("--torch", help="torch version, e.g. 2.3.1+cu121 (no label: the PyPI default wheel)")
    compat.add_argument("--python", help="Python version, e.g. 3.11 (default 3.11)")
    compat.add_argument("--nvcc", help="CUDA toolkit that would build extensions, e.g. 12.1")
    compat.add_argument("--pkg", action="append", default=[], metavar="NAME==VER", help="an installed package")
    _add_judging_options(compat)


def _add_requirements(sub) -> None:  # noqa: ANN001 - argparse's subparsers action
    reqs = sub.add_parser(
        "requirements", help="check requirements files / pyproject.toml offline (a pre-commit hook)"
    )
    reqs.add_argument("files", type=Path, nargs="+", help="requirements*.txt, constraints*.txt or pyproject.toml")
    reqs.add_argument("--target-driver", metavar="VER", help="NVIDIA driver of the machines, e.g. 535.104.05")
    reqs.add_argument("--target-gpu", metavar="GPU", help="GPU of the machines (name or compute capability)")
    reqs.add_argument("--target-python", metavar="VER", help="Python of the machines, e.g. 3.11")
    reqs.add_argument("--json", action="store_true", help="print one JSON document")
    reqs.add_argument("--only", action="append", metavar="IDS", help="run only these rule ids or globs")
    reqs.add_argument("--skip", action="append", metavar="IDS", help="skip these rule ids or globs")
    reqs.add_argument("--strict", action="store_true", default=None, help="warnings fail (exit 1)")
    reqs.add_argument("--config", type=Path, metavar="PATH", help="settings file ([tool.preflight.target] lives there)")
    reqs.add_argument("--matrix", type=Path, metavar="DIR", help="compatibility data folder")


def _add_logs(sub) -> None:  # noqa: ANN001 - argparse's subparsers action
    logs = sub.add_parser("logs", help="diagnose a run from its logs: divergence, over- and under-fitting, schedule")
    logs.add_argument("path", type=Path, help="trainer_state.json, trainer_log.jsonl, CSV/JSONL, TensorBoard, or a run folder")
    logs.add_argument("--config", type=Path, metavar="PATH", help="the training config (JSON or YAML) to compare with")
    logs.add_argument("--follow", action="store_true", help="re-read as the file grows (Ctrl-C to stop)")
    logs.add_argument("--interval", type=arg_types.seconds, default=5.0, metavar="S", help="--follow poll interval (default 5)")
    logs.add_argument("--plot", type=Path, metavar="PNG", help="also write the chart as a PNG (needs matplotlib)")
    logs.add_argument("--json", action="store_true", help="print one JSON document (one per line with --follow)")
    logs.add_argument("--strict", action="store_true", default=None, help="warnings fail (exit 1)")


def _add_checks(sub) -> None:  # noqa: ANN001 - argparse's subparsers action
    checks = sub.add_parser("checks", help="list every check id, its group, thresholds and what it catches")
    checks.add_argument("--json", action="store_true", help="print JSON")


# Commands whose arguments are declared by the module that runs them: name -> (module, help).
# The module defines ``add_arguments(parser)`` and ``run(args) -> exit code``; its import must be
# light (heavy imports belong inside ``run``), because ``preflight --help`` builds every parser.
MODULE_COMMANDS: dict[str, tuple[str, str]] = {
    "plan": ("preflight.plan.command", "will the job fit: memory per GPU, layouts and their settings"),
    "data": ("preflight.data.command", "check fine-tuning data: broken records, duplicates, leakage, length, encoding"),
    "bench": ("preflight.bench.command", "all-reduce and memory benchmarks on this machine (GPUs, or --cpu-ranks N)"),
    "config": ("preflight.trainconfig.command", "check training configs (HF, LLaMA-Factory, Axolotl, DeepSpeed, Accelerate) at file:line"),
}

COMMANDS = ("node", "cluster", "replay", "compat", "requirements", "logs", "checks", *MODULE_COMMANDS)


def _add_module_command(sub, name: str) -> None:  # noqa: ANN001 - argparse's subparsers action
    import importlib

    module_name, help_text = MODULE_COMMANDS[name]
    parser = sub.add_parser(name, help=help_text)
    importlib.import_module(module_name).add_arguments(parser)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that subcommand (a pre-commit hook should not pay for
    building the other eight)."""
    parser = argparse.ArgumentParser(
        prog="preflight",
        description="Will the distributed fine-tuning job start, fit and be fast? Checks before it burns GPU-hours.",
    )
    parser.add_argument("--version", action="version", version=f"preflight {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    adders = {"node": _add_node, "cluster": _add_cluster, "replay": _add_replay, "compat": _add_compat, "requirements": _add_requirements, "logs": _add_logs, "checks": _add_checks}
    for name, add in adders.items():
        if only is None or name == only:
            add(sub)
    for name in MODULE_COMMANDS:
        if only is None or name == only:
            _add_module_command(sub, name)
    return parser


def _selection(args: argparse.Namespace, only: tuple[str, ...] = ()):  # noqa: ANN202
    from preflight.compat import load_matrix
    from preflight.registry import load_checks
    from preflight.settings import effective

    matrix = load_matrix(args.matrix)
    use = _csv(args.use)
    unknown = [u for u in use if matrix.feature(u) is None]
    if unknown:
        known = ", ".join(f.name for f in matrix.features)
        raise InputError(f"--use: unknown feature {unknown[0]!r} (known: {known})")
    return effective(
        load_checks(),
        config=args.config,
        cwd=Path.cwd(),
        only=_csv(args.only) or only,
        skip=_csv(args.skip),
        strict=args.strict,
        expect_gpus=getattr(args, "expect_gpus", None),
        matrix=matrix,
        use=use,
    )


def _judge(args: argparse.Namespace, facts_source) -> int:  # noqa: ANN001 - a zero-arg callable
    from preflight.findings import exit_code
    from preflight.registry import run_checks

    sel = _selection(args)
    facts = facts_source()
    findings = run_checks(facts, sel.specs, sel.thresholds, sel.options)
    code = exit_code(findings, strict=sel.strict)
    if args.json:
        from preflight.report.json_report import render_json, report_document

        print(render_json(report_document(args.command, facts, findings, code)))
    else:
        from preflight.report.console import make_console
        from preflight.report.terminal import render_terminal

        render_terminal(make_console(), args.command, facts, findings, code, strict=sel.strict)
    return code


def _bench_thresholds(sel) -> dict:  # noqa: ANN001 - Selection
    """Effective thresholds of the benchmark checks (defaults, then the user's settings)."""
    out = {s.id: dict(s.thresholds) for s in sel.specs if s.id.startswith("bench.")}
    for check_id, values in sel.thresholds.items():
        out.setdefault(check_id, {}).update(values)
    return out


def _collect_local(args: argparse.Namespace):  # noqa: ANN202
    from preflight.facts import parse_facts, save_facts
    from preflight.probe import collect

    if args.save_facts is not None and args.save_facts.is_dir():
        raise InputError("is a directory; give a file name for the facts", source=str(args.save_facts))
    facts = parse_facts(collect(), "probe output")
    if args.save_facts is not None:
        try:
            save_facts(facts, args.save_facts)
        except OSError as exc:
            raise InputError(f"cannot write facts: {exc.strerror or exc}", source=str(args.save_facts)) from None
    return facts


def _all_rules() -> list[dict]:
    """Every check and rule id with its group, thresholds and doc: the node and cluster checks,
    then the rules of `preflight requirements`, `preflight config` and `preflight data`."""
    import inspect

    from preflight.data.rules import RULES as DATA_RULES
    from preflight.registry import load_checks
    from preflight.requirements.judge import RULES as REQUIREMENT_RULES
    from preflight.trainconfig.rule import all_rules as config_rules

    def doc(func) -> str:  # noqa: ANN001 - a rule function
        return " ".join((inspect.getdoc(func) or "").split())

    rows = [{"id": s.id, "group": s.group, "title": s.title, "thresholds": s.thresholds, "doc": s.doc}
            for s in load_checks().values()]
    rows += [{"id": rid, "group": "preflight requirements", "title": title, "thresholds": {}, "doc": doc(func)}
             for rid, (title, func) in REQUIREMENT_RULES.items()]
    rows += [{"id": rid, "group": "preflight config", "title": title, "thresholds": {}, "doc": doc(func)}
             for rid, (title, func) in config_rules().items()]
    rows += [{"id": r.id, "group": "preflight data", "title": r.title, "thresholds": {}, "doc": r.doc}
             for r in DATA_RULES.values()]
    return rows


def _list_checks(as_json: bool) -> int:
    rows = _all_rules()
    if as_json:
        import json

        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table

    from preflight.report.console import make_console

    table = Table(title="preflight checks", title_justify="left", expand=True)
    table.add_column("id", no_wrap=True, style="cyan")
    table.add_column("group", no_wrap=True)
    table.add_column("thresholds", ratio=1)
    table.add_column("what it catches", ratio=4)
    for row in rows:
        limits = ", ".join(f"{k}={v}" for k, v in row["thresholds"].items())
        table.add_row(row["id"], row["group"], limits, row["doc"])
    make_console().print(table)
    return 0


def run(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = argv[0] if argv else None
    args = build_parser(only=first if first in COMMANDS else None).parse_args(argv)
    if args.command == "node":
        return _judge(args, lambda: _collect_local(args))
    if args.command == "replay":
        if args.facts.is_dir():
            from preflight.cluster.command import load_bench, load_directory, load_network, render
            from preflight.report.console import make_console

            entries = load_directory(args.facts)
            return render("replay", entries, _selection(args), as_json=args.json, console=make_console(),
                          network=load_network(args.facts), bench=load_bench(args.facts))
        from preflight.facts import load_facts

        return _judge(args, lambda: load_facts(args.facts))
    if args.command == "cluster":
        from preflight.cluster.command import request_from_args, run_cluster

        sel = _selection(args)  # settings errors surface before any connection is made
        return run_cluster(request_from_args(args, _bench_thresholds(sel)), sel)
    if args.command == "compat":
        from preflight.whatif import run_compat

        return run_compat(args, _selection(args, only=CHECKS_FOR_COMPAT))
    if args.command == "logs":
        from preflight.logs.command import run_logs

        return run_logs(args)
    if args.command == "requirements":
        from preflight.requirements.command import run_requirements

        return run_requirements(args)
    if args.command == "checks":
        return _list_checks(args.json)
    if args.command in MODULE_COMMANDS:
        import importlib

        return importlib.import_module(MODULE_COMMANDS[args.command][0]).run(args)
    raise AssertionError(f"unhandled command {args.command}")


def entry() -> None:
    """The console script and ``python -m preflight``: :func:`main`, then exit (see
    :mod:`preflight.process_exit` for the one shortcut taken after a large result)."""
    from preflight.process_exit import as_console, leave

    as_console()
    leave(main())


def main(argv: list[str] | None = None) -> int:
    code = 0
    try:
        code = run(argv)
        sys.stdout.flush()  # a closed pipe (`| head`) shows up here, inside the handler
        return code
    except InputError as exc:
        print(f"preflight: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("preflight: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing more to write, and no error at exit
        return code
    except Exception as exc:  # noqa: BLE001 - never show a traceback to the user
        if os.environ.get("PREFLIGHT_DEBUG"):
            raise
        print(
            f"preflight: internal error: {type(exc).__name__}: {exc} "
            "(a preflight bug; rerun with PREFLIGHT_DEBUG=1 for the traceback and report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
