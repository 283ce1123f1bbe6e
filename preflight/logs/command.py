"""`preflight logs PATH`: read a run's logs, diagnose, chart, report; `--follow` beside a live job."""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

from preflight.errors import InputError
from preflight.findings import Finding, Status, exit_code, worst
from preflight.process_exit import skip_teardown

GROUP = "Training logs"
# the schedule settings diagnose() compares, and the trainconfig concept each one is (whose key
# names differ by framework: Axolotl's lr_scheduler and num_epochs)
CONFIG_CONCEPTS = (("learning_rate", "learning_rate"), ("lr_scheduler_type", "scheduler"),
                   ("warmup_steps", "warmup_steps"), ("warmup_ratio", "warmup_ratio"),
                   ("num_train_epochs", "epochs"), ("max_steps", "max_steps"))


def read_training_config(path: Path) -> dict[str, object]:
    """The schedule settings of a training config, read as ``preflight config`` reads it: HF
    TrainingArguments (JSON or YAML, a saved ``training_args.json``), LLaMA-Factory or Axolotl
    YAML, each with its own key names. A file too sparse to tell is read as TrainingArguments."""
    from dataclasses import replace

    from preflight.trainconfig.job import ALIASES
    from preflight.trainconfig.readers import KINDS, TRAINER_KINDS, detect_kind, read_config
    from preflight.trainconfig.rule import as_number

    cfg = read_config(path, kind="hf")  # parsed; what it is decided below
    kind = detect_kind(cfg.data) or "hf"
    if kind not in TRAINER_KINDS:
        raise InputError(f"a {KINDS[kind]}, not a training config: pass the trainer's config "
                         "(TrainingArguments, LLaMA-Factory or Axolotl)", source=str(path))
    cfg = replace(cfg, kind=kind)
    out: dict[str, object] = {}
    for key, concept in CONFIG_CONCEPTS:
        name = next((k for k in ALIASES[concept].get(kind, ()) if cfg.get(k) is not None), None)
        if name is None:
            continue
        value = cfg.get(name)
        if key == "lr_scheduler_type":
            out[key] = str(value)
            continue
        number = as_number(value)
        if number is None:
            raise InputError(f"{name} must be a number, got {value!r}", source=str(path), line=cfg.line(name))
        out[key] = number
    return out


SKIP_TEARDOWN_FROM = 100_000  # points: from here freeing the log at exit is worth skipping (0.2 s at 5M)

EVENTS = ("logs.nan_loss", "logs.loss_spike", "logs.grad_norm_explosion")  # marked at every step


def chart_marks(diagnoses: list) -> list[int]:
    """Steps to mark on the chart: every step of an event (a spike, a NaN), the onset of the rest."""
    marks: set[int] = set()
    for d in diagnoses:
        if d.outcome.status < Status.WARN or not d.steps or d.id in ("logs.no_eval", "logs.too_few_points"):
            continue
        marks.update(d.steps if d.id in EVENTS else d.steps[:1])
    return sorted(marks)


def _findings(source: str, diagnoses: list) -> list[Finding]:
    return [
        Finding(d.id, d.outcome.status, source, d.title, GROUP, d.outcome.observed, d.outcome.expected,
                d.outcome.remediation, dict(d.outcome.evidence))
        for d in diagnoses
    ]


def _analyse(path: Path, configured: dict[str, object] | None):  # noqa: ANN202
    from preflight.logs.diagnose import diagnose
    from preflight.logs.readers import read_log

    # A million-point log is lists of millions of floats. The cyclic GC walks every item of a
    # list it examines (0.27 s for such a log, each time): none runs while the log is read and
    # diagnosed, and then the log is frozen (gc.freeze: out of every later collection; freed by
    # reference counting as ever). None of it holds a cycle.
    enabled = gc.isenabled()
    gc.disable()
    try:
        log = read_log(path)
        diagnoses = diagnose(log, configured=configured)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
    return log, diagnoses, _findings(log.source, diagnoses)


def _summary(log) -> dict[str, object]:  # noqa: ANN001
    return {
        name: {"points": len(s.steps), "first_step": s.steps[0] if s.steps else None,
               "last_step": s.steps[-1] if s.steps else None, "unit": s.unit}
        for name, s in log.series.items()
    }


def chosen_line(log) -> str | None:  # noqa: ANN001
    """For a directory: which of its logs was read and why, and the others found."""
    candidates = log.meta.get("candidates")
    if not candidates:
        return None
    others = [c for c in candidates if c != log.source]
    line = f"read: {log.meta.get('chosen_because', 'the first log found')}"
    if others:
        shown = ", ".join(others[:4]) + (f" and {len(others) - 4} more" if len(others) > 4 else "")
        line += f"; also found {shown} (pass one as PATH to read it instead)"
    return line


def resumed_line(log) -> str | None:  # noqa: ANN001
    """Where a resumed run's log went back, and how it is read."""
    at = log.meta.get("resumed_at")
    if not at or log.meta.get("merged_files"):  # (a merged TensorBoard run says it in chosen_line)
        return None
    return (f"resumed at step {', '.join(map(str, at))}: the steps logged again replace the "
            "earlier run's from there (its later points are of an abandoned timeline and are left out)")


