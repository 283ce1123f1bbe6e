"""`preflight config FILE...`: read training configs, follow the DeepSpeed file they name, judge,
print ``file:line`` findings grouped by file (or one JSON document), exit 0/1/2.

Static: nothing is imported from torch, nothing touches the network, the user's files are only
read. The GPU comes from ``--facts``, ``--gpu`` or, failing both, this machine's probe.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

METHODS = ("full", "freeze", "lora", "qlora")
_CC = re.compile(r"^\d+\.\d+[a-z]?$")


_SUFFIX = {"k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}


def _count(text: str) -> int:
    """A positive whole number: ``8``, ``7e9``, ``7B``, ``350M``."""
    raw = text.strip().lower()
    scale = _SUFFIX.get(raw[-1:], 1) if raw else 1
    body = raw[:-1] if scale != 1 else raw
    try:
        value = int(float(body) * scale) if ("e" in body or "." in body or scale != 1) else int(body)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", type=Path, nargs="+",
                        help="training configs: HF TrainingArguments (JSON/YAML), LLaMA-Factory, Axolotl, "
                             "DeepSpeed JSON, Accelerate YAML, judged together")
    parser.add_argument("--facts", type=Path, metavar="FACTS.json",
                        help="facts of a training node (preflight node --save-facts): GPU, GPUs per node, RAM, versions")
    parser.add_argument("--gpu", metavar="NAME", help='the GPU ("V100", "A100", "H100") or a compute capability (8.6)')
    parser.add_argument("--nnodes", type=_count, metavar="N", help="nodes the job runs on")
    parser.add_argument("--gpus", type=_count, metavar="N", help="GPUs per node (data-parallel processes per node)")
    parser.add_argument("--train-samples", type=_count, metavar="N", help="training samples (for steps per epoch)")
    parser.add_argument("--params", type=_count, metavar="N",
                        help="model parameters, e.g. 7e9 or 7B (default: estimated from a local model config.json)")
    parser.add_argument("--method", choices=METHODS, help="fine-tuning method when the configs do not say")
    parser.add_argument("--only", action="append", metavar="IDS", help="run only these rule ids or globs")
    parser.add_argument("--skip", action="append", metavar="IDS", help="skip these rule ids or globs")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--strict", action="store_true", help="warnings fail (exit 1)")


def _csv(values: list[str] | None) -> tuple[str, ...]:
    return tuple(p.strip() for v in values or [] for p in v.split(",") if p.strip())


def _hardware(args: argparse.Namespace, matrix: Any) -> Any:
    from preflight.errors import InputError
    from preflight.trainconfig.job import Hardware

    if args.facts is not None:
        from preflight.facts import load_facts

        facts = load_facts(args.facts)
        devices = facts.gpu.devices
        first = devices[0] if devices else None
        gpu, cc = (first.name, first.compute_capability) if first else (None, None)
        if args.gpu:
            gpu, cc = matrix.resolve_gpu(args.gpu)
        elif cc is not None and not _CC.match(cc):
            raise InputError(f"GPU compute capability {cc!r} is not like 8.0", source=str(args.facts))
        return Hardware(gpu, cc, len(devices) or None, facts.system.memory.total_bytes,
                        facts.python.packages.get("transformers"), f"--facts {args.facts}")
    if args.gpu:
        gpu, cc = matrix.resolve_gpu(args.gpu)
        return Hardware(gpu, cc, None, None, None, f"--gpu {args.gpu}")
    from preflight.probe import gpu as gpu_probe
    from preflight.probe import system as system_probe

    found = gpu_probe.collect()
    devices = found.get("devices") or []
    first = devices[0] if devices else {}
    memory = (system_probe.collect().get("memory") or {}).get("total_bytes")
    try:
        from importlib.metadata import PackageNotFoundError, version

        transformers = version("transformers")
    except PackageNotFoundError:
        transformers = None
    # the GPU model and RAM of this machine stand in for the job's; its GPU count does not (configs
    # are often checked on a login node), so world sizes come only from flags, Accelerate or --facts
    cc = first.get("compute_capability")
    return Hardware(first.get("name"), cc if isinstance(cc, str) and _CC.match(cc) else None, None, memory,
                    transformers, "this machine")


def load_files(paths: list[Path]) -> tuple[list[Any], list[Any]]:
    """The given configs plus the DeepSpeed files they name (each read once); and the settings
    naming a DeepSpeed file that does not exist."""
    from preflight.errors import InputError
    from preflight.trainconfig.job import Setting, resolve_relative
    from preflight.trainconfig.readers import TRAINER_KINDS, ConfigFile, read_config

    files, seen = [], set()
    for p in paths:
        if p.resolve() not in seen:  # the same file named twice is judged once
            seen.add(p.resolve())
            files.append(read_config(p))
    missing = []
    for f in list(files):
        if f.kind in TRAINER_KINDS:
            keys: tuple[str, ...] = ("deepspeed",)
        elif f.kind == "accelerate":
            keys = ("deepspeed_config", "deepspeed_config_file")
        else:
            continue
        value = f.get(*keys)
        if isinstance(value, dict) and f.kind in TRAINER_KINDS:  # TrainingArguments(deepspeed={...})
            inline = ConfigFile(f.path, "deepspeed", value,
                                {k[1:]: n for k, n in f.lines.items() if k[:1] == keys and len(k) > 1})
            inline.key_prefix = keys
            inline.followed_from = f.at(*keys)
            files.append(inline)
            continue
        if not isinstance(value, str) or not value.strip():
            continue
        setting = Setting(value, f, keys)
        if value.lstrip().startswith("{"):
            continue  # an inline JSON string: nothing to follow
        target = resolve_relative(value, f.path)
        if target is None:
            missing.append((setting, "no such file"))
            continue
        if target.resolve() in seen:
            continue
        seen.add(target.resolve())
        try:
            ds = read_config(target, kind="deepspeed")
        except InputError as exc:
            raise InputError(f"{exc} (named by {setting.where})") from None
        ds.followed_from = setting.where
        files.append(ds)
    return files, missing


def _model(job: Any) -> Any:
    from preflight.trainconfig.job import resolve_relative
    from preflight.trainconfig.readers import read_model_config

    s = job.setting("model")
    if s is None or not isinstance(s.value, str):
        return None
    folder = resolve_relative(s.value, s.file.path)
    if folder is None or not folder.is_dir():
        return None
    return read_model_config(folder)


def judge(job: Any, only: tuple[str, ...] = (), skip_ids: tuple[str, ...] = ()) -> list[Any]:
    import fnmatch

    from preflight.errors import InputError
    from preflight.findings import Finding, passed
    from preflight.trainconfig.rule import Located, all_rules

    RULES = all_rules()
    for pattern in (*only, *skip_ids):
        if not any(fnmatch.fnmatchcase(r, pattern) for r in RULES):
            raise InputError(f"unknown check id {pattern!r} (config rules: {', '.join(RULES)})")
    findings = []
    default_where = str(job.files[0].path) if job.files else "(configs)"
    for rule_id, (title, func) in RULES.items():
        if only and not any(fnmatch.fnmatchcase(rule_id, p) for p in only):
            continue
        if any(fnmatch.fnmatchcase(rule_id, p) for p in skip_ids):
            continue
        located = list(func(job)) or [Located(default_where, passed("nothing to check in these configs"))]
        for item in located:
            o = item.outcome
            findings.append(Finding(rule_id, o.status, item.where, title, "Training config", o.observed, o.expected,
                                    o.remediation, dict(o.evidence)))
    return findings


def split_where(where: str) -> tuple[str, int | None]:
    path, _, line = where.rpartition(":")
    if path and line.isdigit():
        return path, int(line)
    return where, None


def run(args: argparse.Namespace) -> int:
    from preflight.compat import load_matrix
    from preflight.findings import exit_code, worst
    from preflight.trainconfig.job import Job

    matrix = load_matrix(None)
    files, missing = load_files(args.files)
    hardware = _hardware(args, matrix)
    job = Job(files, hardware, matrix, nnodes=args.nnodes, gpus_per_node=args.gpus, train_samples=args.train_samples,
              params=args.params, method_flag=args.method, missing=missing)
    job.model = _model(job)
    findings = judge(job, _csv(args.only), _csv(args.skip))
    code = exit_code(findings, strict=bool(args.strict))
    world = job.world_size()
    if args.json:
        import json

        rows = []
        for f in findings:
            row = f.to_json()
            row["file"], row["line"] = split_where(f.node)
            rows.append(row)
        print(json.dumps({
            "schema_version": 1,
            "command": "config",
            "files": [{"path": str(f.path), "kind": f.kind, "label": f.label, "followed_from": f.followed_from}
                      for f in files],
            "hardware": {"gpu": hardware.gpu, "compute_capability": hardware.compute_capability,
                         "gpus_per_node": hardware.gpus_per_node, "host_ram_bytes": hardware.host_ram_bytes,
                         "transformers": hardware.transformers, "source": hardware.source},
            "world_size": {"value": world[0], "from": world[1]} if world else None,
            "model": {"config": str(job.model.path), "torch_dtype": job.model.torch_dtype,
                      "max_position_embeddings": job.model.max_position_embeddings,
                      "params_estimate": job.model.params} if job.model else None,
            "findings": rows,
            "verdict": {"status": worst(findings).label, "exit_code": code},
        }, indent=2))
        return code
    _render(job, findings, code, bool(args.strict))
    return code


def _render(job: Any, findings: list[Any], code: int, strict: bool) -> None:
    from rich.table import Table
    from rich.text import Text

    from preflight.findings import Status
    from preflight.report.console import make_console
    from preflight.report.terminal import STYLES, verdict_line

    console = make_console()
    hw = job.hardware
    gpu = f"{hw.gpu} (compute capability {hw.compute_capability})" if hw.compute_capability else "GPU unknown"
    world = job.world_size()
    console.print(Text("preflight config", style="bold"),
                  Text(f"  {gpu}, from {hw.source}" + (f" · world size {world[0]} ({world[1]})" if world else "")))
    groups: dict[str, list[Any]] = {str(f.path): [] for f in job.files}
    for f in findings:
        path, _ = split_where(f.node)
        groups.setdefault(path, []).append(f)
    kinds: dict[str, Any] = {}
    for cfg_file in job.files:
        kinds.setdefault(str(cfg_file.path), cfg_file)  # an inline DeepSpeed block shares its file's table
    for path, items in groups.items():
        cfg = kinds.get(path)
        title = f"{path}: {cfg.label}" if cfg else path
        if cfg is not None and cfg.followed_from:
            title += f" (named at {cfg.followed_from})"
        # The file's name is its own unwrapped line, so a long path stays whole for copy and paste.
        console.print(Text(title, style="bold"), soft_wrap=True)
        table = Table(expand=True, show_lines=False)
        table.add_column("status", width=6, no_wrap=True)
        table.add_column("line", justify="right", width=5, no_wrap=True)
        table.add_column("check", style="cyan", no_wrap=True)
        table.add_column("observed · fix", ratio=1)
        shown = 0
        for f in sorted(items, key=lambda x: (-x.status, split_where(x.node)[1] or 0)):
            if f.status == Status.PASS and split_where(f.node)[1] is None:
                continue  # "nothing to check": in the counts and the JSON, not worth a row
            detail = Text(f.observed)
            if f.status >= Status.WARN and f.remediation:
                detail.append("\nfix: ", style="bold")
                detail.append(f.remediation)
            line = split_where(f.node)[1]
            table.add_row(Text(f.status.label, style=STYLES[f.status]), str(line or ""), f.id, detail)
            shown += 1
        if not shown:
            table.add_row(Text("-", style="dim"), "", "", Text("no findings located in this file", style="dim"))
        console.print(table)
    console.print(verdict_line(findings, code, strict))
