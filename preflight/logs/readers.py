"""Read the logs trainers already write into a :class:`RunLog`.

Formats: Hugging Face ``trainer_state.json`` (its ``log_history``), LLaMA-Factory
``trainer_log.jsonl``, plain JSONL or CSV with a step column (W&B history exports included), and
TensorBoard event files when the ``tensorboard`` package is installed.

Speed: the points are never turned into per-point Python objects of our own: the columns are
pulled out of the parsed rows with C-level iterators (``compress``/``map``/``itemgetter``), and a
JSONL file is parsed by one ``json.loads`` of its lines joined into an array, falling back to a
line-by-line parse only to name the line that is broken. A large ``trainer_state.json`` or
LLaMA-Factory ``trainer_log.jsonl`` is parsed a slice of entries at a time, with the same result
(:mod:`preflight.logs.state_chunks`, :mod:`preflight.logs.jsonl_chunks`).
"""

from __future__ import annotations

import csv
import gc
import json
import math
import mmap
import operator
import os
import re
from collections.abc import Iterable
from itertools import compress, islice, repeat
from pathlib import Path
from typing import Any

from preflight.errors import InputError
from preflight.logs import scalar_export
from preflight.logs.series import CANONICAL, RunLog, Series


class NotYet(InputError):
    """What a job that has only just started looks like: no log file yet, an empty one, nothing
    logged in it yet. An input error for one reading; ``--follow`` waits for the log instead."""

# canonical name -> (accepted keys/columns, most wanted first; unit). Matched case-insensitively.
# Besides the Trainer's keys (and its TensorBoard/W&B tags, "train/" and "eval/" prefixed by
# transformers' rewrite_logs): PyTorch Lightning's self.log("train_loss", on_step=True,
# on_epoch=True) writes train_loss_step and train_loss_epoch (the per-step one is the curve; the
# epoch mean only where nothing finer was logged), and its validation logs val_loss (or
# val_loss_epoch); the PyTorch TensorBoard tutorial's add_scalar("Loss/train") / ("Loss/val").
# LearningRateMonitor's "lr-<Optimizer>" is matched by pattern (_LR_MONITOR).
ALIASES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "train_loss": (("loss", "train/loss", "train_loss", "training_loss", "train/train_loss",
                    "train_loss_step", "train/loss_step", "loss/train", "train_loss_epoch",
                    "train/loss_epoch"), None),
    "eval_loss": (("eval_loss", "eval/loss", "val_loss", "val/loss", "validation_loss",
                   "validation/loss", "valid_loss", "valid/loss", "val_loss_epoch",
                   "val/loss_epoch", "validation/loss_epoch", "valid/loss_epoch", "loss/val",
                   "loss/validation", "loss/valid", "loss/eval"), None),
    "learning_rate": (("learning_rate", "lr", "train/learning_rate", "train/lr"), None),
    "grad_norm": (("grad_norm", "train/grad_norm", "gradient_norm", "train/gradient_norm"), None),
    "epoch": (("epoch", "train/epoch"), None),
    # preference optimisation (TRL's DPO/ORPO/CPO/KTO trainers log these with the loss; see
    # logs/fit.py, _preference_fit): the share of pairs whose chosen answer out-scores the rejected one,
    # and the mean reward margin between them
    "pref_accuracy": (("rewards/accuracies", "train/rewards/accuracies"), None),
    "pref_margin": (("rewards/margins", "train/rewards/margins"), None),
}
# Lightning's LearningRateMonitor: "lr-AdamW", or "lr-AdamW/pg1" for its first parameter group
_LR_MONITOR = re.compile(r"^lr-[a-z0-9_.]+(/pg1)?$")
# throughput: the first of these present wins; its unit goes with it. (The Trainer's
# end-of-training train_samples_per_second is a run average, not a series: in a trainer_state.json
# it is in the summary entry, and its TensorBoard tag train/train_samples_per_second is left out.)
THROUGHPUT: tuple[tuple[str, str], ...] = (
    ("train_samples_per_second", "samples/s"),
    ("samples_per_second", "samples/s"),
    ("train/samples_per_second", "samples/s"),
    ("train_tokens_per_second", "tokens/s"),
    ("tokens_per_second", "tokens/s"),
    ("train/tokens_per_second", "tokens/s"),
)
STEP_KEYS = ("step", "global_step", "train/global_step", "trainer/global_step", "iteration", "iter",
             "_step")

