"""Read a data file as a stream of raw records, each with its line (or index) and parse error.

Formats: JSONL, a JSON array (streamed item by item, with the line each item starts on), CSV/TSV
and Parquet (through ``pyarrow``, the ``[parquet]`` extra). Nothing is held but the current
record: a multi-gigabyte file is read in bounded memory. A line that is not JSON is a record with
an ``error`` (a finding, the rest of the file is still read); a file that cannot be read at all is
an :class:`InputError`.
"""

from __future__ import annotations

import json
import json.scanner
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from preflight.errors import InputError

CHUNK = 1 << 20  # characters read at a time from a JSON array
PROGRESS_EVERY = 4096  # records between progress callbacks
_COMPRESSED = {".gz": "gunzip -k", ".bz2": "bunzip2 -k", ".xz": "unxz -k", ".zst": "unzstd", ".zip": "unzip"}


class Raw(NamedTuple):
    """One record as read: ``value`` is the parsed object, or None with ``error`` set."""

    index: int  # 0-based position among the file's records
    line: int | None  # 1-based line the record starts on (None for Parquet)
    value: Any
    error: str | None = None


_raw = tuple.__new__


def _json_loads() -> Callable[[bytes], Any]:
    """orjson when installed (``[fast]``), else the standard parser. orjson rejects NaN and
    Infinity, which Python's json writes and reads: those lines fall back to the standard one."""
    try:
        import orjson
    except ImportError:
        return _std_loads
    fast = orjson.loads

    def loads(data: bytes) -> Any:
        try:
            return fast(data)
        except orjson.JSONDecodeError:
            value = json.loads(data)
            if _SURROGATE.search(data) is not None:  # orjson refuses a lone surrogate; json does not
                _refuse_surrogates(value)
            return value

    return loads


# an escaped surrogate (\ud800-\udfff): a pair is one character, a lone one is not Unicode
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")


class NotUnicode(ValueError):
    """Valid JSON to Python's parser, but a string holds a lone surrogate (``"\\ud800"``): not
    Unicode, so Arrow (HF ``datasets``: "The surrogate pair in string is invalid"), orjson and
    tokenizers refuse it. A record that cannot be loaded, like broken JSON."""


def _refuse_surrogates(value: Any) -> None:
    """Raise :class:`NotUnicode` when a string (or key) of ``value`` holds a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise NotUnicode(f"a lone surrogate {item[exc.start]!r} in a string (not Unicode; "
                                 "datasets/Arrow cannot load it)") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


_scan_once = json.scanner.make_scanner(json.JSONDecoder())  # the C scanner json.loads ends in
_JSON_SPACE = " \t\n\r"


def _std_loads(data: bytes) -> Any:
    """``json.loads(data)``, refusing lone surrogates (see :class:`NotUnicode`)."""
    value = _std_parse(data)
    if _SURROGATE.search(data) is not None:
        _refuse_surrogates(value)
    return value


def _std_parse(data: bytes) -> Any:
    """``json.loads(data)``, without its per-call detours for the common line: one that starts
    with ``{`` (so json.loads would decode it as UTF-8, not UTF-16/32 or with a BOM) and decodes
    as strict UTF-8 goes straight to the C scanner. Anything else, or anything the scanner does
    not take whole, goes through ``json.loads`` itself, which gives the same value or error."""
    if data[:1] == b"{" and data[1:2] != b"\x00":
        try:
            text = data.decode("utf-8")
            value, end = _scan_once(text, 0)
        except Exception:  # noqa: BLE001 - json.loads below raises the error it would have
            return json.loads(data)
        if end == len(text) or not text[end:].strip(_JSON_SPACE):
            return value
    return json.loads(data)


def kind_of(path: Path) -> str:
    """jsonl, json, csv, tsv or parquet, from the extension and, for .json or none, the content."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv", ".parquet"):
        return suffix[1:]
    if suffix in _COMPRESSED:
        raise InputError(f"compressed ({suffix}): not read; decompress it first ({_COMPRESSED[suffix]} {path.name})",
                         source=str(path))
    if suffix in (".arrow",):
        raise InputError("Arrow files are not read yet; convert to Parquet or JSONL", source=str(path))
    head = _head(path)
    if head.startswith("["):
        return "json"
    if head.startswith("{"):
        _looks_like_lines(path)
        return "jsonl"  # a JSONL file named .json, which LLaMA-Factory and datasets accept
    if suffix == ".json":
        raise InputError("expected a JSON array of records or JSON lines", source=str(path), line=1)
    raise InputError("unknown data format (use .jsonl, .json, .csv, .tsv or .parquet)", source=str(path))


