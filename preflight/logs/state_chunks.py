"""A large ``trainer_state.json`` read a slice of its ``log_history`` at a time: the same
:class:`RunLog` as the whole-document reader, in a third of its time, or None to use that reader.

Why: a run that logged every step for a million steps is 120 MB of JSON. Parsed whole, it is a
million dicts (0.8 GB) that the kernel first has to map (half the parse time goes to page
faults) and that no cache holds, so every later pass over them (one per metric) waits on memory.
Parsed 256 KB at a time (about 2,000 entries), each slice's dicts are still in the CPU cache while
their columns are pulled out, and freeing them before the next slice lets the allocator hand the
same memory back: no new pages. On the 2-core CI machine the 1M-point log goes from 4.8 s to
about 1.5 s.

Exactness. The array text is cut between entries (``},{``), and a cut is trusted only because
every piece parses on its own: ``[`` + slice + ``]`` as an array, and the document with the array
emptied (``"log_history": []``) as an object. A cut inside a string or a nested value leaves some
piece unbalanced, so it fails; JSON has one parse, so pieces that all parse hold exactly the
original entries. Anything else unusual (an entry that is not an object, a value that is not a
plain number, a step that is not an int) returns None and the whole-document reader reads the
file: every error message, with its entry index, comes from there, and the tests compare both
readers on generated and real logs.
"""

from __future__ import annotations

import json
import mmap
import re

from preflight.logs import readers  # the whole-document reader's rules, shared
from preflight.logs.column_chunks import ChunkColumns, loads_array
from preflight.logs.series import RunLog

MIN_BYTES = 1 << 20  # below this a whole parse is as quick
CHUNK_BYTES = 256 << 10  # measured: 64-256 KB best; 4 MB already as slow as the whole file

_KEY = re.compile(rb'"log_history"[ \t\n\r]*:[ \t\n\r]*\[')
# between two entries (when outside any string): JSON whitespace only, as the parser allows
_BETWEEN = re.compile(rb"\}[ \t\n\r]*,[ \t\n\r]*\{")
# the keys worth a column: whatever a series can be read from (normalised as the plan does)
_WANTED = ({a for aliases, _ in readers.ALIASES.values() for a in aliases}
           | {a for a, _ in readers.THROUGHPUT})


def read_in_chunks(source: str, data: bytes | mmap.mmap) -> RunLog | None:
    """The log of a ``trainer_state.json`` given as bytes (or mapped), or None when it is not one to read
    this way (small, unusual, or broken: the whole-document reader then reads it)."""
    if len(data) < MIN_BYTES:
        return None
    located = _locate(data)
    if located is None:
        return None
    first, last = located
    state = _parse_rest(data, first, last)
    if state is None:
        return None
    columns = ChunkColumns("step", _wanted, summary_key=readers._HF_SUMMARY_KEY)
    for rows, text in _slices(data, first, last):
        if rows is None or not columns.add(rows, text):
            return None
    plan, other = readers._column_plan(columns.keys, "step")
    series = columns.series(plan)
    if not series:
        return None  # the whole-document reader words "no recognisable metric"
    meta: dict[str, object] = {k: v for k, v in state.items() if k not in readers._HF_META_SKIP}
    if columns.summaries:
        meta["summary"] = columns.summaries[-1]
    if columns.without_step:
        meta["entries_without_step"] = columns.without_step
    meta["columns"] = {k: c for k, (c, _) in plan.items() if k in series}
    meta["other_metrics"] = other
    return RunLog(source=source, format="hf-trainer-state", series=series, meta=meta)


def _wanted(key: str) -> bool:
    """A key a series can be read from (as the plan normalises it)."""
    name = readers._norm(key)
    return name in _WANTED or readers._LR_MONITOR.match(name) is not None


def _locate(data: bytes) -> tuple[int, int] | None:
    """Where the array's text starts (after ``[``) and where it stops (at ``]``)."""
    m = _KEY.search(data)
    if m is None:
        return None
    # entries of numbers hold no "]": the first one closes the array (if an entry holds a list,
    # the last slice ends inside it and fails to parse)
    last = data.find(b"]", m.end())
    return None if last < 0 else (m.end(), last)


def _parse_rest(data: bytes, first: int, last: int) -> dict | None:
    """The document with its log_history emptied, parsed strictly; None unless it is an object
    whose log_history is that empty list, and no object in it names a key twice (a second
    "log_history" would be the one a parser keeps)."""
    twice: list[bool] = []

    def pairs(items: list) -> dict:
        d = dict(items)
        if len(d) != len(items):
            twice.append(True)
        return d

    try:
        state = json.loads((data[:first] + data[last:]).decode("utf-8"), object_pairs_hook=pairs)
    except (ValueError, UnicodeDecodeError):
        return None
    if twice or not isinstance(state, dict) or state.get("log_history") != []:
        return None
    return state


def _slices(data: bytes, first: int, last: int):  # noqa: ANN202 - yields (rows or None, text)
    """Each slice of about CHUNK_BYTES of whole entries, parsed: (its rows, its text), or
    (None, text) where it does not parse as an array."""
    start = first
    while start < last:
        between = _BETWEEN.search(data, min(start + CHUNK_BYTES, last), last)
        stop, following = (between.start() + 1, between.end() - 1) if between else (last, last)
        text = data[start:stop]
        try:
            rows = loads_array(b"[" + text + b"]")
        except (ValueError, UnicodeDecodeError):
            rows = None
        yield rows, text
        start = following