# LLaMA-Factory's LogCallback.on_log (src/llamafactory/train/callbacks.py) writes, per line:
# current_steps, total_steps, loss, eval_loss, predict_loss, reward, accuracy, lr, epoch,
# percentage, elapsed_time, remaining_time, and when tokens are counted throughput (tokens/s of
# input) and total_tokens; None values are dropped. Its eval/predict progress lines carry only
# current_steps, total_steps, percentage and the times.
# Its "accuracy" is the DPO trainer's rewards/accuracies (on_log reads
# state.log_history[-1].get("rewards/accuracies")); absent (None, dropped) for other stages.
LLAMAFACTORY_COLUMNS = {"train_loss": "loss", "eval_loss": "eval_loss", "learning_rate": "lr",
                        "epoch": "epoch", "pref_accuracy": "accuracy"}
_LLAMAFACTORY_RUN_KEYS = {"current_steps", "total_steps", "percentage", "elapsed_time",
                          "remaining_time", "total_tokens"}

# trainer_state.json top-level keys worth keeping (everything but log_history and callbacks' state)
_HF_META_SKIP = {"log_history", "stateful_callbacks", "is_local_process_zero",
                 "is_world_process_zero", "is_hyper_param_search", "trial_name", "trial_params"}
# a log_history entry with this key is the end-of-training summary (Trainer's speed_metrics
# "train_runtime", with train_loss averaged over the run), not a point
_HF_SUMMARY_KEY = "train_runtime"
# eval entries carry these; they are about the evaluation, not training, so not throughput etc.
_NOT_METRICS = {"step", "epoch", "total_flos", "num_input_tokens_seen", "eval_runtime",
                "eval_samples_per_second", "eval_steps_per_second", "train_runtime",
                "train_steps_per_second"}



# --------------------------------------------------------------------------------------------
# entry point


def read_log(path: Path) -> RunLog:
    """Read a training log: a file, or a run's output directory searched for the known files.

    In a directory the first of these is read, and the others found are listed in
    ``meta["candidates"]`` (why the first, in words, in ``meta["chosen_because"]``):
    ``trainer_state.json`` at the top level, the one in the newest (highest N) ``checkpoint-N``
    folder (first when it is more than a minute newer than the top-level one: that is a previous
    run's), ``trainer_log.jsonl``, TensorBoard event files (the newest, at any
    depth, e.g. ``runs/<date>/``), then top-level ``*.jsonl`` / ``*.csv`` with a step column.
    Raises :class:`InputError` naming the file (and line) for anything unreadable.
    """
    path = Path(path)
    # A million-point log is a million small dicts; the cyclic GC walking them again and again
    # while they are built costs a third of the parse, and they hold no cycles.
    enabled = gc.isenabled()
    gc.disable()
    try:
        log = _read_log(path)
    finally:
        if enabled:
            gc.enable()
    if "resumed_at" not in log.meta:
        at = sorted({step for s in log.series.values() for step in s.resumed_at})
        if at:
            log.meta["resumed_at"] = at
    return log


def _read_log(path: Path) -> RunLog:
    if not path.exists():
        raise NotYet("no such file or directory", source=str(path))
    if path.is_dir():
        from preflight.logs.folders import read_folder

        return read_folder(path)
    return _read_file(path)


