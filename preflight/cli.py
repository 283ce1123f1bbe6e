"""Command line: parses arguments and dispatches; the work lives in the modules that own it.

Exit codes: 0 all checks passed (warnings allowed), 1 a check failed (or warned, with
``--strict``), 2 usage or input error, 3 internal error (a preflight bug).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from preflight import __version__
from preflight.errors import InputError

EXIT_USAGE = 2
EXIT_INTERNAL = 3


def _csv(values: list[str] | None) -> tuple[str, ...]:
    return tuple(p.strip() for v in values or [] for p in v.split(",") if p.strip())


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _add_judging_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.add_argument(
        "--only", action="append", metavar="IDS", help="run only these check ids or globs (gpu.*), comma-separated"
    )
    parser.add_argument("--skip", action="append", metavar="IDS", help="skip these check ids or globs")
    parser.add_argument("--strict", action="store_true", default=None, help="warnings fail (exit 1)")
    parser.add_argument("--expect-gpus", type=_positive_int, metavar="N", help="the node must show N GPUs")
    parser.add_argument(
        "--config", type=Path, metavar="PATH", help="settings file (default: nearest .preflight.toml or pyproject.toml)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preflight",
        description="Will the distributed fine-tuning job start, fit and be fast? Checks before it burns GPU-hours.",
    )
    parser.add_argument("--version", action="version", version=f"preflight {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    node = sub.add_parser("node", help="inspect this machine and judge it")
    _add_judging_options(node)
    node.add_argument("--save-facts", type=Path, metavar="PATH", help="also write the collected facts to PATH")

    replay = sub.add_parser("replay", help="judge facts saved with `node --save-facts`, on any machine")
    replay.add_argument("facts", type=Path, help="a facts JSON file")
    _add_judging_options(replay)

    checks = sub.add_parser("checks", help="list every check id, its group, thresholds and what it catches")
    checks.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _judge(args: argparse.Namespace, facts_source) -> int:  # noqa: ANN001 - a zero-arg callable
    from preflight.findings import exit_code
    from preflight.registry import RunOptions, load_checks, run_checks, select
    from preflight.settings import resolve_settings

    specs = load_checks()
    settings = resolve_settings(specs, config=args.config, cwd=Path.cwd())
    only = _csv(args.only) or settings.only
    skip = _csv(args.skip) + settings.skip
    chosen = select(specs, only, skip, source="--only/--skip" if (args.only or args.skip) else settings.source)
    strict = settings.strict if args.strict is None else args.strict
    expect = args.expect_gpus if args.expect_gpus is not None else settings.expect_gpus
    facts = facts_source()
    findings = run_checks(facts, chosen, settings.thresholds, RunOptions(expect_gpus=expect))
    code = exit_code(findings, strict=strict)
    if args.json:
        from preflight.report.json_report import render_json, report_document

        print(render_json(report_document(args.command, facts, findings, code)))
    else:
        from rich.console import Console

        from preflight.report.terminal import render_terminal

        render_terminal(Console(), args.command, facts, findings, code, strict=strict)
    return code


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


def _list_checks(as_json: bool) -> int:
    from preflight.registry import load_checks

    specs = load_checks()
    if as_json:
        import json

        rows = [
            {"id": s.id, "group": s.group, "title": s.title, "thresholds": s.thresholds, "doc": s.doc}
            for s in specs.values()
        ]
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="preflight checks", title_justify="left", expand=True)
    table.add_column("id", no_wrap=True, style="cyan")
    table.add_column("group", no_wrap=True)
    table.add_column("thresholds", ratio=1)
    table.add_column("what it catches", ratio=4)
    for s in specs.values():
        limits = ", ".join(f"{k}={v}" for k, v in s.thresholds.items())
        table.add_row(s.id, s.group, limits, s.doc)
    Console().print(table)
    return 0


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "node":
        return _judge(args, lambda: _collect_local(args))
    if args.command == "replay":
        from preflight.facts import load_facts

        return _judge(args, lambda: load_facts(args.facts))
    if args.command == "checks":
        return _list_checks(args.json)
    raise AssertionError(f"unhandled command {args.command}")


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except InputError as exc:
        print(f"preflight: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("preflight: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0
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