def _open(path: Path, mode: str, **kwargs):  # noqa: ANN202 - the open file
    """``path.open``, or an InputError naming the file when it cannot be opened."""
    try:
        return path.open(mode, **kwargs)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=str(path)) from None


def _head(path: Path) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(4096)
    except OSError as exc:  # (a read error too, not only opening)
        raise InputError(f"cannot read: {exc.strerror or exc}", source=str(path)) from None
    if not data.strip():
        raise InputError("empty file: no records", source=str(path))
    return data.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")


def _looks_like_lines(path: Path) -> None:
    """One pretty-printed JSON object is not JSON lines: rather than an invalid-JSON finding on
    every line, one error. A file whose first two lines both fail to parse is taken for that."""
    loads = _json_loads()
    failed = 0
    with path.open("rb") as f:
        for raw in f:
            if not raw.strip():
                continue
            try:
                loads(raw.lstrip(b"\xef\xbb\xbf"))
                return
            except (ValueError, RecursionError):
                failed += 1
                if failed == 2:
                    break
    if failed == 2:
        raise InputError("one JSON object, not JSON lines or an array of records "
                         "(a LLaMA-Factory dataset_info.json? pass it with --dataset NAME)", source=str(path), line=1)


def not_utf8(path: Path) -> InputError:
    """The error for a file that is not UTF-8: the line and column of the first bad byte and, when
    that line reads as GB18030 (Chinese) or Windows-1252 (Western European Excel exports), the text
    so read and the command that converts the file. Found by a second read, in chunks."""
    line, carry = 1, b""
    with _open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            data = carry + chunk
            if not data:
                return InputError("not UTF-8 text", source=str(path))
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                if chunk and exc.reason == "unexpected end of data":  # a character cut by the chunk's end
                    line += data.count(b"\n", 0, exc.start)
                    carry = data[exc.start:]
                    continue
                line += data.count(b"\n", 0, exc.start)
                start = data.rfind(b"\n", 0, exc.start) + 1
                end = data.find(b"\n", exc.start)
                text = data[start:end if end >= 0 else len(data)].rstrip(b"\r")
                detail = f"not UTF-8 text (byte 0x{data[exc.start]:02x}, column {exc.start - start + 1})"
                return InputError(detail + _guess_encoding(text, path), source=str(path), line=line)
            line += data.count(b"\n")
            carry = b""


def _guess_encoding(text: bytes, path: Path) -> str:
    for codec, name in (("gb18030", "GB18030"), ("cp1252", "WINDOWS-1252")):
        try:
            decoded = text.decode(codec)
        except UnicodeDecodeError:
            continue
        wide = sum(1 for c in decoded if "\u4e00" <= c <= "\u9fff")
        if codec == "gb18030" and wide * 2 < sum(1 for c in decoded if not c.isascii()):
            continue  # decodes, but not to Chinese: not GBK
        shown = decoded if len(decoded) <= 60 else decoded[:57] + "..."
        out = f"{path.stem}.utf8{path.suffix}"
        return f"; as {name} it reads {shown!r}: iconv -f {name} -t UTF-8 {path.name} > {out}"
    return ""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError("no such file", source=str(path))
    if path.is_dir():
        raise InputError("is a folder; give a data file", source=str(path))


class FileSet:
    """Several data files read as one split, one after the other: a LLaMA-Factory ``file_name``
    that is a folder (LLaMA-Factory loads every file in it; they must share one type) or
    ``--dataset a,b``. Quacks like the ``Path`` of one file where the scan needs it (``name``,
    ``str``); ``starts`` holds (first record index, file) as the files are read, so a record is
    located in its own file: ``part2.json:3``."""

    def __init__(self, label: str, paths: list[Path]) -> None:
        self.label, self.paths = label, paths
        self.name = label
        self.starts: list[tuple[int, Path]] = []

    def __str__(self) -> str:
        return self.label

    def is_file(self) -> bool:
        return False

    def exists(self) -> bool:
        return True

    def is_dir(self) -> bool:
        return False

    def locate(self, index: int) -> tuple[Path, int]:
        """The file of the record at split index ``index``, and its index in that file."""
        from bisect import bisect_right

        k = max(0, bisect_right([s for s, _ in self.starts], index) - 1)
        start, path = self.starts[k] if self.starts else (0, self.paths[0])
        return path, index - start