def _read_file(path: Path) -> RunLog:
    name = path.name.lower()
    if name.startswith("events.out.tfevents"):
        from preflight.logs.tensorboard import read_event_file

        return read_event_file(path)
    if name.endswith((".csv", ".tsv")):
        return _read_csv(path)
    if name.endswith((".jsonl", ".ndjson")):
        return _read_jsonl(path)
    if name.endswith(".json"):
        return _read_trainer_state(path)
    text = _read_text(path)
    # unknown extension: decide by content
    head = text.lstrip()[:1]
    if head == "{":
        first_line = text.lstrip().split("\n", 1)[0]
        if '"log_history"' in text[:4096] or not _parses(first_line):
            return _read_trainer_state(path, text)
        return _read_jsonl(path, text)
    if head == "[":
        raise InputError("a JSON array is not a log format this reads (trainer_state.json, JSONL,"
                         " CSV)", source=str(path))
    return _read_csv(path)


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _read_text(path: Path) -> str:
    return _decode(_read_bytes(path), str(path))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", source=str(path)) from e


def _mapped(path: Path, min_bytes: int, read) -> RunLog | None:  # noqa: ANN001 - (source, bytes) -> RunLog | None
    """``read(source, the file mapped into memory)`` for a file of at least ``min_bytes`` (its
    slices are copied as they are parsed, never the whole file: 0.1 s less on 120 MB), or None:
    smaller, not a regular file, or not one ``read`` takes."""
    try:
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size < min_bytes:
                return None
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return read(str(path), mapped)
    except (OSError, ValueError):
        return None  # the plain reading names the problem


def _decode(data: bytes, source: str) -> str:
    """UTF-8 text with universal newlines, as ``Path.read_text`` gives it."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not a text file (byte {e.start} is not UTF-8)", source=source) from e
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


# --------------------------------------------------------------------------------------------
# column extraction (shared)


def _norm(column: str) -> str:
    """Column name for matching: lower case; a W&B panel export's ``<run> - `` prefix dropped."""
    name = str(column).strip().lower()
    if " - " in name:
        name = name.rsplit(" - ", 1)[1].strip()
    return name


def _pick(names: dict[str, str], wanted: Iterable[str]) -> str | None:
    """The original column for the first of ``wanted`` present in ``names`` (normalised -> original)."""
    for w in wanted:
        if w in names:
            return names[w]
    return None


def _column_plan(keys: Iterable[str], step_key: str) -> tuple[dict[str, tuple[str, str | None]], list[str]]:
    """canonical name -> (column, unit) for the columns present; and the unrecognised metrics."""
    names: dict[str, str] = {}
    for k in sorted(keys, key=str):  # where two keys name one metric ("Loss", "loss"): always the same
        if isinstance(k, str) and not k.lower().endswith(("__min", "__max")):
            names.setdefault(_norm(k), k)
    plan: dict[str, tuple[str, str | None]] = {}
    for canonical, (aliases, unit) in ALIASES.items():
        col = _pick(names, aliases)
        if col is not None:
            plan[canonical] = (col, unit)
    if "learning_rate" not in plan:
        monitor = sorted(n for n in names if _LR_MONITOR.match(n))
        if monitor:
            plan["learning_rate"] = (names[monitor[0]], None)
    for alias, unit in THROUGHPUT:
        if alias in names:
            plan["throughput"] = (names[alias], unit)
            break
    used = {c for c, _ in plan.values()} | {step_key}
    other = sorted(k for k in names.values() if k not in used and _norm(k) not in _NOT_METRICS
                   and _norm(k) not in STEP_KEYS)
    return plan, other