def _render(console, log, diagnoses, findings, code: int, strict: bool) -> None:  # noqa: ANN001
    from rich.table import Table
    from rich.text import Text

    from preflight.logs.chart import render_chart
    from preflight.report.terminal import STYLES, verdict_line

    points = max((len(s.steps) for s in log.series.values()), default=0)
    console.print(Text(f"preflight logs: {log.source}", style="bold"),
                  Text(f" ({log.format}, {points} points)"))
    chosen = chosen_line(log)
    if chosen:
        console.print(Text(chosen, style="dim"))
    resumed = resumed_line(log)
    if resumed:
        console.print(Text(resumed, style="dim"))
    marks = chart_marks(diagnoses)
    console.print(render_chart(log.series, marks, width=max(30, min(100, console.width - 14))))
    table = Table(title=GROUP, title_justify="left", title_style="bold", expand=True, show_lines=True)
    table.add_column("status", width=6, no_wrap=True)
    table.add_column("check", style="cyan", no_wrap=True)
    table.add_column("observed · expected · fix", ratio=1)
    for f in sorted(findings, key=lambda f: -f.status):
        details = Text(f.observed)
        if f.status >= Status.WARN:
            if f.expected:
                details.append(f"\nexpected: {f.expected}", style="dim")
            if f.remediation:
                details.append("\nfix: ", style="bold")
                details.append(f.remediation)
        table.add_row(Text(f.status.label, style=STYLES[f.status]), f.id, details)
    console.print(table)
    console.print(verdict_line(findings, code, strict))


def _plot(path: Path, log, marks: list[int]) -> None:  # noqa: ANN001
    try:
        import matplotlib  # noqa: PLC0415 - optional

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        raise InputError("--plot needs matplotlib (`pip install matplotlib`)", source=str(path)) from None
    fig, (loss_ax, lr_ax) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=(3, 1))
    for name, style in (("train_loss", "-"), ("eval_loss", "o-")):
        if name in log.series:
            loss_ax.plot(log.series[name].steps, log.series[name].values, style, label=name, markersize=3)
    for i, step in enumerate(marks):
        loss_ax.axvline(step, color="red", alpha=0.4, label="detected event (see the report)" if i == 0 else None)
    fig.suptitle(f"{log.source} ({log.format})", fontsize=9)
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    if "learning_rate" in log.series:
        lr_ax.plot(log.series["learning_rate"].steps, log.series["learning_rate"].values, color="green")
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("step")
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as exc:
        raise InputError(f"cannot write the plot: {exc}", source=str(path)) from None


def run_logs(args: argparse.Namespace) -> int:
    from preflight.logs.readers import NotYet

    configured = read_training_config(args.config) if args.config else None
    strict = bool(args.strict)
    console = None  # rich is imported only to draw: --json output does not pay for it
    last_signature = None
    last_problem = None
    while True:
        try:
            log, diagnoses, findings = _analyse(args.path, configured)
        except InputError as exc:
            # Once a live log has been read, a later read can catch it mid-write (the Trainer
            # rewrites trainer_state.json in place at every save) or just truncated (a restarted
            # run): say so once and read again at the next poll, rather than end the watch. A job
            # that has only just started (no log yet, nothing logged yet) is waited for.
            waiting = isinstance(exc, NotYet)
            if not args.follow or (last_signature is None and not waiting):
                raise
            if str(exc) != last_problem:
                how = "waiting for the first log" if waiting and last_signature is None else "reading again"
                print(f"preflight logs: {exc} ({how}, every {args.interval:g} s)",
                      file=sys.stderr, flush=True)
                last_problem = str(exc)
            time.sleep(args.interval)
            continue
        last_problem = None
        code = exit_code(findings, strict=strict)
        if args.plot:
            _plot(args.plot, log, chart_marks(diagnoses))
        signature = [(f.id, f.status, f.observed) for f in findings]
        if signature != last_signature:
            if args.json:
                print(json.dumps({
                    "schema_version": 1,
                    "command": "logs",
                    "source": log.source,
                    "format": log.format,
                    "series": _summary(log),
                    **({"chosen_because": log.meta.get("chosen_because"),
                        "candidates": log.meta["candidates"]} if log.meta.get("candidates") else {}),
                    **({"resumed_at": log.meta["resumed_at"]} if log.meta.get("resumed_at") else {}),
                    "findings": [f.to_json() for f in findings],
                    "verdict": {"status": worst(findings).label, "exit_code": code},
                }, indent=None if args.follow else 2), flush=True)
            else:
                if console is None:
                    from preflight.report.console import make_console

                    console = make_console()
                _render(console, log, diagnoses, findings, code, strict)
            last_signature = signature
        if not args.follow:
            if sum(map(len, log.series.values())) >= SKIP_TEARDOWN_FROM:
                skip_teardown(log)  # everything is written: no need to free the log float by float
            return code
        time.sleep(args.interval)
