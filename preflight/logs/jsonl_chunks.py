"""A large LLaMA-Factory ``trainer_log.jsonl`` read some lines at a time: the same
:class:`RunLog` as the whole-file reader, in a fraction of its time, or None to use that reader.

The reasons are those of :mod:`preflight.logs.state_chunks`: a million log lines parsed at once
are a million dicts the kernel must first map and no cache holds; 256 KB of lines at a time stay
in the cache while their columns are pulled out, and their memory is reused by the next slice.
Each slice is cut at a newline and parsed as one array of its lines; it is trusted only when it
holds exactly one object per line, so a blank line, a broken line or two values on one line
leave the file to the whole-file reader, which names the line. Generic JSONL logs (a step column
found among all the keys) are read whole.
"""

from __future__ import annotations

import json
import mmap

from preflight.logs import readers
from preflight.logs.column_chunks import ChunkColumns, loads_array
from preflight.logs.series import CANONICAL, RunLog

MIN_BYTES = 1 << 20  # below this a whole parse is as quick
CHUNK_BYTES = 256 << 10

_PLAN: dict[str, tuple[str, str | None]] = {
    c: (readers.LLAMAFACTORY_COLUMNS[c], None) for c in CANONICAL if c in readers.LLAMAFACTORY_COLUMNS}
_PLAN["throughput"] = ("throughput", "tokens/s")  # num_input_tokens_seen / elapsed seconds
_WANTED = frozenset(column for column, _ in _PLAN.values())


def read_in_chunks(source: str, data: bytes | mmap.mmap) -> RunLog | None:
    """The log of a LLaMA-Factory ``trainer_log.jsonl`` given as bytes (or mapped), or None when it is not
    one to read this way (small, another kind of JSONL, CRLF line ends, anything unusual)."""
    if len(data) < MIN_BYTES or data.find(b"\r") >= 0:
        return None
    meta: dict[str, object] = {}
    end = len(data)
    if data[-1:] != b"\n":  # a run still writing its last line
        cut = data.rfind(b"\n") + 1
        if not data[cut:].strip():
            return None
        if not readers._parses(data[cut:]):  # (json.loads takes bytes too)
            meta["truncated_last_line"] = True
            end = cut
    newline = data.find(b"\n")
    try:
        head = json.loads(data[:newline if 0 <= newline < end else end])
    except ValueError:
        return None
    if not (isinstance(head, dict) and "current_steps" in head and "total_steps" in head):
        return None
    columns = ChunkColumns("current_steps", _WANTED.__contains__, step_required=True)
    for rows, text in _slices(data, end):
        if rows is None or not columns.add(rows, text):
            return None
    series = columns.series(_PLAN)
    last = columns.last_row
    if not series or last is None or last.keys() <= readers._LLAMAFACTORY_RUN_KEYS:
        # (nothing read; or an evaluation's progress lines last, which do not say the training
        # run's length: the whole-file reader finds its last training line)
        return None
    if isinstance(last.get("total_steps"), (int, float)):
        meta["max_steps"] = int(last["total_steps"])
    meta["global_step"] = columns.max_step
    for k in ("percentage", "elapsed_time", "remaining_time", "total_tokens"):
        if k in last:
            meta[k] = last[k]
    used = {c: column for c, (column, _) in _PLAN.items() if c in series}
    meta["columns"] = used
    meta["other_metrics"] = sorted(columns.keys - set(used.values()) - readers._LLAMAFACTORY_RUN_KEYS
                                   - {"throughput"})
    return RunLog(source=source, format="llamafactory-jsonl", series=series, meta=meta)


def _slices(data: bytes, end: int):  # noqa: ANN202 - yields (rows or None, text)
    """Slices of about CHUNK_BYTES of whole lines of ``data[:end]``, each parsed as an array of
    its lines: (its rows, its text), or (None, text) where that is not one object per line."""
    stop_all = end - 1 if data[end - 1:end] == b"\n" else end
    start = 0
    while start < stop_all:
        stop = data.find(b"\n", min(start + CHUNK_BYTES, stop_all), stop_all)
        if stop < 0:
            stop = stop_all
        text = data[start:stop]
        try:
            rows = loads_array(b"[" + text.replace(b"\n", b",") + b"]")
        except (ValueError, UnicodeDecodeError):
            rows = None
        if rows is not None and len(rows) != text.count(b"\n") + 1:
            rows = None
        yield rows, text
        start = stop + 1