class _Rows:
    """Parsed rows (dicts) and the step column, with the work shared between series cached:
    most metrics are logged on the same rows, so their steps are pulled out and checked once."""

    def __init__(self, rows: list[dict], step_key: str, source: str, where, resumes: bool = False) -> None:
        self.rows, self.step_key, self.source, self.where = rows, step_key, source, where
        self.resumes = resumes  # steps going back mean a resumed run (see _ordered)
        # (rows kept, their steps, whether those ascend) for every set of rows seen so far: loss,
        # learning rate and grad norm are logged on the same rows, eval metrics on others
        self._steps: list[tuple[list[bool] | None, list[int], bool]] = []

    def series(self, column: str, name: str, unit: str | None) -> Series | None:
        """One series without a Python-level loop per point (``map``/``compress`` run in C).

        A row counts when it has ``column`` with a value other than null: ``dict.get`` finds
        both in one pass (None for absent and null alike), and a null-free column, the common
        case, needs no filtering at all."""
        rows = self.rows
        values = list(map(dict.get, rows, repeat(column)))
        if not values:
            return None
        kinds = set(map(type, values))
        keep: list[bool] | None = None
        if type(None) in kinds:  # not logged on some rows, or logged as null: no point there
            keep = list(map(operator.is_not, values, repeat(None)))
            values = list(compress(values, keep))
            if not values:
                return None
            kinds.discard(type(None))

        def where_value(i: int):
            index: Any = range(len(rows))
            if keep is not None:
                index = list(compress(index, keep))
            return self.where(index[i])

        cached = next((c for c in self._steps if c[0] == keep), None)
        if cached is None:
            sub = rows if keep is None else compress(rows, keep)
            raw_steps = list(map(operator.itemgetter(self.step_key), sub))
            steps = _as_steps(raw_steps, self.step_key, self.source, where_value)
            cached = (keep, steps, _ascending(steps))
            self._steps.append(cached)
        if kinds != {float}:
            values = _as_values(values, column, self.source, where_value)
        return _ordered(name, cached[1], values, unit, ascending=cached[2], resumes=self.resumes)


def _as_numbers(steps: list, values: list, column: str, step_key: str, source: str,
                where) -> tuple[list[int], list[float]]:
    """Steps as ints and values as floats; an InputError at the first that is neither."""
    steps = _as_steps(steps, step_key, source, where)
    if set(map(type, values)) != {float}:
        values = _as_values(values, column, source, where)
    return steps, values


def _as_steps(steps: list, step_key: str, source: str, where) -> list[int]:
    kinds = set(map(type, steps))
    if kinds == {int}:
        return steps
    try:
        return list(map(int, steps)) if kinds <= {int, str} else list(map(_int_step, steps))
    except (TypeError, ValueError):
        try:
            return list(map(_int_step, steps))
        except (TypeError, ValueError):
            i = next(i for i, s in enumerate(steps) if not _is_number(s, step=True))
            raise _bad(source, where(i), f"{step_key} is {steps[i]!r}, not a step number") \
                from None


def _as_values(values: list, column: str, source: str, where) -> list[float]:
    try:
        return list(map(_float, values))
    except (TypeError, ValueError):
        i = next(i for i, v in enumerate(values) if not _is_number(v))
        raise _bad(source, where(i), f"{column} is {values[i]!r}, not a number") from None


def _bad(source: str, at: int | str | None, message: str) -> InputError:
    if isinstance(at, str):  # a JSON path
        return InputError(f"{at}: {message}", source=source)
    return InputError(message, source=source, line=at)


def _int_step(s: Any) -> int:
    if isinstance(s, bool):
        raise TypeError("bool step")
    f = float(s)
    if not math.isfinite(f) or not f.is_integer():
        raise ValueError("not a whole number")
    return int(f)


def _float(v: Any) -> float:
    if isinstance(v, bool):
        raise TypeError("bool value")
    return float(v)


def _is_number(v: Any, step: bool = False) -> bool:
    try:
        _int_step(v) if step else _float(v)
    except (TypeError, ValueError):
        return False
    return True


def _ascending(steps: list[int]) -> bool:
    return all(map(operator.lt, steps, islice(steps, 1, None)))


# More steps going back than this is not a few resumes but an unordered file: sorted instead.
_MAX_RESUMES = 20


def _final_timeline(steps: list[int], values: list[float]) -> tuple[list[int], list[float], tuple[int, ...]] | None:
    """A resumed run's log read as what the model went through: where the steps go back to s
    (training resumed from a checkpoint at s, or started over), the points logged before with a
    step at or after s are of an abandoned timeline and are dropped. Returns the points left (in
    logged order, ascending but for repeats) and the steps resumed at; None where the steps go
    back more than ``_MAX_RESUMES`` times (an unordered file, sorted instead)."""
    descents = list(compress(range(1, len(steps)), map(operator.gt, steps, islice(steps, 1, None))))
    if not descents or len(descents) > _MAX_RESUMES:
        return None
    bounds = [0, *descents, len(steps)]
    cutoff: float = math.inf
    parts: list[tuple[list[int], list[float]]] = []
    for k in range(len(descents), -1, -1):  # from the last segment back: each cut at the restarts after it
        seg_steps, seg_values = steps[bounds[k]:bounds[k + 1]], values[bounds[k]:bounds[k + 1]]
        if cutoff != math.inf:
            below = list(map(operator.lt, seg_steps, repeat(cutoff)))
            seg_steps, seg_values = list(compress(seg_steps, below)), list(compress(seg_values, below))
        parts.append((seg_steps, seg_values))
        if k:
            cutoff = min(cutoff, steps[bounds[k]])
    out_steps = [x for part, _ in reversed(parts) for x in part]
    out_values = [x for _, part in reversed(parts) for x in part]
    return out_steps, out_values, tuple(steps[d] for d in descents)


