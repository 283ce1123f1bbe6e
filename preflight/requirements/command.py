"""`preflight requirements FILE...`: parse, judge, print ``file:line`` findings, exit.

Built for pre-commit: plain text output (no rich import), offline, no torch, tens of milliseconds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from preflight.compat import load_matrix
from preflight.errors import InputError
from preflight.findings import Status, exit_code, worst
from preflight.requirements.judge import Target, judge_requirements
from preflight.requirements.parse import ParsedRequirements, parse_requirements

_DRIVER = re.compile(r"^\d+(\.\d+){0,2}$")
_PYTHON = re.compile(r"^3\.\d+(\.\d+)?$")


def parse_files(files: list[Path]) -> ParsedRequirements:
    """All files as one set: pins in one file can contradict pins in another."""
    merged = ParsedRequirements([], [], [], [], [])
    for path in files:
        if path.name == "pyproject.toml":
            from preflight.requirements.pyproject import parse_pyproject  # and the TOML reader

            part = parse_pyproject(path)
        else:
            part = parse_requirements(path)
        merged.requirements += part.requirements
        merged.constraints += part.constraints
        merged.indexes += part.indexes
        merged.skipped += part.skipped
        merged.files += part.files
    return merged


def _target(args: argparse.Namespace, file_target: dict[str, str]) -> Target:
    target = Target(
        driver=args.target_driver or file_target.get("driver"),
        gpu=args.target_gpu or file_target.get("gpu"),
        python=args.target_python or file_target.get("python"),
    )
    if target.driver and not _DRIVER.match(target.driver):
        raise InputError(f"target driver {target.driver!r}: expected a version like 535.104.05")
    if target.python and not _PYTHON.match(target.python):
        raise InputError(f"target python {target.python!r}: expected a version like 3.11")
    return target


def _csv(values: list[str] | None) -> tuple[str, ...]:
    return tuple(p.strip() for v in values or [] for p in v.split(",") if p.strip())


def run_requirements(args: argparse.Namespace) -> int:
    from preflight.settings import resolve_settings

    matrix = load_matrix(args.matrix)
    # the [checks] thresholds belong to node/cluster, which validate them; keys and [target] are
    # validated here, without loading every node check into a pre-commit hook
    settings = resolve_settings(None, config=args.config, cwd=Path.cwd())
    strict = settings.strict if args.strict is None else bool(args.strict)
    file_target = settings.target
    target = _target(args, file_target)
    parsed = parse_files(args.files)
    if target.gpu:
        matrix.resolve_gpu(target.gpu)  # an unknown GPU is an input error before any finding
    findings = judge_requirements(parsed, matrix, target, only=_csv(args.only), skip_ids=_csv(args.skip))
    code = exit_code(findings, strict=strict)
    if args.json:
        print(json.dumps({
            "schema_version": 1,
            "command": "requirements",
            "files": parsed.files,
            "target": target.__dict__,
            "findings": [f.to_json() for f in findings],
            "verdict": {"status": worst(findings).label, "exit_code": code},
        }, indent=2))
        return code
    shown = [f for f in findings if f.status not in (Status.PASS,)]
    for f in shown:
        print(f"{f.node}: {f.status.label} {f.id}: {f.observed}")
        if f.status >= Status.WARN and f.remediation:
            print(f"    fix: {f.remediation}")
    problems = sum(1 for f in findings if f.status >= Status.WARN)
    verdict = "ok" if code == 0 and not problems else ("ok, with warnings" if code == 0 else "FAILED")
    print(f"preflight requirements: {verdict} ({len(parsed.requirements)} requirements in {len(parsed.files)} file(s), "
          f"{problems} problem(s))", file=sys.stderr if args.json else sys.stdout)
    return code
