"""Parse pip requirements files offline, line by line the way pip's ``req_file.py`` reads them.

What pip does and we copy: physical lines split with ``str.splitlines``; a trailing ``\\`` joins
the next line (not after a comment line) and the joined line keeps the first line's number;
``#`` starts a comment at the start of a line or after whitespace (so ``#egg=`` in a URL is not
one); ``${NAME}`` (upper-case letters, digits, ``_``) is expanded after comments are removed and
left as written when the variable is unset or empty; a line is split at the first
space-separated token that starts with ``-``: the words before it are the requirement, the rest
are options (shlex-split, long options abbreviable as in optparse). A requirement line keeps
only ``--hash``, ``--global-option`` and ``--config-settings``; pip ignores global options
written after a requirement, and so do we (they are reported as ``Skipped``). Of several
``-r``/``-c``/``-e``/``--find-links`` on one line pip uses only the first; ``-r`` inside a
``-c`` file reads requirements, not constraints; includes are relative to the including file.

Why not pip-api (0.0.35, tried on the hard cases): it does not expand ``${VAR}`` (the variable
ends up inside the URL); it reads a ``-c constraints.txt`` line as a requirement named
"constraints.txt" and never opens the file; it rewrites ``git+https://...`` to ``https://...``
so VCS requirements look like plain URLs; it resolves ``-e .`` against the current directory
and builds metadata there (our test run got "preflight-ml"); it drops ``--index-url`` /
``--extra-index-url`` lines, so the torch index cannot be checked; it returns a dict by name
(a name listed twice raises "Double requirement given") without file or line numbers; invalid
lines fail with no file:line; and importing it takes over a second because it runs
``pip --version`` in a subprocess. It does handle markers, extras, hashes, continuations,
``===`` and local labels (``+cu121``).
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote

from packaging.specifiers import InvalidSpecifier, SpecifierSet

_SEPARATORS = re.compile(r"[-_.]+")


def canonicalize_name(name: str) -> str:
    """PEP 503 normalised name (packaging.utils' own, whose import costs a hook ~20 ms)."""
    return _SEPARATORS.sub("-", name).lower()


from preflight.errors import InputError
from preflight.requirements.torch_index import torch_variant

__all__ = [
    "IndexUrl",
    "ParsedRequirements",
    "Requirement",
    "Skipped",
    "parse_requirements",
    "torch_variant",
]


@dataclass(frozen=True)
class Requirement:
    """One requirement as pip would read it; nothing is resolved, fetched or evaluated."""

    name: str  # PEP 503-normalised; "" when only a build could tell (unnamed URL or path)
    specifier: str  # str(SpecifierSet), "" when unpinned; "==<version>" for a wheel file
    extras: tuple[str, ...]
    marker: str | None  # the environment marker as written
    url: str | None  # direct URL, VCS URL or local path (without [extras])
    kind: str  # pinned, ranged, unpinned, url, vcs, editable, local-path
    source: str  # file path
    line: int  # 1-based line where the requirement starts
    raw: str  # the logical line as written, without comment
    constraint: bool  # came from a -c constraints file
    group: str | None = None  # pyproject.toml optional-dependencies extra


@dataclass(frozen=True)
class IndexUrl:
    """A package index or find-links location; ``option`` is the long form of the option."""

    url: str
    source: str
    line: int
    option: str  # --index-url, --extra-index-url or --find-links


@dataclass(frozen=True)
class Skipped:
    """A line, or one option of a line, that is read but not checked; ``reason`` says why."""

    source: str
    line: int
    raw: str
    reason: str


@dataclass
class ParsedRequirements:
    requirements: list[Requirement] = field(default_factory=list)
    constraints: list[Requirement] = field(default_factory=list)
    indexes: list[IndexUrl] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


class _LineError(Exception):
    """A problem with one line; becomes an InputError (strict) or a Skipped (lenient)."""


# --- reading -----------------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: the UTF-32 LE BOM starts with FF FE
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),  # PowerShell 5 "pip freeze > requirements.txt"
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CODING_RE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")


