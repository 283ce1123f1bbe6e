"""Which log of a run's output folder to read, and why: the final ``trainer_state.json`` or the
newest checkpoint's, LLaMA-Factory's live log, TensorBoard runs, TensorBoard CSV exports read
together; a folder of several runs is the user's to choose from."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from preflight.errors import InputError
from preflight.logs import readers, scalar_export, tensorboard
from preflight.logs.series import CANONICAL, RunLog

_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_TB_GLOB = "events.out.tfevents.*"


def read_folder(path: Path) -> RunLog:
    """A run's output folder: the log :func:`_candidates` puts first (see ``readers.read_log``)."""
    candidates = _candidates(path)
    if all(map(tensorboard.is_event_file, candidates)):  # no log of its own: a folder of runs?
        runs = _run_folders(path)
        if len(runs) > 1 and not all(all(map(tensorboard.is_event_file, c)) for _, c in runs):
            raise _several_runs(path, runs)
        if len(runs) == 1 and (not candidates or not all(map(tensorboard.is_event_file, runs[0][1]))):
            log = readers._read_log(runs[0][0])
            log.meta["chosen_because"] = (f"the only run folder in {path}: "
                                          + str(log.meta.get("chosen_because", "")))
            return log
    if not candidates:
        raise readers.NotYet(
            "no training log found here: looked for trainer_state.json (also in checkpoint-N/),"
            " trainer_log.jsonl, events.out.tfevents.* and *.jsonl/*.csv with a step column",
            source=str(path))
    chosen = candidates[0]
    if tensorboard.is_event_file(chosen) and not tensorboard.available():
        # prefer a log we can read over one that needs a package that is not installed
        chosen = next((c for c in candidates if not tensorboard.is_event_file(c)), chosen)
    if tensorboard.is_event_file(chosen):
        log = tensorboard.read_run(path, [c for c in candidates if tensorboard.is_event_file(c)])
        chosen = Path(log.source)
    else:
        log = readers._read_file(chosen)
        if log.format == "csv" and scalar_export.run_name(chosen) is not None:
            _merge_scalar_exports(log, chosen, candidates)
    log.meta["candidates"] = [str(c) for c in candidates]
    log.meta["chosen_because"] = _chosen_because(path, chosen, candidates, log.meta)
    return log



def _candidates(directory: Path) -> list[Path]:
    found: list[Path] = []
    top = directory / "trainer_state.json"
    if top.is_file():
        found.append(top)
    checkpoints = []
    for child in directory.iterdir():
        m = _CHECKPOINT_RE.match(child.name)
        if m and (child / "trainer_state.json").is_file():
            checkpoints.append((int(m.group(1)), child / "trainer_state.json"))
    found.extend(p for _, p in sorted(checkpoints, reverse=True))
    if top.is_file() and checkpoints and _stale(top, found[1]):
        found[0], found[1] = found[1], found[0]
    lf = directory / "trainer_log.jsonl"
    if lf.is_file():
        # during a live LLaMA-Factory run the log is written every logging step and the newest
        # checkpoint only every save: the log is the fresher record when no top-level state exists
        fresher = not top.is_file() and checkpoints and lf.stat().st_mtime > found[-1].stat().st_mtime
        if fresher:
            found.insert(0, lf)
        else:
            found.append(lf)
    events = [p for p in directory.rglob(_TB_GLOB) if p.is_file()]
    events.sort(key=lambda p: (p.stat().st_mtime, str(p)), reverse=True)
    found.extend(events)
    for pattern in ("*.jsonl", "*.ndjson", "*.csv", "*.tsv"):
        for p in sorted(directory.glob(pattern)):
            if p != lf and p.is_file() and _has_step_column(p):
                found.append(p)
    return found


def _merge_scalar_exports(log: RunLog, chosen: Path, candidates: list[Path]) -> None:
    """TensorBoard's Download CSV saves one metric per file (run-<run>-tag-<tag>.csv): the other
    exports of the same run in the folder are read into the same log (train and eval loss
    together, so overfitting can be seen), the first file of a metric winning."""
    run = scalar_export.run_name(chosen)
    merged = [str(chosen)]
    for other in candidates:
        if other == chosen or scalar_export.run_name(other) != run:
            continue
        try:
            part = readers._read_csv(other)
        except InputError:
            continue  # (not a metric this reads: left out, and still listed as a candidate)
        if not set(part.series) - set(log.series):
            continue
        for name, series in part.series.items():
            log.series.setdefault(name, series)
            log.meta["columns"].setdefault(name, f"{other.name}: Value")  # type: ignore[union-attr]
        merged.append(str(other))
    if len(merged) > 1:
        log.series = {k: log.series[k] for k in CANONICAL if k in log.series}
        log.meta["merged_files"] = merged


