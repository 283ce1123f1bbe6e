"""A line-aware reader for the block YAML that training configs are written in, without PyYAML.

LLaMA-Factory, Axolotl and Accelerate configs are block mappings of scalars, with a few nested
mappings (``deepspeed_config:``), block sequences (``datasets:``) and one-line flow lists
(``[q_proj, v_proj]``). This reader handles exactly that, plus quoted strings and ``|``/``>``
block scalars, and records the line of every key so that a finding can say ``file:line``.
Anything outside the subset (anchors, aliases, tags, several documents) is an ``InputError``
naming the line, never a wrong answer.

Scalars follow YAML 1.1 as PyYAML reads them (``yes``/``on`` are booleans, ``~`` is null), with
two deliberate differences: ``1e-4`` is a float here (YAML 1.2), where PyYAML keeps it a string,
and sexagesimal ``12:30`` stays a string, where PyYAML reads 750.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from preflight.errors import InputError

Path_ = tuple[str, ...]

_KEY = re.compile(r"""^(?P<key>"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^ \t#'"\[\]{},&*!|>][^#]*?)[ \t]*:(?:[ \t]+|$)(?P<rest>.*)$""")
_INT = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_FLOAT = re.compile(r"^[-+]?(\d[\d_]*)?(\.\d*)?([eE][-+]?\d+)?$")
_BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
_NULLS = ("", "~", "null", "Null", "NULL")


@dataclass
class YamlDoc:
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    duplicates: list[tuple[Path_, int, int]] = field(default_factory=list)  # (key path, first, again)


@dataclass
class _Line:
    number: int
    indent: int
    text: str


def _strip_comment(text: str) -> str:
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"" and (i == 0 or text[i - 1] in " \t:[{,-"):
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip(" \t")
    return text.rstrip(" \t")


def _lines(text: str, source: str) -> list[_Line]:
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        body = raw.lstrip(" ")
        if body.startswith("\t") or (body and raw[: len(raw) - len(body)].count("\t")):
            raise InputError("a tab in the indentation (YAML indents with spaces)", source=source, line=number)
        out.append(_Line(number, len(raw) - len(body), raw))
    return out


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.raw = _lines(text, source)
        self.doc = YamlDoc(None)
        self.i = 0

    def error(self, message: str, line: int) -> InputError:
        return InputError(message, source=self.source, line=line)

    def _content(self, line: _Line) -> str:
        return _strip_comment(line.text[line.indent:])

    def _skip_blank(self) -> None:
        while self.i < len(self.raw):
            content = self._content(self.raw[self.i])
            if content and content not in ("---", "..."):
                return
            if content == "---" and any(self._content(x) for x in self.raw[: self.i]):
                raise self.error("several YAML documents in one file", self.raw[self.i].number)
            self.i += 1

    def parse(self) -> YamlDoc:
        self._skip_blank()
        if self.i >= len(self.raw):
            self.doc.data = None
            return self.doc
        first = self.raw[self.i]
        self.doc.data = self._block(first.indent, ())
        self._skip_blank()
        if self.i < len(self.raw):
            if not isinstance(self.doc.data, (dict, list)):  # a line of text above the settings
                raise self.error(f"expected 'key: value', got {self._content(first)[:40]!r}", first.number)
            line = self.raw[self.i]
            raise self.error(f"unexpected indentation or text {self._content(line)[:40]!r}", line.number)
        return self.doc

    def _block(self, indent: int, path: Path_) -> Any:
        self._skip_blank()
        line = self.raw[self.i]
        content = self._content(line)
        if content == "-" or content.startswith("- "):
            return self._sequence(indent, path)
        if _KEY.match(content):
            return self._mapping(indent, path)
        self.i += 1
        return self._scalar(content, line.number)

    def _mapping(self, indent: int, path: Path_) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while True:
            self._skip_blank()
            if self.i >= len(self.raw):
                return out
            line = self.raw[self.i]
            if line.indent < indent:
                return out
            if line.indent > indent:
                raise self.error("unexpected indentation", line.number)
            content = self._content(line)
            match = _KEY.match(content)
            if not match:
                if content.startswith("- "):
                    return out  # a sequence at the parent's indent ends this mapping
                raise self.error(f"expected 'key: value', got {content[:40]!r}", line.number)
            key = self._key(match.group("key").strip(" \t"), line.number)
            rest = match.group("rest").strip(" \t")
            here = (*path, key)
            if key in out:
                self.doc.duplicates.append((here, self.doc.lines[here], line.number))
            self.doc.lines[here] = line.number
            self.i += 1
            out[key] = self._value(rest, indent, here, line.number)

    def _value(self, rest: str, indent: int, path: Path_, number: int) -> Any:
        if rest and rest[0] in "|>":
            return self._block_scalar(rest, indent, number)
        if rest:
            return self._scalar(rest, number, path)
        self._skip_blank()
        if self.i >= len(self.raw):
            return None
        nxt = self.raw[self.i]
        nxt_content = self._content(nxt)
        if nxt.indent > indent:
            return self._block(nxt.indent, path)
        if nxt.indent == indent and (nxt_content == "-" or nxt_content.startswith("- ")):
            return self._sequence(indent, path)
        return None

    def _sequence(self, indent: int, path: Path_) -> list[Any]:
        out: list[Any] = []
        while True:
            self._skip_blank()
            if self.i >= len(self.raw):
                return out
            line = self.raw[self.i]
            content = self._content(line)
            if line.indent != indent or not (content == "-" or content.startswith("- ")):
                if line.indent > indent:
                    raise self.error("unexpected indentation", line.number)
                return out
            here = (*path, str(len(out)))
            self.doc.lines[here] = line.number
            item = content[1:].lstrip(" ")
            if not item:
                self.i += 1
                out.append(self._value("", indent, here, line.number))
                continue
            item_indent = indent + (len(content) - len(item))
            if item == "-" or item.startswith("- ") or (_KEY.match(item) and item[0] not in "[{"):
                # "- key: value" / "- - x" open a mapping / sequence at the item's column
                self.raw[self.i] = _Line(line.number, item_indent, " " * item_indent + item)
                out.append(self._block(item_indent, here))
            else:
                self.i += 1
                out.append(self._scalar(item, line.number, here))

    def _block_scalar(self, header: str, indent: int, number: int) -> str:
        if not re.fullmatch(r"[|>][-+]?[1-9]?|[|>][1-9][-+]?", header):
            raise self.error(f"unsupported block scalar header {header!r}", number)
        collected: list[str] = []
        block_indent = None
        while self.i < len(self.raw):
            line = self.raw[self.i]
            if line.text.strip(" \t") == "":
                collected.append("")
                self.i += 1
                continue
            if line.indent <= indent:
                break
            if block_indent is None:
                block_indent = line.indent
            collected.append(line.text[min(block_indent, line.indent):])
            self.i += 1
        while collected and collected[-1] == "":
            collected.pop()
        joined = "\n".join(collected) if header[0] == "|" else " ".join(c for c in collected if c)
        return joined if "-" in header else joined + "\n"

    def _key(self, text: str, number: int) -> str:
        if text[0] in "'\"":
            value = self._scalar(text, number)
            return str(value)
        return text

    def _scalar(self, text: str, number: int, path: Path_ = ()) -> Any:
        text = text.strip(" \t")
        if not text:
            return None
        head = text[0]
        if head in "&*!":
            raise self.error("YAML anchors, aliases and tags are not supported here", number)
        if head == "'":
            if len(text) < 2 or not text.endswith("'"):
                raise self.error("unterminated quoted string", number)
            return text[1:-1].replace("''", "'")
        if head == '"':
            if len(text) < 2 or not text.endswith('"') or text.endswith('\\"') and not text.endswith('\\\\"'):
                raise self.error("unterminated quoted string", number)
            return _unescape(text[1:-1], self, number)
        if head in "[{":
            value, end = _flow(text, 0, self, number)
            if text[end:].strip(" \t"):
                rest = text[end:].strip(" \t")
                raise self.error(f"text after a flow collection: {rest[:30]!r}", number)
            return value
        if head in "]}|>%@`":
            raise self.error(f"unexpected character {head!r}", number)
        return resolve_plain(text)


def resolve_plain(text: str) -> Any:
    """An unquoted scalar: null, bool, int, float, else the string itself."""
    if text in _NULLS:
        return None
    lowered = text.lower()
    if lowered in _BOOLS and text in (lowered, lowered.capitalize(), lowered.upper()):
        return _BOOLS[lowered]
    if _INT.match(text):
        return int(text.replace("_", ""))
    if re.fullmatch(r"[-+]?0[0-9_]*[89][0-9_]*", text):
        return text  # not octal, not decimal: PyYAML keeps "08" a string
    if re.fullmatch(r"[-+]?0[0-7_]+", text):  # YAML 1.1 octal, as PyYAML reads it
        return int(text.replace("_", ""), 8)
    if re.fullmatch(r"[-+]?0x[0-9a-fA-F_]+", text):
        return int(text.replace("_", ""), 16)
    if any(c.isdigit() for c in text) and _FLOAT.match(text) and text not in (".", "+.", "-."):
        try:
            return float(text.replace("_", ""))
        except ValueError:
            return text
    if lowered in (".inf", "+.inf"):
        return float("inf")
    if lowered == "-.inf":
        return float("-inf")
    if lowered == ".nan":
        return float("nan")
    return text


def _unescape(body: str, parser: _Parser, number: int) -> str:
    simple = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "/": "/", "0": "\0", "r": "\r", " ": " "}
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= len(body):
            raise parser.error("a lone backslash at the end of a quoted string", number)
        nxt = body[i + 1]
        if nxt in simple:
            out.append(simple[nxt])
            i += 2
        elif nxt in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[nxt]
            digits = body[i + 2: i + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise parser.error(f"bad escape \\{nxt}{digits}", number)
            code = int(digits, 16)
            if code > 0x10FFFF:
                raise parser.error(f"bad escape \\{nxt}{digits}", number)
            out.append(chr(code))
            i += 2 + width
        else:
            raise parser.error(f"unknown escape \\{nxt}", number)
    return "".join(out)


def _flow(text: str, i: int, parser: _Parser, number: int) -> tuple[Any, int]:
    """A one-line flow collection starting at ``text[i]``; returns (value, index after it)."""
    opening = text[i]
    closing = "]" if opening == "[" else "}"
    items: list[Any] = []
    mapping: dict[str, Any] = {}
    i += 1
    while True:
        while i < len(text) and text[i] == " ":
            i += 1
        if i >= len(text):
            raise parser.error(f"unclosed {opening!r}", number)
        if text[i] == closing:
            return (items if opening == "[" else mapping), i + 1
        if text[i] in "[{":
            value, i = _flow(text, i, parser, number)
            key = None
        else:
            start = i
            quote = text[i] if text[i] in "'\"" else None
            if quote:
                i += 1
                while i < len(text) and text[i] != quote:
                    i += 2 if quote == '"' and text[i] == "\\" else 1
                i += 1
            else:
                while i < len(text) and text[i] not in ",:" + closing + "[]{}":
                    i += 1
            token = text[start:i].strip(" \t")
            while i < len(text) and text[i] == " ":
                i += 1
            key = None
            if opening == "{" and i < len(text) and text[i] == ":":
                key = str(parser._scalar(token, number))
                i += 1
                while i < len(text) and text[i] == " ":
                    i += 1
                if i < len(text) and text[i] in "[{":
                    value, i = _flow(text, i, parser, number)
                else:
                    vstart = i
                    while i < len(text) and text[i] not in "," + closing:
                        i += 1
                    value = parser._scalar(text[vstart:i], number)
            else:
                value = parser._scalar(token, number) if token else None
                if i < len(text) and text[i] == ":":
                    raise parser.error("a 'key: value' inside a flow list is not supported", number)
        if opening == "[":
            items.append(value)
        else:
            if key is None:
                key = str(value)
                value = None
            mapping[key] = value
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == ",":
            i += 1
        elif i < len(text) and text[i] == closing:
            continue
        elif i >= len(text):
            raise parser.error(f"unclosed {opening!r}", number)
        else:
            raise parser.error(f"unexpected {text[i]!r} in a flow collection", number)


def parse_yaml(text: str, source: str) -> YamlDoc:
    """Parse ``text``; ``InputError`` naming ``source`` and the line for anything it cannot read."""
    try:
        return _Parser(text, source).parse()
    except RecursionError:
        raise InputError("nested too deeply", source=source) from None