def _ordered(name: str, steps: list[int], values: list[float], unit: str | None,
             ascending: bool | None = None, resumes: bool = False) -> Series:
    """Steps ascending; where a step repeats, its last value (and the first one's place).

    ``resumes``: the format only goes back in steps when a run was resumed (LLaMA-Factory appends
    to its trainer_log.jsonl across a resume), so the later points win from where it went back
    (:func:`_final_timeline`); otherwise steps out of order are sorted."""
    if resumes and not (_ascending(steps) if ascending is None else ascending):
        timeline = _final_timeline(steps, values)
        if timeline is not None:
            kept_steps, kept_values, at = timeline
            s = _ordered(name, kept_steps, kept_values, unit)
            s.resumed_at = at
            return s
    if not (_ascending(steps) if ascending is None else ascending):
        if all(map(operator.le, steps, islice(steps, 1, None))):
            # ascending but for repeats (an eval logged at the step of a training point): keep
            # the last of each run of equal steps, which is what the dict below gives, in C
            last = list(map(operator.ne, steps, islice(steps, 1, None)))
            last.append(True)
            return Series(name=name, steps=list(compress(steps, last)),
                          values=list(compress(values, last)), unit=unit)
        by_step = dict(zip(steps, values))  # later duplicates overwrite: the last value is kept
        steps = sorted(by_step)
        values = list(map(by_step.__getitem__, steps))
    return Series(name=name, steps=steps, values=values, unit=unit)


def _build(rows: list[dict], step_key: str, plan: dict[str, tuple[str, str | None]], source: str,
           where, resumes: bool = False) -> dict[str, Series]:
    table = _Rows(rows, step_key, source, where, resumes)
    series: dict[str, Series] = {}
    for canonical in CANONICAL:
        if canonical in plan:
            column, unit = plan[canonical]
            s = table.series(column, canonical, unit)
            if s is not None:
                series[canonical] = s
    return series


def _no_metric(source: str, what: str, keys: Iterable[str], line: int | None = None) -> InputError:
    shown = sorted(map(str, keys))
    listed = ", ".join(shown[:30]) + (f" ... ({len(shown)} in all)" if len(shown) > 30 else "")
    wanted = "loss, eval_loss, learning_rate/lr, grad_norm, epoch, *_per_second"
    return InputError(f"no recognisable metric ({wanted}); its {what}: {listed or 'none'}",
                      source=source, line=line)


# --------------------------------------------------------------------------------------------
# Hugging Face trainer_state.json


def _loads(text: str) -> object:
    """json.loads, through orjson when it is installed (``pip install 'preflight-ml[fast]'``:
    several times faster on a million-point log). orjson rejects the NaN and Infinity that
    Python's json writes for a diverged loss; those documents, and every error message with its
    line, come from the standard parser."""
    try:
        import orjson
    except ImportError:
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


_UNPARSED = object()


def _loads_fast(data: bytes) -> object:
    """The file parsed by orjson straight from its bytes (no decoding into a str first: a tenth
    of a second on a million-point log), or ``_UNPARSED`` when orjson is not installed or
    rejects the bytes: invalid UTF-8, a BOM, NaN/Infinity, an error to word. The standard
    parser then reads the text, so every result and every message is the same as without."""
    try:
        import orjson
    except ImportError:
        return _UNPARSED
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _UNPARSED