def read_text(path: Path) -> str:
    """The file's text: UTF-8, or UTF-8/16/32 with a BOM, or a PEP 263 ``coding:`` line as pip
    honours; anything else, a directory or a missing file is an InputError."""
    source = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", source=source) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a file", source=source) from None
    except (OSError, ValueError) as exc:  # permissions, ENAMETOOLONG, embedded NUL
        raise InputError(
            f"cannot read: {getattr(exc, 'strerror', None) or exc}", source=source
        ) from None
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding = name
            break
    else:
        for line in data.split(b"\n", 2)[:2]:
            match = _CODING_RE.match(line)
            if match:
                try:
                    encoding = codecs.lookup(match.group(1).decode("ascii")).name
                except LookupError:
                    line_no = 1 if data.startswith(line) else 2
                    raise InputError(
                        f"unknown encoding {match.group(1).decode('ascii', 'replace')!r} "
                        "in the coding declaration",
                        source=source,
                        line=line_no,
                    ) from None
                break
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line_no = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"not valid {encoding.upper()} (byte 0x{data[exc.start]:02x}); save the file as UTF-8",
            source=source,
            line=line_no,
        ) from None


# --- lines -------------------------------------------------------------------------------------

_COMMENT_RE = re.compile(r"(^|\s+)#.*$")
_ENV_VAR_RE = re.compile(r"\$\{([A-Z0-9_]+)\}")


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """pip's join_lines: ``\\`` at the end joins the next line, except on comment lines."""
    first = 0
    parts: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        is_comment = _COMMENT_RE.match(line) is not None
        if not line.endswith("\\") or is_comment:
            if is_comment:
                line = " " + line  # so the comment is still removed once joined
            if parts:
                parts.append(line)
                yield first, "".join(parts)
                parts = []
            else:
                yield number, line
        else:
            if not parts:
                first = number
            parts.append(line.strip("\\"))
    if parts:
        yield first, "".join(parts)


def _expand(line: str, environ: Mapping[str, str]) -> str:
    """``${NAME}`` replaced by its value; unset or empty variables stay as written (as pip)."""
    if "${" not in line:
        return line
    return _ENV_VAR_RE.sub(lambda m: environ.get(m.group(1)) or m.group(0), line)


def _break_args_options(line: str) -> tuple[str, str]:
    """pip's break_args_options: the requirement is everything before the first ``-`` token."""
    tokens = line.split(" ")
    for i, token in enumerate(tokens):
        if token.startswith("-"):
            return " ".join(tokens[:i]), " ".join(tokens[i:])
    return line, ""


# --- options -----------------------------------------------------------------------------------

# (long form, other spellings, takes a value); exactly the options pip accepts in a file
_OPTION_TABLE: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("--index-url", ("-i", "--pypi-url"), True),
    ("--extra-index-url", (), True),
    ("--no-index", (), False),
    ("--constraint", ("-c",), True),
    ("--requirement", ("-r",), True),
    ("--editable", ("-e",), True),
    ("--find-links", ("-f",), True),
    ("--no-binary", (), True),
    ("--only-binary", (), True),
    ("--prefer-binary", (), False),
    ("--require-hashes", (), False),
    ("--pre", (), False),
    ("--trusted-host", (), True),
    ("--use-feature", (), True),
    ("--global-option", (), True),
    ("--hash", (), True),
    ("--config-settings", ("-C",), True),
)
_LONG: dict[str, tuple[str, bool]] = {}
_SHORT: dict[str, str] = {}
for _name, _aliases, _takes_value in _OPTION_TABLE:
    _LONG[_name] = (_name, _takes_value)
    for _alias in _aliases:
        if _alias.startswith("--"):
            _LONG[_alias] = (_name, _takes_value)
        else:
            _SHORT[_alias] = _name
_PER_REQUIREMENT = frozenset({"--hash", "--global-option", "--config-settings"})
_INDEX_OPTIONS = ("--index-url", "--extra-index-url", "--find-links")
_WHY_SKIPPED = {
    "--no-index": "package indexes switched off; only --find-links locations are used",
    "--no-binary": "source builds requested",
    "--only-binary": "wheels only",
    "--prefer-binary": "older wheels preferred over newer sources",
    "--require-hashes": "hash-checking mode",
    "--pre": "pre-releases allowed",
    "--trusted-host": "host trusted without valid HTTPS",
    "--use-feature": "pip feature flag",
}


