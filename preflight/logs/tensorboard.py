"""TensorBoard event files (the optional ``tensorboard`` package reads them): one file's training
scalars, or a run's newest file with the files of the run it resumed from."""

from __future__ import annotations

import bisect
from pathlib import Path

from preflight.errors import InputError
from preflight.logs import readers
from preflight.logs.series import CANONICAL, RunLog, Series


def is_event_file(path: Path) -> bool:
    return path.name.startswith("events.out.tfevents")


def available() -> bool:
    try:
        from tensorboard.backend.event_processing import event_accumulator  # noqa: F401
    except ImportError:
        return False
    return True



def read_event_file(path: Path) -> RunLog:
    """One event file's training scalars."""
    source = str(path)
    tags, series, plan, other = _tensorboard_scalars(path)
    if not series:
        raise _no_tensorboard_metric(source, tags)
    meta: dict[str, object] = {"columns": {k: c for k, (c, _) in plan.items() if k in series},
                               "other_metrics": other}
    return RunLog(source=source, format="tensorboard", series=series, meta=meta)


def _no_tensorboard_metric(source: str, tags: list[str]) -> InputError:
    if not tags:  # a writer that has logged nothing yet, a cut-off file, or not an event file
        return readers.NotYet("no scalar events in it (a run that has not logged yet, or not an event "
                      "file)", source=source)
    return readers._no_metric(source, "scalar tags", tags)


def _tensorboard_scalars(path: Path) -> tuple[list[str], dict[str, Series], dict, list[str]]:
    """One event file's scalar tags, its series, the plan and the unrecognised tags. A record
    cut off at the end (a live run's file) is where the package stops reading."""
    source = str(path)
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        raise InputError("reading TensorBoard event files needs the tensorboard package, which is"
                         " not installed: pip install tensorboard", source=source) from None
    try:
        acc = event_accumulator.EventAccumulator(
            source, size_guidance={event_accumulator.SCALARS: 0})
        acc.Reload()
        tags = list(acc.Tags().get("scalars", []))
    except Exception as e:  # noqa: BLE001 - the package's own errors are many and unexported
        raise InputError(f"not a readable TensorBoard event file: {e}", source=source) from None
    plan, other = readers._column_plan(
        [t for t in tags if readers._norm(t) not in _TB_SUMMARY_TAGS], "")
    other = sorted(set(other) | {t for t in tags if readers._norm(t) in _TB_SUMMARY_TAGS})
    series: dict[str, Series] = {}
    for canonical in CANONICAL:
        if canonical not in plan:
            continue
        tag, unit = plan[canonical]
        events = acc.Scalars(tag)
        if events:
            steps = [int(e.step) for e in events]
            values = [float(e.value) for e in events]
            series[canonical] = readers._ordered(canonical, steps, values, unit)
    return tags, series, plan, other


# The Trainer's end-of-training summary (speed_metrics and the run's mean loss), as
# TensorBoardCallback writes it through rewrite_logs: one point each, never a curve.
_TB_SUMMARY_TAGS = {"train/train_runtime", "train/train_samples_per_second",
                    "train/train_steps_per_second", "train/train_loss", "train/total_flos"}


def read_run(directory: Path, events: list[Path]) -> RunLog:
    """The newest TensorBoard run among ``events`` (newest first), with the event files of the
    same run it resumed from.

    Hugging Face's Trainer writes a new ``runs/<date>_<host>/`` folder each time it starts (its
    logging_dir is stamped when the TrainingArguments are made), Lightning a new
    ``version_N/``; ``SummaryWriter.add_hparams`` writes its own file in a subfolder, with no
    training scalars. So: files with no recognisable metric are passed over; then an older file
    that starts at an earlier step than what has been gathered so far is the part of the run
    before a resume (from a checkpoint at or before the newer file's first step), and its points
    before that step are kept; an older file that starts at the same step or later is a run that
    was started over (or another one) and is not read. Where they overlap, the newer file wins:
    the old run's steps after the checkpoint were trained again."""
    newest: tuple[Path, dict[str, Series], dict, list[str]] | None = None
    error: InputError | None = None
    passed_over: list[str] = []
    merged: list[tuple[Path, int]] = []  # older files, with the step they are cut at
    for path in events:
        try:
            tags, series, plan, other = _tensorboard_scalars(path)
        except InputError as e:
            if isinstance(e, readers.NotYet) or "needs the tensorboard package" not in str(e):
                error = error or e
                passed_over.append(str(path))
                continue
            raise
        if not series:
            error = error or _no_tensorboard_metric(str(path), tags)
            passed_over.append(str(path))
            continue
        if newest is None:
            newest = (path, series, plan, other)
            gathered = dict(series)
            continue
        start = min(s.steps[0] for s in gathered.values() if s.steps)
        first = min(s.steps[0] for s in series.values() if s.steps)
        if first >= start:
            continue  # a run started over, or another run: not this one's history
        for name, old in series.items():
            cut = bisect.bisect_left(old.steps, start)
            if not cut:
                continue
            later = gathered.get(name)
            gathered[name] = Series(name=name, steps=old.steps[:cut] + (later.steps if later else []),
                                    values=old.values[:cut] + (later.values if later else []),
                                    unit=old.unit)
        merged.append((path, start))
    if newest is None:
        assert error is not None
        raise error
    path, _, plan, other = newest
    meta: dict[str, object] = {"columns": {k: c for k, (c, _) in plan.items() if k in gathered},
                               "other_metrics": other}
    if merged:
        meta["resumed_at"] = sorted({step for _, step in merged})
        meta["merged_files"] = [str(p) for p, _ in reversed(merged)] + [str(path)]
    if passed_over:
        meta["passed_over"] = passed_over
    return RunLog(source=str(path), format="tensorboard", series=gathered, meta=meta)