def _json_kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(value), type(value).__name__)


def _read_trainer_state(path: Path, text: str | None = None) -> RunLog:
    source = str(path)
    state = _UNPARSED
    if text is None:
        # a large file is parsed a slice of entries at a time: the same RunLog in a third of the
        # time, or None to leave the file to this reader
        from preflight.logs import state_chunks

        log = _mapped(path, state_chunks.MIN_BYTES, state_chunks.read_in_chunks)
        if log is not None:
            return log
        data = _read_bytes(path)
        state = _loads_fast(data)
        if state is _UNPARSED:
            text = _decode(data, source)
    if state is _UNPARSED and not text.strip():
        raise (NotYet if text == "" else InputError)(
            "empty file" + (" (a run that has not saved its state yet?)" if text == "" else ": only whitespace"),
            source=source)
    try:
        if state is _UNPARSED:
            state = _loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and e.lineno > 1 and _parses(text.split("\n", 1)[0]):
            return _read_jsonl(path, text)  # JSON Lines under a .json name
        raise InputError(f"invalid JSON: {e.msg} (column {e.colno})", source=source,
                         line=e.lineno) from None
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        keys = list(state) if isinstance(state, dict) else []
        raise InputError("not a trainer_state.json: no log_history list; its keys: "
                         + (", ".join(map(str, keys[:30])) or f"none (a JSON {_json_kind(state)})"),
                         source=source)
    history = state["log_history"]
    if set(map(type, history)) - {dict}:
        i = next(i for i, e in enumerate(history) if not isinstance(e, dict))
        raise InputError(f"log_history[{i}]: not an object", source=source)
    meta: dict[str, object] = {k: v for k, v in state.items() if k not in _HF_META_SKIP}
    masks: list[list[bool]] = []  # filters applied to log_history, to name an entry by index
    # the end-of-training summary (train_loss averaged over the run, train_runtime ...) is not a
    # point; keep it whole in meta
    summary = list(map(operator.contains, history, repeat(_HF_SUMMARY_KEY)))
    if any(summary):
        meta["summary"] = list(compress(history, summary))[-1]
        masks.append(list(map(operator.not_, summary)))
        history = list(compress(history, masks[-1]))
    has_step = list(map(operator.contains, history, repeat("step")))
    if not all(has_step):
        meta["entries_without_step"] = has_step.count(False)
        masks.append(has_step)
        history = list(compress(history, has_step))

    def where(i: int) -> str:
        index: Any = range(len(state["log_history"]))
        for mask in masks:
            index = list(compress(index, mask))
        return f"log_history[{index[i]}]"

    if not history and not state["log_history"]:
        raise NotYet("log_history is empty: nothing logged yet (the first log comes at step "
                         f"logging_steps={state.get('logging_steps', '?')})", source=source)
    keys = set().union(*history) if history else set()
    plan, other = _column_plan(keys, "step")
    series = _build(history, "step", plan, source, where, resumes=True)
    if not series:
        raise _no_metric(source, "log_history keys", keys or ["(log_history is empty)"])
    meta["columns"] = {k: c for k, (c, _) in plan.items() if k in series}
    meta["other_metrics"] = other
    return RunLog(source=source, format="hf-trainer-state", series=series, meta=meta)


# --------------------------------------------------------------------------------------------
# JSONL: LLaMA-Factory trainer_log.jsonl and generic


def _parse_jsonl(path: Path, text: str) -> tuple[list[dict], list[int] | None, bool]:
    """Rows, their 1-based line numbers (None when every line is a row), and whether a
    truncated last line (a run still being written) was dropped."""
    source = str(path)
    truncated = False
    if text and not text.endswith("\n"):
        cut = text.rfind("\n") + 1
        last = text[cut:]
        if last.strip() and not _parses(last):
            truncated = True
            text = text[:cut]
    body = text.removesuffix("\n")
    if body and "\r" in body:
        body = body.replace("\r\n", "\n")
    if body:
        try:
            rows = _loads("[" + body.replace("\n", ",") + "]")
        except json.JSONDecodeError:
            rows = None
        if (rows is not None and len(rows) == body.count("\n") + 1
                and not set(map(type, rows)) - {dict}):
            return rows, None, truncated
    # slow path: a blank line, or a broken one to name
    rows, lines = [], []
    for n, line in enumerate(body.split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"not JSON: {e.msg} (column {e.colno})", source=source,
                             line=n) from None
        if not isinstance(row, dict):
            raise InputError(f"a JSON {type(row).__name__}, not an object", source=source, line=n)
        rows.append(row)
        lines.append(n)
    return rows, lines, truncated