def folder_files(folder: Path) -> list[Path]:
    """The data files of a LLaMA-Factory folder entry: every file in it (hidden ones aside), in name
    order; one type, as LLaMA-Factory requires ("File types should be identical")."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputError("a folder with no data files", source=str(folder))
    kinds = {p.suffix.lower() for p in files}
    if len(kinds) > 1:
        raise InputError(f"files of several types ({', '.join(sorted(kinds))}); LLaMA-Factory refuses a folder "
                         "whose file types are not identical", source=str(folder))
    return files


def _read_set(files: FileSet, progress: Callable[[int], None] | None) -> Iterator[Raw]:
    files.starts = []
    offset, done = 0, 0
    for path in files.paths:
        files.starts.append((offset, path))
        size = path.stat().st_size
        report = None if progress is None else (lambda n, base=done: progress(base + n))
        count = 0
        for raw in read_records(path, report):
            yield raw._replace(index=offset + raw.index)
            count = raw.index + 1
        offset += count
        done += size


def read_records(path: Path | FileSet, progress: Callable[[int], None] | None = None,
                 wanted: set[int] | None = None) -> Iterator[Raw]:
    """Every record of ``path`` in order; ``progress(bytes_read)`` is called now and then.
    With ``wanted``, JSONL lines of other records are counted but not parsed (a second pass)."""
    if isinstance(path, FileSet):
        return _read_set(path, progress)
    _check_readable(path)
    kind = kind_of(path)
    if kind == "jsonl":
        return _jsonl(path, progress, wanted)
    if kind == "json":
        return _json_array(path, progress)
    if kind in ("csv", "tsv"):
        return _csv(path, "\t" if kind == "tsv" else ",", progress)
    return _parquet(path, progress)


def _jsonl(path: Path, progress: Callable[[int], None] | None, wanted: set[int] | None = None) -> Iterator[Raw]:
    loads = _json_loads()
    index = 0
    with _open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if wanted is not None and index not in wanted:
                index += 1 if line.strip() else 0
                continue
            try:
                value = loads(line)
            except (ValueError, RecursionError) as exc:
                if not line.strip():
                    continue  # blank lines separate nothing in JSONL; trainers skip them too
                yield Raw(index, number, None, _json_error(exc))
            else:
                yield _raw(Raw, (index, number, value, None))  # Raw(index, number, value), without its __new__
            index += 1
            if progress is not None and not index % PROGRESS_EVERY:
                progress(f.tell())
    if index == 0:
        raise InputError("no records (only blank lines)", source=str(path))


def _json_error(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "invalid JSON: nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    if isinstance(exc, NotUnicode):
        return f"invalid JSON: {exc}"
    text = str(exc).split(": line ")[0]
    column: Any = getattr(exc, "colno", None)
    if isinstance(exc, json.JSONDecodeError):  # one JSONL line: an error past its end is at its end
        line = exc.doc.rstrip("\r\n") if isinstance(exc.doc, str) else ""
        if exc.pos >= len(line):
            return f"invalid JSON: {text} (at the end of the line, column {len(line) + 1}: cut short?)"
        column = exc.pos + 1
    if column is None and ": line " in str(exc):
        column = str(exc).rsplit(" column ", 1)[-1].split(" ")[0]
    return f"invalid JSON: {text}" + (f" (column {column})" if column else "")


def _json_array(path: Path, progress: Callable[[int], None] | None) -> Iterator[Raw]:
    """A JSON array, item by item (``raw_decode`` on a sliding window), so a multi-gigabyte array
    is never held whole. A syntax error ends the file: everything after it is unreadable. A record
    that starts on the line another record starts on has no line (it is located by index)."""
    decoder = json.JSONDecoder()
    source = str(path)
    with _open(path, "r", encoding="utf-8-sig", newline="") as f:
        buf, eof, pos, line, consumed = "", False, 0, 1, 0

        def more() -> bool:
            nonlocal buf, pos, eof
            try:
                chunk = f.read(CHUNK)
            except UnicodeDecodeError:
                raise not_utf8(path) from None
            if not chunk:
                eof = True
                return False
            buf = buf[pos:] + chunk
            pos = 0
            return True

        def skip_ws() -> str:
            """The next non-blank character (``""`` at the end), counting lines."""
            nonlocal pos, line, consumed
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    line += buf[pos] == "\n"
                    pos += 1
                if pos < len(buf):
                    return buf[pos]
                consumed += pos
                if not more():
                    return ""

        more()
        if skip_ws() != "[":
            raise InputError("expected a JSON array of records", source=source, line=line)
        pos += 1
        index, previous = 0, 0
        if skip_ws() == "]":
            raise InputError("empty JSON array: no records", source=source, line=line)
        while True:
            start_line = line
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                    break
                except json.JSONDecodeError as exc:
                    if eof or len(buf) - pos > 64 * CHUNK or not more():
                        yield Raw(index, start_line + buf.count("\n", pos, exc.pos), None,
                                  f"invalid JSON: {exc.msg}; the rest of the array cannot be read")
                        return
                except RecursionError:
                    yield Raw(index, start_line, None, "invalid JSON: nested too deeply")
                    return
            if _SURROGATE_TEXT.search(buf, pos, end) is not None:
                try:
                    _refuse_surrogates(value)
                except NotUnicode as exc:
                    value, error = None, f"invalid JSON: {exc}"
                else:
                    error = None
            else:
                error = None
            line += buf.count("\n", pos, end)
            pos = end
            after = skip_ws()
            if after == ",":
                pos += 1
                skip_ws()  # to the next record's start, so ``line`` is its line
            # records that share a line (a minified array) are located by index, not all at line 1
            shared = start_line == previous or (after == "," and line == start_line)
            yield Raw(index, None if shared else start_line, value, error)
            previous = start_line
            index += 1
            if progress is not None and not index % PROGRESS_EVERY:
                progress(f.buffer.tell())
            if after == ",":
                continue
            if after == "]":
                return
            yield Raw(index, line, None, "invalid JSON: expected ',' or ']' between records; "
                                         "the rest of the array cannot be read")
            return


def _csv(path: Path, delimiter: str, progress: Callable[[int], None] | None) -> Iterator[Raw]:
    import csv

    source = str(path)
    with _open(path, "r", encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter, restkey="(extra cells)")
        index, line = 0, 1
        try:
            if not reader.fieldnames:
                raise InputError("no header row", source=source, line=1)
            names = [n for n in reader.fieldnames if n]
            if len(set(names)) != len(names):
                raise InputError("a column name appears twice in the header", source=source, line=1)
            line = reader.line_num + 1
            for row in reader:
                yield Raw(index, line, row)
                index += 1
                line = reader.line_num + 1
                if progress is not None and not index % PROGRESS_EVERY:
                    progress(f.buffer.tell())
        except UnicodeDecodeError:
            raise not_utf8(path) from None
        except csv.Error as exc:
            raise InputError(f"CSV: {_one_line(exc)}", source=source, line=reader.line_num or line) from None
    if index == 0:
        raise InputError("no records (a header and no rows)", source=source)


def _parquet(path: Path, progress: Callable[[int], None] | None) -> Iterator[Raw]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("reading Parquet needs pyarrow: pip install 'preflight-ml[parquet]'",
                         source=str(path)) from None
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
        raise InputError(f"not a readable Parquet file: {_one_line(exc)}", source=str(path)) from None
    index = 0
    try:
        for batch in parquet.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                yield Raw(index, None, row)
                index += 1
            if progress is not None:
                progress(int(path.stat().st_size * (index / max(parquet.metadata.num_rows, 1))))
    except Exception as exc:  # noqa: BLE001 - a corrupt row group
        raise InputError(f"Parquet: {_one_line(exc)} (after record {index})", source=str(path)) from None
    if index == 0:
        raise InputError("no records (an empty table)", source=str(path))