def _long_option(word: str) -> tuple[str, bool]:
    """optparse's rule: an exact long option, or the one long option it is a prefix of."""
    if word in _LONG:
        return _LONG[word]
    matches = {_LONG[w] for w in _LONG if w.startswith(word)}
    if len(matches) == 1:
        return matches.pop()
    if matches:
        names = ", ".join(sorted(name for name, _ in matches))
        raise _LineError(f"ambiguous option {word} (could be {names})")
    raise _LineError(f"no such option: {word}")


_SHLEX_CHARS = re.compile(r"[\"'\\]")
_SHLEX_SPACE = re.compile(r"[ \t\r\n]+")


def _parse_options(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Options as (long form, value) pairs in order, and the stray words pip ignores."""
    try:  # shlex is slow; without quotes or backslashes it is a plain whitespace split
        if _SHLEX_CHARS.search(text):
            import shlex

            words = shlex.split(text)
        else:
            words = [word for word in _SHLEX_SPACE.split(text) if word]
    except ValueError as exc:
        raise _LineError(f"cannot split the options ({exc}): {text}") from None
    options: list[tuple[str, str]] = []
    stray: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            stray.extend(words[i:])
            break
        if word.startswith("--"):
            spelled, has_value, value = word.partition("=")
            name, takes_value = _long_option(spelled)
            if not takes_value:
                if has_value:
                    raise _LineError(f"{name} takes no value")
                options.append((name, ""))
                continue
        elif word.startswith("-") and len(word) > 1:
            name = _SHORT.get(word[:2], "")
            if not name:
                raise _LineError(f"no such option: {word[:2]}")
            value = word[2:]  # "-rfile"; note "-r=file" means the file "=file", as in pip
            has_value = "=" if value else ""
        else:
            stray.append(word)
            continue
        if not has_value:
            if i >= len(words):
                raise _LineError(f"{name} needs a value")
            value = words[i]
            i += 1
        options.append((name, value))
    return options, stray


# --- requirements ------------------------------------------------------------------------------

_VCS_SCHEMES = frozenset((
    "git", "git+http", "git+https", "git+ssh", "git+git", "git+file",
    "hg+file", "hg+http", "hg+https", "hg+ssh", "hg+static-http",
    "svn", "svn+ssh", "svn+http", "svn+https", "svn+svn", "svn+file",
    "bzr+http", "bzr+https", "bzr+ssh", "bzr+sftp", "bzr+ftp", "bzr+lp", "bzr+file",
))  # fmt: skip
_URL_SCHEMES = frozenset({"http", "https", "file", "ftp"}) | _VCS_SCHEMES
_ARCHIVE_SUFFIXES = (
    ".whl", ".zip", ".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz",
    ".tar.xz", ".txz", ".tlz", ".tar.lz", ".tar.lzma",
)  # fmt: skip
_EXTRAS_RE = re.compile(r"^(.+)(\[[^\]]+\])$")
_EGG_RE = re.compile(r"[#&]egg=([^&]*)")
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")  # PEP 508 project name


def _scheme(text: str) -> str | None:
    if ":" not in text:
        return None
    return text.split(":", 1)[0].lower()


def _is_url(text: str) -> bool:
    return _scheme(text) in _URL_SCHEMES


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.startswith(".")


def _is_archive(text: str) -> bool:
    return text.lower().endswith(_ARCHIVE_SUFFIXES)


def _url_kind(url: str) -> str:
    scheme = _scheme(url)
    if scheme in _VCS_SCHEMES or (
        scheme and scheme.split("+", 1)[0] in ("git", "hg", "svn", "bzr")
    ):
        return "vcs"
    if scheme is None or scheme == "file" or len(scheme) == 1:  # no scheme, or C:\ on Windows
        return "local-path"
    return "url"


def _pep508():  # noqa: ANN202
    """packaging's PEP 508 parser, imported only for lines the fast path does not cover."""
    from packaging.requirements import InvalidRequirement, Requirement

    return Requirement, InvalidRequirement


def _split_extras(text: str) -> tuple[str, tuple[str, ...]]:
    match = _EXTRAS_RE.match(text)
    if not match:
        return text, ()
    _Pep508, InvalidRequirement = _pep508()
    try:
        extras = _Pep508("placeholder" + match.group(2)).extras
    except InvalidRequirement:
        raise _LineError(f"invalid extras {match.group(2)}") from None
    return match.group(1), tuple(sorted(extras))


def _parse_wheel_filename(filename: str):  # noqa: ANN202
    # packaging.utils imports packaging.tags (sysconfig, logging): tens of milliseconds that a
    # pre-commit hook pays on every run, so only when a wheel file is actually named
    from packaging.utils import parse_wheel_filename

    return parse_wheel_filename(filename)


def _wheel(url: str) -> tuple[str, str] | None:
    """(name, "==version") of a wheel file path or URL, ``None`` when it is not a wheel."""
    path = url.split("#", 1)[0].split("?", 1)[0]
    if not path.lower().endswith(".whl"):
        return None
    filename = unquote(path.replace("\\", "/").rsplit("/", 1)[-1])
    try:
        name, version, _build, _tags = _parse_wheel_filename(filename)
    except ValueError as exc:  # packaging's InvalidWheelFilename is a ValueError
        raise _LineError(f"invalid wheel file name {filename!r}: {_first_line(exc)}") from None
    return str(name), f"=={version}"


def _egg(url: str) -> tuple[str, tuple[str, ...]]:
    """Name and extras from a ``#egg=name[extras]`` fragment; ("", ()) when there is none."""
    match = _EGG_RE.search(url)
    if not match or not match.group(1):
        return "", ()
    if _NAME.fullmatch(match.group(1)):  # a bare project name, as nearly always: no parse needed
        return canonicalize_name(match.group(1)), ()
    _Pep508, InvalidRequirement = _pep508()
    try:
        egg = _Pep508(match.group(1))
    except InvalidRequirement:
        raise _LineError(f"invalid #egg= fragment {match.group(1)!r}") from None
    if egg.specifier or egg.url or egg.marker:
        raise _LineError(f"#egg= must name a project only, not {match.group(1)!r}")
    return canonicalize_name(egg.name), tuple(sorted(egg.extras))


def _first_line(exc: Exception) -> str:
    """packaging's messages end with the line and a caret under the error: keep one line."""
    return str(exc).split("\n", 1)[0].strip()


def _specifier_kind(specifier: str, operators: list[str]) -> str:
    if not specifier:
        return "unpinned"
    return "pinned" if any(op in ("==", "===") for op in operators) else "ranged"


class _Where(NamedTuple):
    """Where a requirement was read. A named tuple: a pre-commit hook pays ~1 ms per frozen
    dataclass it defines, a third of that for this."""

    source: str
    line: int
    raw: str
    constraint: bool
    group: str | None = None


# ``platform_system == "Linux"``, ``python_version >= '3.10' and sys_platform != "win32"``: the
# markers real files carry. Every string this matches is a valid PEP 508 marker for every
# packaging release we support (>= 23: same variables, operators, quoting, and packaging's own
# whitespace ``[ \t]``), so it needs no parse; anything else (parentheses, ``extra``, legacy
# ``os.name`` spellings, a string on the left, an error to word) goes to packaging.markers,
# whose import costs a pre-commit hook ~25 ms.
_MARKER_ITEM = (
    r"(?:python_version|python_full_version|os_name|sys_platform|platform_release"
    r"|platform_system|platform_version|platform_machine|platform_python_implementation"
    r"|implementation_name|implementation_version)"
    r"(?:[ \t]*(?:===|==|~=|!=|<=|>=|<|>)[ \t]*|[ \t]+(?:not[ \t]+)?in[ \t]+)"
    r"(?:\"[^\"]*\"|'[^']*')"
)
_SIMPLE_MARKER = re.compile(rf"{_MARKER_ITEM}(?:[ \t]+(?:and|or)[ \t]+{_MARKER_ITEM})*")


def _validate_marker(marker: str) -> str | None:
    marker = marker.strip()
    if not marker:
        return None
    if _SIMPLE_MARKER.fullmatch(marker):
        return marker
    from packaging.markers import InvalidMarker, Marker  # only for markers the fast path leaves

    try:
        Marker(marker)
    except InvalidMarker as exc:
        raise _LineError(f"invalid environment marker: {_first_line(exc)}") from None
    return marker


_URL_MARKER_RE = re.compile(r"\s;")


def _marker_as_written(text: str, has_url: bool) -> str | None:
    """The marker text after the ``;`` that ends the requirement (after whitespace for URLs)."""
    if has_url:
        match = _URL_MARKER_RE.search(text)
        return text[match.end() :].strip() if match else None
    return text.split(";", 1)[1].strip() if ";" in text else None


# ``name``, ``name[extra,...]`` and ``name[...] <specifiers>`` without a marker or URL: most
# lines of a real file. packaging.requirements (with its marker grammar) costs a pre-commit hook
# ~70 ms to import, so these lines are read with packaging.specifiers alone.
_SIMPLE = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*"
    r"(?:\[\s*(?P<extras>[A-Za-z0-9._-]+(?:\s*,\s*[A-Za-z0-9._-]+)*)?\s*\])?\s*"
    r"(?P<spec>(?:===|==|!=|<=|>=|~=|<|>)[^;@\[\]]*)?$"
)


