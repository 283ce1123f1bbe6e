"""``--fix OUT``: a cleaned copy of the train split. Drops the records that failed a check (broken
JSON, missing or null fields, empty answers, impossible turn orders) and exact repeats (the first
copy stays), trims whitespace at both ends of every string, turns CRLF into LF and removes C0
control characters. Written as JSONL (a JSON array when OUT ends in ``.json``) through a
temporary file beside OUT; the input is only read.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from preflight.data.readers import read_records
from preflight.errors import InputError

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NOT_WRITTEN = (".csv", ".tsv", ".parquet", ".arrow", ".gz", ".zst", ".bz2", ".xz")  # OUT suffixes refused


def check_output(out: Path, inputs: list[Path]) -> None:
    """Refuse an OUT that is one of the inputs (also through a link), a folder, anything but a
    regular file (``/dev/null``: the copy is renamed over OUT, which would replace the device), or
    named for a format the copy is not written in (``.csv``)."""
    if out.is_dir():
        raise InputError("--fix: is a folder; give a file name", source=str(out))
    if out.exists() and not out.is_file():
        raise InputError("--fix: not a regular file (a device or pipe); give a file name", source=str(out))
    if out.suffix.lower() in _NOT_WRITTEN:
        raise InputError(f"--fix writes JSON lines (or a JSON array for .json), not {out.suffix}; "
                         "name OUT .jsonl or .json", source=str(out))
    if not out.parent.is_dir():
        raise InputError("--fix: no such folder to write into", source=str(out.parent))
    for path in inputs:
        same = out.resolve() == path.resolve()
        if not same and out.exists():
            try:
                same = out.samefile(path)
            except OSError:
                same = False
        if same:
            raise InputError("--fix would overwrite the input; write the cleaned copy elsewhere", source=str(out))


def clean_value(value: Any) -> Any:
    if isinstance(value, str):
        return _CONTROL.sub("", value.replace("\r\n", "\n")).strip()
    if isinstance(value, list):
        return [clean_value(v) for v in value]
    if isinstance(value, dict):
        return {k: clean_value(v) for k, v in value.items()}
    return value


def write_fixed(source: Path, out: Path, drop: set[int]) -> tuple[int, int]:
    """Write the kept records of ``source`` to ``out``; returns (written, dropped)."""
    as_array = out.suffix.lower() == ".json"
    tmp = out.with_name(f".{out.name}.preflight-tmp")
    written = dropped = 0
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as f:
            if as_array:
                f.write("[\n")
            for raw in read_records(source):
                if raw.error is not None or raw.index in drop:
                    dropped += 1
                    continue
                text = json.dumps(clean_value(raw.value), ensure_ascii=False)
                if as_array:
                    f.write((",\n" if written else "") + text)
                else:
                    f.write(text + "\n")
                written += 1
            if as_array:
                f.write("\n]\n")
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"--fix: cannot write: {exc.strerror or exc}", source=str(out)) from None
    return written, dropped