def _read_jsonl(path: Path, text: str | None = None) -> RunLog:
    source = str(path)
    if text is None:
        # a large LLaMA-Factory log is parsed some lines at a time: the same RunLog, or None
        from preflight.logs import jsonl_chunks

        log = _mapped(path, jsonl_chunks.MIN_BYTES, jsonl_chunks.read_in_chunks)
        if log is not None:
            return log
        text = _read_text(path)
    rows, lines, truncated = _parse_jsonl(path, text)
    meta: dict[str, object] = {}
    if truncated:
        meta["truncated_last_line"] = True
    if not rows:
        raise NotYet("no log lines" + (" (only a truncated one)" if truncated else ""),
                         source=source)

    def line_of(i: int) -> int:
        return lines[i] if lines is not None else i + 1

    first_keys = set(rows[0])
    if "current_steps" in first_keys and "total_steps" in first_keys:
        return _llamafactory(rows, source, meta, line_of)

    keys = set().union(*rows)
    names = {_norm(k): k for k in keys if isinstance(k, str)}
    step_key = _pick(names, STEP_KEYS)
    if step_key is None:
        raise InputError("no step column (" + ", ".join(STEP_KEYS) + "); its keys: "
                         + ", ".join(sorted(keys)[:30]), source=source, line=line_of(0))
    has_step = list(map(operator.contains, rows, repeat(step_key)))
    if not all(has_step):
        meta["rows_without_step"] = has_step.count(False)
        index = list(compress(range(len(rows)), has_step))
        rows = list(compress(rows, has_step))
        outer = line_of

        def line_of(i: int) -> int:
            return outer(index[i])

    plan, other = _column_plan(keys, step_key)
    series = _build(rows, step_key, plan, source, line_of)
    if not series:
        raise _no_metric(source, "keys", keys)
    meta["step_column"] = step_key
    meta["columns"] = {k: c for k, (c, _) in plan.items() if k in series}
    meta["other_metrics"] = other
    return RunLog(source=source, format="jsonl", series=series, meta=meta)


def _llamafactory(rows: list[dict], source: str, meta: dict[str, object], line_of) -> RunLog:
    has_step = list(map(operator.contains, rows, repeat("current_steps")))
    if not all(has_step):
        i = has_step.index(False)
        raise InputError("no current_steps in this line", source=source, line=line_of(i))
    series: dict[str, Series] = {}
    columns: dict[str, str] = {}
    table = _Rows(rows, "current_steps", source, line_of, resumes=True)
    for canonical in CANONICAL:
        if canonical == "throughput":
            column, unit = "throughput", "tokens/s"  # num_input_tokens_seen / elapsed seconds
        elif canonical in LLAMAFACTORY_COLUMNS:
            column, unit = LLAMAFACTORY_COLUMNS[canonical], None
        else:
            continue  # grad_norm is not in trainer_log.jsonl
        s = table.series(column, canonical, unit)
        if s is not None:
            series[canonical] = s
            columns[canonical] = column
    # the run's length is on its training lines: an evaluation or prediction run into the same
    # output_dir appends progress lines (current_steps, total_steps of ITS batches, times only)
    last = next((r for r in reversed(rows) if not r.keys() <= _LLAMAFACTORY_RUN_KEYS), rows[-1])
    if isinstance(last.get("total_steps"), (int, float)):
        meta["max_steps"] = int(last["total_steps"])
    meta["global_step"] = max(map(operator.itemgetter("current_steps"), rows))
    for k in ("percentage", "elapsed_time", "remaining_time", "total_tokens"):
        if k in last:
            meta[k] = last[k]
    keys = set().union(*rows)
    meta["columns"] = columns
    meta["other_metrics"] = sorted(keys - set(columns.values()) - _LLAMAFACTORY_RUN_KEYS
                                   - {"throughput"})
    if not series:
        raise _no_metric(source, "keys", keys)
    return RunLog(source=source, format="llamafactory-jsonl", series=series, meta=meta)