def _simple_requirement(text: str, where: _Where) -> Requirement | None:
    match = _SIMPLE.match(text)
    if match is None:
        return None
    try:
        spec = SpecifierSet(match.group("spec") or "")
    except InvalidSpecifier:
        return None  # the full parser words the error
    extras = tuple(sorted({e.strip() for e in (match.group("extras") or "").split(",") if e.strip()}))
    specifier = str(spec)
    kind = _specifier_kind(specifier, [s.operator for s in spec if "*" not in s.version])
    return Requirement(
        canonicalize_name(match.group("name")), specifier, extras, None, None, kind,
        where.source, where.line, where.raw, where.constraint, where.group,
    )  # fmt: skip


def requirement_from_pep508(text: str, where: _Where) -> Requirement:
    """A PEP 508 string (``name[extras] specifier ; marker`` or ``name @ url ; marker``)."""
    simple = _simple_requirement(text, where)
    if simple is not None:
        return simple
    _Pep508, InvalidRequirement = _pep508()
    try:
        req = _Pep508(text)
    except InvalidRequirement as exc:
        raise _LineError(f"invalid requirement {text!r}: {_first_line(exc)}") from None
    marker = None
    if req.marker is not None:
        marker = _marker_as_written(text, bool(req.url)) or str(req.marker)
    name = canonicalize_name(req.name)
    extras = tuple(sorted(req.extras))
    if req.url:
        wheel = _wheel(req.url)
        return Requirement(
            name, wheel[1] if wheel else "", extras, marker, redact_url(req.url), _url_kind(req.url),
            where.source, where.line, where.raw, where.constraint, where.group,
        )  # fmt: skip
    specifier = str(req.specifier)
    kind = _specifier_kind(specifier, [s.operator for s in req.specifier if "*" not in s.version])
    return Requirement(
        name, specifier, extras, marker, None, kind,
        where.source, where.line, where.raw, where.constraint, where.group,
    )  # fmt: skip


