"""A large ``trainer_state.json`` read by several processes at once, each parsing a slice of its
``log_history``; the same :class:`RunLog` as the one-process reader, or None to use that reader.

Why: a run that logged every step for a million steps is 120 MB of JSON. One process spends a
second in the parser building a million dicts and as long again pulling the columns out of them.
The entries of ``log_history`` are independent, so the array text is cut at entry boundaries
(``},{``) and each slice is parsed and reduced to columns in a forked child, which sends back
packed arrays (``array('d')``/``array('q')`` bytes): the parent never builds the dicts.

Exactness. A cut is trusted only when every piece parses on its own: ``[`` + slice + ``]`` as an
array in each child, and the document with the array emptied (``"log_history": []``) in the
parent. If the text were cut inside a string or a nested value, some piece would be unbalanced
and fail to parse; JSON has one parse, so pieces that all parse are exactly the original entries.
Anything else unusual (an entry that is not an object, a value that is not a plain number, a step
that is not an int, columns picked differently across slices, a child that fails or dies) returns
None, and the one-process reader reads the file: every error message with its entry index comes
from there, and every result is the same as without this module (tests compare both).

Only where it pays and is safe: Linux's ``fork``, more than one usable CPU, no other thread running (a
fork copies only the calling thread), and a file of at least :data:`MIN_BYTES`.
"""

from __future__ import annotations

import gc
import json
import operator
import os
import pickle
import re
import sys
import threading
from array import array
from itertools import compress, islice, repeat
from typing import Any

from preflight.logs import readers  # the one-process reader's rules, shared
from preflight.logs.series import CANONICAL, RunLog, Series

MIN_BYTES = 16 << 20  # below this one process is as fast: forking and merging cost ~50 ms
MAX_WORKERS = 8
_PIECE_BYTES = 8 << 20  # no slice smaller than this

_KEY = re.compile(rb'"log_history"[ \t\n\r]*:[ \t\n\r]*\[')
# between two entries (when outside any string): JSON whitespace only, as the parser allows
_BETWEEN = re.compile(rb"\}[ \t\n\r]*,[ \t\n\r]*\{")


def workers_available() -> int:
    """How many processes may parse at once here: 1 where forking is unavailable or unsafe."""
    # macOS can abort a forked child that touches system frameworks (why multiprocessing spawns
    # there): Linux only
    if not sys.platform.startswith("linux") or threading.active_count() > 1:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