def _run_folders(directory: Path) -> list[tuple[Path, list[Path]]]:
    """The subfolders holding a log of their own (an output_dir each), with their candidates."""
    runs = []
    try:
        children = sorted(p for p in directory.iterdir() if p.is_dir())
    except OSError:
        return []
    for child in children:
        if _CHECKPOINT_RE.match(child.name):
            continue
        found = _candidates(child)
        if found:
            runs.append((child, found))
    return runs


def _several_runs(directory: Path, runs: list[tuple[Path, list[Path]]]) -> InputError:
    """Several runs' output folders under one: which one to read is the user's to say (a verdict
    on the wrong run is worse than none); the most recently written first."""
    import time

    def written(found: list[Path]) -> float:
        try:
            return max(p.stat().st_mtime for p in found)
        except (OSError, ValueError):
            return 0.0

    ordered = sorted(runs, key=lambda r: written(r[1]), reverse=True)
    shown = [f"{run} ({found[0].relative_to(run)}, written "
             f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(written(found)))})"
             for run, found in ordered[:6]]
    more = f" and {len(runs) - 6} more" if len(runs) > 6 else ""
    return InputError(f"{len(runs)} training runs here, not one: " + "; ".join(shown) + more
                      + f". Pass one as PATH (the newest: {ordered[0][0]})", source=str(directory))


# The top-level trainer_state.json is written when a run ends (Trainer.save_state), after its
# last checkpoint: a checkpoint's that is newer by more than this is a later run's, in the same
# output_dir, and the top-level one a previous run's. The margin keeps copies (a download, a cp
# without -p), whose files get their times seconds apart in any order, on the top-level file.
_STALE_AFTER_S = 60.0


def _stale(top: Path, checkpoint: Path) -> bool:
    try:
        return checkpoint.stat().st_mtime > top.stat().st_mtime + _STALE_AFTER_S
    except OSError:
        return False


def _chosen_because(directory: Path, chosen: Path, candidates: list[Path],
                    meta: dict[str, object] | None = None) -> str:
    """Why this log of the directory's was read, in words, for the report."""
    meta = meta or {}
    if tensorboard.is_event_file(chosen):
        because = "the newest TensorBoard event file with training scalars"
        if meta.get("merged_files"):
            earlier = [f for f in meta["merged_files"] if f != str(chosen)]  # type: ignore[union-attr]
            because += (f", a run resumed at step {', '.join(map(str, meta['resumed_at']))}"  # type: ignore[arg-type]
                        f" (merged with the earlier event file(s) {', '.join(earlier)} for the "
                        "steps before; where they overlap the resumed run's points are kept)")
        if meta.get("passed_over"):
            because += (f"; passed over {len(meta['passed_over'])} without training scalars "  # type: ignore[arg-type]
                        "(add_hparams files, an empty or cut-off writer)")
        return because
    top = directory / "trainer_state.json"
    if chosen == top:
        return "the run's final trainer_state.json"
    if chosen.name == "trainer_state.json" and _CHECKPOINT_RE.match(chosen.parent.name):
        if top in candidates:
            return (f"{chosen.parent.name}'s trainer_state.json is newer than the top-level one "
                    "(a previous run's in the same output_dir?)")
        return f"the newest checkpoint's ({chosen.parent.name}: the highest step)"
    if meta.get("merged_files") and scalar_export.run_name(chosen) is not None:
        return (f"TensorBoard CSV exports of run {scalar_export.run_name(chosen)!r}, one metric "
                f"each, read together: {', '.join(Path(f).name for f in meta['merged_files'])}")  # type: ignore[union-attr]
    if chosen.name == "trainer_log.jsonl" and any(c.name == "trainer_state.json" for c in candidates):
        return "LLaMA-Factory's live log, written since the newest checkpoint"
    if candidates and tensorboard.is_event_file(candidates[0]) and not tensorboard.is_event_file(chosen):
        return "readable without the tensorboard package"
    return "the first log found" if len(candidates) > 1 else "the only log found"


def _has_step_column(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", newline="") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        try:
            row = json.loads(first)
        except ValueError:
            return False
        return isinstance(row, dict) and (
            "current_steps" in row or readers._pick({readers._norm(k): k for k in row}, readers.STEP_KEYS) is not None)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    header = next(csv.reader([first], delimiter=delimiter), [])
    return readers._pick({readers._norm(k): k for k in header}, readers.STEP_KEYS) is not None