def _requirement_line(text: str, where: _Where) -> Requirement:
    """pip's parse_req_from_line, without touching the file system."""
    marker: str | None = None
    separator = "; " if _is_url(text) else ";"
    if separator in text:
        text, marker_text = text.split(separator, 1)
        marker = _validate_marker(marker_text)
    text = text.strip()
    if not text:
        raise _LineError("an environment marker without a requirement")
    if _is_url(text):
        wheel = _wheel(text)
        name, extras = (wheel[0], ()) if wheel else _egg(text)
        return Requirement(
            name, wheel[1] if wheel else "", extras, marker, redact_url(text), _url_kind(text),
            where.source, where.line, where.raw, where.constraint, where.group,
        )  # fmt: skip
    if "@" not in text or _looks_like_path(text.split("@", 1)[0]):
        path, extras = _split_extras(text)
        if _looks_like_path(text) or _is_archive(path):
            wheel = _wheel(path)
            return Requirement(
                wheel[0] if wheel else "", wheel[1] if wheel else "", extras, marker, path,
                "local-path", where.source, where.line, where.raw, where.constraint, where.group,
            )  # fmt: skip
    req = requirement_from_pep508(text, where)
    if marker is None:
        return req
    return Requirement(
        req.name, req.specifier, req.extras, marker, req.url, req.kind,
        req.source, req.line, req.raw, req.constraint, req.group,
    )  # fmt: skip