def read_parallel(source: str, data: bytes, workers: int | None = None) -> RunLog | None:
    """The log read in ``workers`` processes (default :func:`workers_available`), or None when
    this file is not one to read this way; the caller then reads it in one process."""
    workers = workers_available() if workers is None else workers
    pieces = min(workers, len(data) // _PIECE_BYTES)
    if pieces < 2 or len(data) < MIN_BYTES or threading.active_count() > 1:
        return None  # (a fork copies only this thread: a lock another holds would never be freed)
    cut = _cut(data, pieces)
    if cut is None:
        return None
    slices, array_text = cut
    state = _parse_rest(data, *array_text)
    if state is None:
        return None
    results = _run_children(data, slices)
    if results is None:
        return None
    return _merge(source, state, results)


# --------------------------------------------------------------------------------------------
# cutting


def _cut(data: bytes, pieces: int) -> tuple[list[tuple[int, int]], tuple[int, int]] | None:
    """The slices (start, stop) of the entries text, each whole entries with the separating
    comma between slices left out; and where the array's text starts (after ``[``) and stops
    (at ``]``)."""
    if data.count(b'"log_history"') != 1:
        return None
    m = _KEY.search(data)
    if m is None:
        return None
    first = start = m.end()
    span = len(data) - first
    slices: list[tuple[int, int]] = []
    for i in range(1, pieces):
        between = _BETWEEN.search(data, max(first + span * i // pieces, start))
        if between is None:
            break
        slices.append((start, between.start() + 1))  # up to and with the "}"
        start = between.end() - 1  # from the "{"
    if not slices:
        return None
    # entries of numbers hold no "]": the first after the last cut closes the array (if an entry
    # holds a list, the last slice ends inside it and fails to parse)
    last = data.find(b"]", start)
    if last < 0 or not data[max(start, last - 256):last].rstrip(b" \t\n\r").endswith(b"}"):
        return None
    slices.append((start, last))
    return slices, (first, last)


def _parse_rest(data: bytes, first: int, last: int) -> dict | None:
    """The document with its log_history emptied, parsed strictly; None unless it is an object
    whose log_history is that empty list."""
    try:
        state = json.loads((data[:first] + data[last:]).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(state, dict) or state.get("log_history") != []:
        return None
    return state


# --------------------------------------------------------------------------------------------
# the children


def _run_children(data: bytes, slices: list[tuple[int, int]]) -> list[dict] | None:
    children: list[tuple[int, int]] = []
    try:
        for start, stop in slices:
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never returns, whatever happens
                status = 1
                try:
                    os.close(read_fd)
                    piece = b"[" + data[start:stop] + b"]"
                    rows = _rows(piece)
                    result = None if rows is None else _columns(rows, piece)
                    with os.fdopen(write_fd, "wb") as out:
                        pickle.dump(result, out, protocol=pickle.HIGHEST_PROTOCOL)
                    status = 0
                finally:
                    os._exit(status)  # with the rows still held: freeing them would only cost time
            os.close(write_fd)
            children.append((pid, read_fd))
        results = []
        for pid, fd in children:
            with os.fdopen(fd, "rb") as f:
                blob = f.read()
            _, status = os.waitpid(pid, 0)
            if status != 0 or not blob:
                return None
            results.append(pickle.loads(blob))  # noqa: S301 - our own child's bytes
        children = []
        return None if any(r is None for r in results) else results
    finally:
        for pid, _ in children:  # only on an early exit: a child failed to start, or Ctrl-C
            try:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
            except OSError:
                continue


def _loads(piece: bytes) -> Any:
    """As the one-process reader parses: orjson when installed, the standard parser for what
    orjson refuses (NaN and Infinity) or when it is absent."""
    try:
        import orjson
    except ImportError:
        return json.loads(piece.decode("utf-8"))
    try:
        return orjson.loads(piece)
    except orjson.JSONDecodeError:
        return json.loads(piece.decode("utf-8"))


def _rows(piece: bytes) -> list[dict] | None:
    """The slice's entries, or None where one is not an object or the text does not parse."""
    gc.disable()  # a process of its own that exits at once: nothing to collect
    try:
        rows = _loads(piece)
    except (ValueError, UnicodeDecodeError):
        return None
    return None if set(map(type, rows)) - {dict} else rows


def _columns(rows: list[dict], piece: bytes) -> dict | None:
    """One slice reduced to what the parent needs, or None for anything the one-process reader
    should judge (and word) itself.

    Loss, learning rate and grad norm are logged on the same rows: the rows of the first are
    remembered, and a later column is read from those rows straight into an ``array`` (which
    refuses None and anything not a number, in C), after checking the other rows lack it."""
    summaries: list[dict] = []
    if readers._HF_SUMMARY_KEY.encode() in piece and any(
            map(operator.contains, rows, repeat(readers._HF_SUMMARY_KEY))):
        is_summary = list(map(operator.contains, rows, repeat(readers._HF_SUMMARY_KEY)))
        summaries = list(compress(rows, is_summary))
        rows = list(compress(rows, map(operator.not_, is_summary)))
    without_step = 0
    steps = list(map(dict.get, rows, repeat("step")))
    kinds = set(map(type, steps))
    if type(None) in kinds:  # entries without a step are not points (a null step is an error)
        has_step = list(map(operator.contains, rows, repeat("step")))
        without_step = has_step.count(False)
        rows, steps = list(compress(rows, has_step)), list(compress(steps, has_step))
        kinds = set(map(type, steps))
    if kinds - {int}:  # float or bool steps: the one-process reader converts or words them
        return None
    # array("d") takes a bool for 1.0; where the text holds no true/false, there is none
    bools = b"true" in piece or b"false" in piece
    keys = set().union(*rows) if rows else set()
    plan, _ = readers._column_plan(keys, "step")
    subsets: list[tuple[list[bool] | None, list[dict]]] = [(None, [])]  # (rows kept, the others)
    packed_steps: list[tuple[bytes, bool, tuple[int, int] | None]] = []
    columns: dict[str, tuple[int, bytes]] = {}
    for canonical, (column, _unit) in plan.items():
        index, values = _known_subset(rows, column, subsets) if not bools else (None, None)
        if values is None:
            got = _new_subset(rows, column)
            if got is None:
                return None
            keep, values = got
            index = next((i for i, (k, _) in enumerate(subsets) if k == keep), None)
            if index is None:
                others = [] if keep is None else list(compress(rows, map(operator.not_, keep)))
                subsets.append((keep, others))
                index = len(subsets) - 1
        while len(packed_steps) <= index:
            packed_steps.append(None)  # type: ignore[arg-type]
        if packed_steps[index] is None:
            keep = subsets[index][0]
            kept = steps if keep is None else list(compress(steps, keep))
            try:
                packed = array("q", kept).tobytes()
            except OverflowError:
                return None
            ascending = all(map(operator.lt, kept, islice(kept, 1, None)))
            packed_steps[index] = (packed, ascending, (kept[0], kept[-1]) if kept else None)
        columns[canonical] = (index, values)
    return {"keys": keys, "plan": plan, "summaries": summaries, "without_step": without_step,
            "steps": packed_steps, "columns": columns}


def _known_subset(rows: list[dict], column: str,
                  subsets: list[tuple[list[bool] | None, list[dict]]]) -> tuple[int | None, bytes | None]:
    """(index, packed values) where ``column`` is a number on exactly the rows of a subset seen
    already (the newest tried first); (None, None) otherwise."""
    for index in range(len(subsets) - 1, -1, -1):
        keep, others = subsets[index]
        try:
            values = array("d", map(dict.get, rows if keep is None else compress(rows, keep), repeat(column)))
        except TypeError:  # a row of the subset without it (None), or not a number
            continue
        if any(map(operator.is_not, map(dict.get, others, repeat(column)), repeat(None))):
            continue
        return index, values.tobytes()
    return None, None


def _new_subset(rows: list[dict], column: str) -> tuple[list[bool] | None, bytes] | None:
    """(the rows that log ``column``, None for all; their values packed), or None where a value
    is not a plain number (the one-process reader words it)."""
    values = list(map(dict.get, rows, repeat(column)))
    kinds = set(map(type, values))
    keep: list[bool] | None = None
    if type(None) in kinds:
        keep = list(map(operator.is_not, values, repeat(None)))
        values = list(compress(values, keep))
        kinds.discard(type(None))
    if kinds - {float, int}:  # bools, strings, lists ...
        return None
    return keep, array("d", values).tobytes()


# --------------------------------------------------------------------------------------------
# the parent


def _merge(source: str, state: dict, results: list[dict]) -> RunLog | None:
    keys = set().union(*(r["keys"] for r in results))
    plan, other = readers._column_plan(keys, "step")
    for r in results:
        for canonical, (column, _unit) in plan.items():
            # a slice that has the column the whole log uses must have picked it too (it could
            # differ only where two keys name the same metric, e.g. "Loss" and "loss")
            if column in r["keys"] and r["plan"].get(canonical, (None,))[0] != column:
                return None
    series: dict[str, Series] = {}
    shared: dict[tuple, list[int]] = {}  # the same rows in every slice: one steps list
    for canonical in CANONICAL:
        if canonical not in plan:
            continue
        column, unit = plan[canonical]
        used = [(r, r["columns"][canonical]) for r in results
                if column in r["keys"] and canonical in r["columns"]]
        identity = tuple((id(r), index) for r, (index, _) in used)
        steps = shared.get(identity)
        if steps is None:
            steps = array("q", b"".join(r["steps"][index][0] for r, (index, _) in used)).tolist()
            shared[identity] = steps
        if not steps:
            continue
        values = array("d", b"".join(packed for _, (_, packed) in used)).tolist()
        ends = [r["steps"][index][2] for r, (index, _) in used if r["steps"][index][2] is not None]
        ascending = (all(r["steps"][index][1] for r, (index, _) in used)
                     and all(a[1] < b[0] for a, b in zip(ends, ends[1:])))
        series[canonical] = readers._ordered(canonical, steps, values, unit, ascending=ascending)
    if not series:
        return None  # the one-process reader words "no recognisable metric"
    meta: dict[str, object] = {k: v for k, v in state.items() if k not in readers._HF_META_SKIP}
    summaries = [s for r in results for s in r["summaries"]]
    if summaries:
        meta["summary"] = summaries[-1]
    without_step = sum(r["without_step"] for r in results)
    if without_step:
        meta["entries_without_step"] = without_step
    meta["columns"] = {k: c for k, (c, _) in plan.items() if k in series}
    meta["other_metrics"] = other
    return RunLog(source=source, format="hf-trainer-state", series=series, meta=meta)