# --------------------------------------------------------------------------------------------
# CSV


def _read_csv(path: Path) -> RunLog:
    source = str(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise InputError("empty file", source=source)
            try:
                rows = list(reader)
            except csv.Error as e:
                raise InputError(f"not CSV: {e}", source=source, line=reader.line_num) from None
    except UnicodeDecodeError as e:
        raise InputError(f"not a text file (byte {e.start} is not UTF-8)", source=source) from e
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", source=source) from e
    width = len(header)
    row_lines: list[int] | None = None  # 1-based line of each row, when blank lines were dropped
    lengths = list(map(len, rows))
    if 0 in lengths:
        nonblank = list(map(bool, lengths))
        row_lines = [i + 2 for i in compress(range(len(rows)), nonblank)]
        rows = list(compress(rows, nonblank))
        lengths = list(compress(lengths, nonblank))
    if set(lengths) - {width}:
        i = next(i for i, n in enumerate(lengths) if n != width)
        raise InputError(f"{lengths[i]} fields, the header has {width}", source=source,
                         line=row_lines[i] if row_lines else i + 2)
    names = {}
    for k in header:
        if not k.lower().endswith(("__min", "__max")):
            names.setdefault(_norm(k), k)
    step_col = _pick(names, STEP_KEYS)
    if step_col is None:
        raise InputError("no step column (" + ", ".join(STEP_KEYS) + "); its columns: "
                         + ", ".join(header[:30]), source=source, line=1)
    columns = list(zip(*rows)) if rows else [() for _ in header]
    by_name = dict(zip(header, columns))  # first of a repeated header name wins below
    for h, col in zip(reversed(header), reversed(columns)):
        by_name[h] = col
    plan, other = _column_plan(header, step_col)
    if not plan and scalar_export.is_scalar_export(set(names)):
        plan = _scalar_export_plan(path, names["value"], header)
        other = []
    step_cells = by_name[step_col]
    series: dict[str, Series] = {}
    for canonical in CANONICAL:
        if canonical not in plan:
            continue
        column, unit = plan[canonical]
        cells = by_name[column]
        present = [bool(c.strip()) and bool(s.strip()) for c, s in zip(cells, step_cells)]
        index = list(compress(range(len(cells)), present))
        values = list(compress(cells, present))
        steps = list(compress(step_cells, present))
        if not values:
            continue
        steps, values = _as_numbers(steps, values, column, step_col, source,
                                    lambda i, index=index: row_lines[index[i]] if row_lines
                                    else index[i] + 2)
        series[canonical] = _ordered(canonical, steps, values, unit)
    if not series:
        raise _no_metric(source, "columns", header)
    meta: dict[str, object] = {
        "step_column": step_col,
        "columns": {k: c for k, (c, _) in plan.items() if k in series},
        "other_metrics": other,
    }
    return RunLog(source=source, format="csv", series=series, meta=meta)


def _scalar_export_plan(path: Path, value_column: str, header: list[str]) -> dict[str, tuple[str, str | None]]:
    """For a one-scalar export (Wall time, Step, Value): the metric its file name names."""
    for name in scalar_export.tag_names(path):
        plan, _ = _column_plan([name], "")
        if plan:
            ((canonical, (_, unit)),) = plan.items()
            return {canonical: (value_column, unit)}
    raise InputError(
        f"a one-metric export ({', '.join(header)}) names its metric in the file name, and "
        f"{scalar_export.tag_names(path)[0]!r} is not one this reads (loss, eval_loss, "
        "learning_rate/lr, grad_norm, epoch, *_per_second): save it as e.g. "
        "run-<run>-tag-train_loss.csv, as TensorBoard's Download CSV names it", source=str(path))