_NETLOC_AUTH_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@]*)@")


def redact_url(url: str) -> str:
    """The URL with a password or token in it replaced by ``****`` (``git@`` is kept)."""
    match = _NETLOC_AUTH_RE.match(url)
    if not match:
        return url
    user, colon, _password = match.group(2).partition(":")
    if colon:
        auth = f"{user}:****"
    elif user == "git":
        return url
    else:
        auth = "****"
    return f"{match.group(1)}{auth}@{url[match.end() :]}"


_NO_EDITABLE_PEP508 = "pip does not accept 'name @ url' after -e; write -e <url>#egg=<name>"


def _editable(target: str, where: _Where) -> Requirement:
    """pip's parse_editable: a local project directory or a VCS URL (``#egg=`` gives the name)."""
    path, extras = _split_extras(target)
    if _is_url(target):
        kind = _url_kind(target)
        if kind == "url":
            raise _LineError(
                f"-e {target}: an editable install needs a local directory or a VCS URL "
                "(git+https://...), not a plain URL"
            )
        if kind == "vcs":
            name, extras = _egg(target)
            return Requirement(
                name, "", extras, None, redact_url(target), "editable",
                where.source, where.line, where.raw, where.constraint, where.group,
            )  # fmt: skip
    elif "@" in target and not _looks_like_path(target.split("@", 1)[0]):
        raise _LineError(_NO_EDITABLE_PEP508)
    return Requirement(
        "", "", extras, None, path, "editable",
        where.source, where.line, where.raw, where.constraint, where.group,
    )  # fmt: skip


# --- files -------------------------------------------------------------------------------------


_REMOTE_RE = re.compile(r"^(http|https|file):", re.IGNORECASE)


