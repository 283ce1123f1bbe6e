"""Columns gathered from a log read a slice of entries at a time (``state_chunks``,
``jsonl_chunks``): every wanted key's steps and values, the key set, and what the readers keep
besides, with exactly the rules of the whole-document readers (``readers._Rows``).

Anything those readers would word as an error (an entry that is not an object, a value that is
not a plain number, a step that is not an int, a missing step where one is required) makes
:meth:`ChunkColumns.add` return False: the caller then leaves the file to them.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from itertools import compress, islice, repeat
from typing import Any

from preflight.logs import readers
from preflight.logs.series import CANONICAL, Series


def loads_array(piece: bytes) -> Any:
    """As the whole-document reader parses: orjson when installed, the standard parser for what
    orjson refuses (NaN and Infinity) or when it is absent."""
    try:
        import orjson
    except ImportError:
        return json.loads(piece.decode("utf-8"))
    try:
        return orjson.loads(piece)
    except orjson.JSONDecodeError:
        return json.loads(piece.decode("utf-8"))


def _order(steps: list[int]) -> str:
    """"ascending", "repeats" (ascending but for runs of one step) or "unordered"."""
    if all(map(operator.lt, steps, islice(steps, 1, None))):
        return "ascending"
    if all(map(operator.le, steps, islice(steps, 1, None))):
        return "repeats"
    return "unordered"


class ChunkColumns:
    """Points per wanted key, gathered slice by slice.

    ``step_key`` names each entry's step. Entries with ``summary_key`` are set aside whole
    (Hugging Face's end-of-training summary). Entries without a step are counted and skipped,
    or, with ``step_required``, make the slice one to leave to the whole-document reader."""

    def __init__(self, step_key: str, wanted: Callable[[str], bool], summary_key: str | None = None,
                 step_required: bool = False) -> None:
        self.step_key, self.wanted = step_key, wanted
        self.summary_key, self.step_required = summary_key, step_required
        self.keys: set = set()
        self.steps: dict[str, list[int]] = {}
        self.values: dict[str, list[float]] = {}
        self.ascending: dict[str, bool] = {}
        self.summaries: list[dict] = []
        self.without_step = 0
        self.last_row: dict | None = None
        self.max_step: int | None = None

    def add(self, rows: list, text: bytes) -> bool:
        """Take one slice's rows (``text``: the slice as read); False for anything the
        whole-document reader should judge."""
        if set(map(type, rows)) - {dict}:
            return False
        key = self.summary_key
        if key is not None and key.encode() in text and any(map(operator.contains, rows, repeat(key))):
            is_summary = list(map(operator.contains, rows, repeat(key)))
            self.summaries.extend(compress(rows, is_summary))
            rows = list(compress(rows, map(operator.not_, is_summary)))
        steps = list(map(dict.get, rows, repeat(self.step_key)))
        kinds = set(map(type, steps))
        if type(None) in kinds:  # entries without a step are not points (a null step is an error)
            if self.step_required:
                return False
            has_step = list(map(operator.contains, rows, repeat(self.step_key)))
            self.without_step += has_step.count(False)
            rows, steps = list(compress(rows, has_step)), list(compress(steps, has_step))
            kinds = set(map(type, steps))
        if kinds - {int}:  # float or bool steps: the whole-document reader converts or words them
            return False
        if not rows:
            return True
        self.last_row = rows[-1]
        top = max(steps)
        self.max_step = top if self.max_step is None else max(self.max_step, top)
        keys = set().union(*rows)
        self.keys |= keys
        seen: list[tuple] = []  # this slice's row subsets: (rows kept, their steps, order, last)
        for name in keys:
            if isinstance(name, str) and self.wanted(name) and not self._column(rows, steps, name, seen):
                return False
        return True

    def _column(self, rows: list[dict], steps: list[int], key: str, seen: list[tuple]) -> bool:
        """Add one key's points of this slice. Where its steps repeat (an evaluation logged at a
        training step) the last value is kept, as the whole-document reader keeps it; steps
        that go back (a resumed run) are sorted at the end, by the same ``_ordered``."""
        values = list(map(dict.get, rows, repeat(key)))
        kinds = set(map(type, values))
        keep: list[bool] | None = None
        if type(None) in kinds:
            keep = list(map(operator.is_not, values, repeat(None)))
            values = list(compress(values, keep))
            kinds.discard(type(None))
        if kinds - {float, int}:  # bools, strings, lists ...
            return False
        if int in kinds:
            values = list(map(float, values))
        if not values:
            return True
        # loss, learning rate and grad norm are logged on the same rows: their steps once
        found = next((s for s in seen if s[0] == keep), None)
        if found is None:
            kept = steps if keep is None else list(compress(steps, keep))
            order = _order(kept)
            last: list[bool] | None = None
            if order == "repeats":  # keep the last of each run of one step
                last = list(map(operator.ne, kept, islice(kept, 1, None)))
                last.append(True)
                kept = list(compress(kept, last))
            found = (keep, kept, order, last)
            seen.append(found)
        _, kept, order, last = found
        if last is not None:
            values = list(compress(values, last))
        self._append(key, kept, values, order != "unordered")
        return True

    def _append(self, key: str, kept: list[int], values: list[float], ascending: bool) -> None:
        """Points that follow the key's points so far; ``ascending``: among themselves."""
        known = self.steps.get(key)
        if known is None:
            self.steps[key], self.values[key], self.ascending[key] = [], [], True
            known = self.steps[key]
        known_values = self.values[key]
        if known and known[-1] == kept[0]:  # a step repeated across the cut: the later value wins
            known.pop()
            known_values.pop()
        if not ascending or (known and known[-1] > kept[0]):
            self.ascending[key] = False
        known += kept
        known_values += values

    def series(self, plan: dict[str, tuple[str, str | None]]) -> dict[str, Series]:
        """The series of ``plan`` (canonical name -> (column, unit)), in report order."""
        out = {}
        for canonical in CANONICAL:
            if canonical in plan and plan[canonical][0] in self.steps:
                column, unit = plan[canonical]
                out[canonical] = readers._ordered(canonical, self.steps[column], self.values[column],
                                                  unit, ascending=self.ascending[column], resumes=True)
        return out