class _Parser:
    def __init__(self, environ: Mapping[str, str], strict: bool) -> None:
        self.environ = environ
        self.strict = strict
        self.result = ParsedRequirements()
        self.stack: list[tuple[str, str]] = []  # (real path, source) of files being read
        self.seen: set[str] = set()

    def parse_file(self, source: str, constraint: bool, text: str) -> None:
        real = os.path.realpath(source)
        self.stack.append((real, source))
        if real not in self.seen:
            self.seen.add(real)
            self.result.files.append(source)
        try:
            for number, line in _logical_lines(text):
                raw = _COMMENT_RE.sub("", line).strip()
                if not raw:
                    continue
                try:
                    self.parse_line(
                        _expand(raw, self.environ), _Where(source, number, raw, constraint)
                    )
                except _LineError as exc:
                    if self.strict:
                        raise InputError(str(exc), source=source, line=number) from None
                    self.skip(_Where(source, number, raw, constraint), f"not understood: {exc}")
        finally:
            self.stack.pop()

    def skip(self, where: _Where, reason: str) -> None:
        self.result.skipped.append(Skipped(where.source, where.line, where.raw, reason))

    def add(self, req: Requirement) -> None:
        if req.constraint:
            if req.kind == "editable":
                raise _LineError("editable requirements are not allowed as constraints")
            if not req.name:
                raise _LineError("unnamed requirements are not allowed as constraints")
            self.result.constraints.append(req)
        else:
            self.result.requirements.append(req)

    def parse_line(self, line: str, where: _Where) -> None:
        args, option_text = _break_args_options(line)
        options, stray = _parse_options(option_text) if option_text else ([], [])
        if stray[:1] == ["@"] and not args and any(name == "--editable" for name, _ in options):
            raise _LineError(_NO_EDITABLE_PEP508)
        for word in stray:
            self.skip(where, f"{word!r}: a stray word after the options; pip ignores it")
        names = [name for name, _ in options]
        if args:
            self.add(_requirement_line(args, where))
            ignored = [o for o in options if o[0] not in _PER_REQUIREMENT]
            why = "pip ignores it after a requirement"
        elif "--editable" in names:
            used = names.index("--editable")
            self.add(_editable(options[used][1], where))
            ignored = [
                o for i, o in enumerate(options) if i != used and o[0] != "--config-settings"
            ]
            why = "pip ignores it on an -e line"
        elif "--requirement" in names or "--constraint" in names:
            option = "--requirement" if "--requirement" in names else "--constraint"
            used = names.index(option)
            self.include(options[used][1], option == "--constraint", where)
            ignored = [o for i, o in enumerate(options) if i != used]
            why = f"pip ignores it on a {option} line"
        else:
            self.option_line(options, where)
            return
        for name, value in ignored:
            self.skip(where, f"{name} {value}".rstrip() + f": {why}")

    def option_line(self, options: list[tuple[str, str]], where: _Where) -> None:
        """Global options: indexes are recorded, the rest skipped with what they mean."""
        found_links = False
        for name, value in options:
            if name in _INDEX_OPTIONS:
                if name == "--find-links":
                    if found_links:
                        self.skip(where, f"--find-links {value}: pip uses only the first on a line")
                        continue
                    found_links = True
                self.result.indexes.append(
                    IndexUrl(redact_url(value), where.source, where.line, name)
                )
            elif name in _PER_REQUIREMENT:
                self.skip(where, f"{name}: no requirement on this line; pip ignores it")
            else:
                self.skip(
                    where, f"{name} {value}".rstrip() + f": {_WHY_SKIPPED[name]}; not checked"
                )

    def include(self, target: str, constraint: bool, where: _Where) -> None:
        option = "-c" if constraint else "-r"
        if _REMOTE_RE.match(target):
            self.skip(where, f"{option} {target}: remote file not read (offline)")
            return
        source = os.path.join(os.path.dirname(where.source), target)
        path = Path(source)
        try:
            real = os.path.realpath(source)
            is_dir = path.is_dir()
            exists = path.exists()
        except (OSError, ValueError) as exc:
            raise _LineError(f"{option} {target}: cannot read {source}: {exc}") from None
        if any(open_real == real for open_real, _ in self.stack):
            chain = " -> ".join([s for _, s in self.stack] + [source])
            raise _LineError(f"{option} {target}: include loop ({chain})")
        if is_dir:
            raise _LineError(f"{option} {target}: {source} is a directory, not a requirements file")
        if not exists:
            hint = ""
            if (
                target.startswith("=")
                and Path(os.path.join(os.path.dirname(where.source), target[1:])).exists()
            ):
                hint = f"; pip reads '{option}=FILE' as the file '={target[1:]}', write '{option} {target[1:]}'"
            raise _LineError(f"{option} {target}: no such file {source}{hint}")
        try:
            text = read_text(path)
        except InputError as exc:
            raise _LineError(f"{option} {target}: {exc}") from None
        self.parse_file(source, constraint, text)


def parse_requirements(
    path: Path, *, environ: Mapping[str, str] | None = None, strict: bool = True
) -> ParsedRequirements:
    """Read a requirements file and the files it includes with ``-r`` and ``-c``.

    ``environ`` (default ``os.environ``) supplies ``${NAME}`` values. With ``strict`` (the
    default) a line that pip would reject is an InputError naming its file and line; otherwise it
    is recorded in ``skipped``. Unreadable, missing or non-UTF-8 files are always InputErrors.
    """
    parser = _Parser(os.environ if environ is None else environ, strict)
    parser.parse_file(str(path), False, read_text(Path(path)))
    return parser.result
