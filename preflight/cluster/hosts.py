"""Hosts files: the machines to check, in whichever format the user already has.

Formats (``#`` starts a comment anywhere on a line; blank lines are ignored):

- ``plain``: one SSH target a line: ``gpu01``, ``me@gpu01``, ``gpu01:2222``, ``me@gpu01:2222``,
  ``[fe80::1]:2222``, ``me@[fe80::1]:2222``, or a bare IPv6 address (``fe80::1``, no port).
- ``deepspeed``: ``worker-1 slots=8`` on every line (DeepSpeed's launcher requires ``slots=``).
- ``openmpi``: ``node01 slots=8 max_slots=8``; ``slots`` is optional, spaces around ``=`` are
  allowed, and Open MPI's other spellings work (``count``/``cpu``, ``max-slots``/``slots_max``...,
  ``username=``, ``port=``).
- ``mpich``: Hydra's ``host`` or ``host:N``, N being the process count (kept in ``slots``).
- ``slurm``: Slurm hostlists, ``gpu[01-04,07] login1``, several a line (see ``slurm.py``).

Auto-detection (``fmt="auto"``) reads the whole file, picks one format, then parses every line in
it; a line that does not fit is an error that names the format, so a wrong pick is visible and
``--hosts-format`` overrides it:

1. a ``key=value`` word after the host (or a bare Open MPI keyword like ``slots``): "deepspeed"
   when every line is exactly ``host slots=N``, else "openmpi";
2. a comma, a second word, or a ``[`` holding only digits, ``-`` and ``,`` (``gpu[01-04]``; an
   IPv6 ``[fe80::1]`` holds colons): "slurm";
3. ``host:N`` is MPICH's process count or an SSH port. N >= 1024 reads as a port (sshd on a
   non-standard port sits above the privileged range: 2222, 30022; no GPU host runs a thousand
   ranks), so does N == 22 (the SSH port, written out); any other N < 1024 reads as a process
   count (a GPU host's count is its GPU count, 1-16). ``user@`` and ``[v6]`` are plain-only.
   Process counts and no port hints: "mpich"; a file with both kinds is an error naming one line
   of each, rather than a guess;
4. otherwise "plain".

Each host may appear once (same name and port): Open MPI would add up repeated lines, DeepSpeed
refuses them, and a check run twice on one machine hides nothing but wastes time.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from preflight.cluster.slurm import expand_nodelist
from preflight.errors import InputError

FORMATS = ("auto", "plain", "deepspeed", "openmpi", "mpich", "slurm")

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.$-]*")
_SLOTS_KEYS = ("slots", "count", "cpu")
# Open MPI's spellings, from PRRTE's src/util/hostfile/hostfile_lex.l
_MAX_KEYS = ("max_slots", "max-slots", "slots_max", "slots-max", "max_cpu", "max-cpu", "cpu_max",
             "cpu-max", "max_count", "max-count", "count_max", "count-max")
_USER_KEYS = ("username", "user-name", "user_name")
_KEYWORDS = (*_SLOTS_KEYS, *_MAX_KEYS, *_USER_KEYS, "port")
_SLURM_BRACKET = re.compile(r"\[[\d,\s-]*(\]|$)")
_HOST_N = re.compile(r"[^:@\[\]]+:(\d+)")


@dataclass(frozen=True)
class Host:
    """One machine from a hosts file; ``None``: not given here (the SSH config or defaults apply).

    >>> Host("fe80::1", user="me", port=2222).target
    'me@[fe80::1]:2222'
    >>> Host("gpu01").target
    'gpu01'
    """

    name: str
    user: str | None = None
    port: int | None = None
    slots: int | None = None
    source: str = ""

    @property
    def target(self) -> str:
        """``user@host:port`` with the parts that were given (IPv6 bracketed before a port)."""
        name = f"[{self.name}]" if ":" in self.name and self.port is not None else self.name
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"{user}{name}{port}"


class _Line:
    """One content line, and the ``InputError`` that points at it."""

    def __init__(self, source: str, number: int, text: str) -> None:
        self.source, self.number, self.text = source, number, text
        self.words = re.sub(r"\s*=\s*", "=", text).split()
        self.detected = ""  # the format auto-detection picked, named in errors

    def error(self, message: str) -> InputError:
        if self.detected:
            message += f" (read as {self.detected}; --hosts-format picks another format)"
        return InputError(message, source=self.source, line=self.number)

    def host(self, name: str, user: str | None = None, port: int | None = None,
             slots: int | None = None) -> Host:
        return Host(self._name(name), user, port, slots, f"{self.source}:{self.number}")

    def _name(self, name: str) -> str:
        if _NAME.fullmatch(name):
            return name
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            raise self.error(f"{name!r} is not a host name or address: {self.text!r}") from None
        return name

    def user(self, token: str) -> tuple[str | None, str]:
        if "@" not in token:
            return None, token
        user, _, rest = token.partition("@")
        if not _USER.fullmatch(user) or not rest:
            raise self.error(f"unparsable line {self.text!r} (expected user@host)")
        return user, rest

    def number_field(self, text: str, what: str, low: int, high: int) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            limit = f"{low}-{high}" if high < 10**9 else f"a whole number >= {low}"
            raise self.error(f"bad {what} {text!r} (must be {limit}): {self.text!r}")
        return int(text)

    def port(self, text: str) -> int:
        return self.number_field(text, "port", 1, 65535)

    def slots(self, text: str, what: str = "slots") -> int:
        return self.number_field(text, what, 1, 10**9)


def _content_lines(text: str, source: str) -> list[_Line]:
    lines = []
    for number, raw in enumerate(text.split("\n"), 1):
        content = raw.split("#", 1)[0].strip()
        if content:
            lines.append(_Line(source, number, content))
    return lines


def _parse_plain(line: _Line) -> list[Host]:
    if len(line.words) != 1:
        raise line.error(f"unparsable line {line.text!r} (one host a line: [user@]host[:port])")
    user, rest = line.user(line.words[0])
    if rest.startswith("["):
        match = re.fullmatch(r"\[([^\]]+)\](?::(.*))?", rest)
        if not match or ":" not in match[1]:
            raise line.error(f"unparsable line {line.text!r} ([...] is for IPv6: [fe80::1]:22)")
        name, port = match[1], match[2]
    elif rest.count(":") >= 2:
        name, port = rest, None  # a bare IPv6 address; a port needs the [v6]:port form
    else:
        name, colon, after = rest.partition(":")
        port = after if colon else None
    return [line.host(name, user=user, port=None if port is None else line.port(port))]


def _parse_openmpi(line: _Line, strict: bool = False) -> list[Host]:
    user, name = line.user(line.words[0])
    fields: dict[str, str] = {}
    for word in line.words[1:]:
        key, eq, value = word.partition("=")
        if not eq or key not in _KEYWORDS:
            known = "slots=" if strict else "slots=, max_slots=, username=, port="
            raise line.error(f"unparsable line {line.text!r} (expected {known} after the host)")
        kind = "slots" if key in _SLOTS_KEYS else "max_slots" if key in _MAX_KEYS else key
        kind = "user" if key in _USER_KEYS else kind
        if kind in fields:
            raise line.error(f"{kind} given twice: {line.text!r}")
        fields[kind] = value
    if strict and set(fields) != {"slots"}:
        raise line.error(f"unparsable line {line.text!r} (DeepSpeed lines are 'host slots=N')")
    slots = line.slots(fields["slots"]) if "slots" in fields else None
    if "max_slots" in fields:
        most = line.slots(fields["max_slots"], "max_slots")
        if slots is not None and most < slots:
            raise line.error(f"max_slots={most} is less than slots={slots}: {line.text!r}")
        slots = most if slots is None else slots  # Open MPI: max_slots alone sets slots too
    if user and "user" in fields:
        raise line.error(f"user given twice (user@ and username=): {line.text!r}")
    port = line.port(fields["port"]) if "port" in fields else None
    return [line.host(name, user=user or fields.get("user"), port=port, slots=slots)]


def _parse_mpich(line: _Line) -> list[Host]:
    token = line.words[0]
    if len(line.words) != 1 or "@" in token or "[" in token:
        raise line.error(f"unparsable line {line.text!r} (MPICH lines are 'host' or 'host:N')")
    if token.count(":") != 1:
        return [line.host(token)]  # a name, or a bare IPv6 address
    name, _, count = token.partition(":")
    return [line.host(name, slots=line.slots(count, "slots (MPICH process count)"))]


def _parse_slurm(line: _Line) -> list[Host]:
    names = expand_nodelist(line.text, source=line.source, line=line.number)
    return [line.host(name) for name in names]


_PARSERS = {
    "plain": _parse_plain,
    "deepspeed": lambda line: _parse_openmpi(line, strict=True),
    "openmpi": _parse_openmpi,
    "mpich": _parse_mpich,
    "slurm": _parse_slurm,
}


def _plain_or_mpich(lines: list[_Line]) -> str:
    count: _Line | None = None
    port: _Line | None = None
    for line in lines:
        token = line.words[0]
        match = _HOST_N.fullmatch(token)
        if "@" in token or token.startswith("["):
            port = port or line
        elif match and (int(match[1]) >= 1024 or int(match[1]) == 22):
            port = port or line
        elif match:
            count = count or line
    if count and port:
        later = max(count, port, key=lambda line: line.number)
        raise later.error(
            f"cannot tell MPICH process counts from SSH ports: {count.text!r} (line {count.number})"
            f" reads as 'host:processes', {port.text!r} (line {port.number}) as 'host:port';"
            " pass --hosts-format plain or --hosts-format mpich"
        )
    return "mpich" if count else "plain"


def detect_format(text: str, source: str = "<hosts>") -> str:
    """The format ``fmt="auto"`` picks for ``text`` (rules in the module docstring).

    >>> detect_format("worker-1 slots=8\\nworker-2 slots=8\\n")
    'deepspeed'
    >>> detect_format("node01 slots=8 max_slots=8\\nnode02\\n")
    'openmpi'
    >>> detect_format("gpu[01-04]\\n")
    'slurm'
    >>> detect_format("donner:2\\nfoo:3\\n"), detect_format("gpu01:2222\\ngpu02\\n")
    ('mpich', 'plain')
    """
    lines = _content_lines(text, source)
    if any(w.partition("=")[0] in _KEYWORDS or "=" in w for ln in lines for w in ln.words[1:]):
        strict = all(len(ln.words) == 2 and re.fullmatch(r"slots=\d+", ln.words[1]) for ln in lines)
        return "deepspeed" if strict else "openmpi"
    if any(len(ln.words) > 1 or "," in ln.text or _SLURM_BRACKET.search(ln.text) for ln in lines):
        return "slurm"
    return _plain_or_mpich(lines)


def parse_hosts(text: str, source: str, fmt: str = "auto") -> list[Host]:
    """The hosts in ``text``, in file order; ``source`` names the file in errors and sources.

    >>> [h.target for h in parse_hosts("me@gpu01:2222  # head\\n[fe80::1]:22\\n", "hosts.txt")]
    ['me@gpu01:2222', '[fe80::1]:22']
    >>> parse_hosts("worker-1 slots=8\\n", "hostfile")
    [Host(name='worker-1', user=None, port=None, slots=8, source='hostfile:1')]
    >>> parse_hosts("gpu01\\ngpu01\\n", "hosts.txt")
    Traceback (most recent call last):
    ...
    preflight.errors.InputError: hosts.txt:2: duplicate host gpu01 (also on line 1)
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown hosts format {fmt!r} (choose from {', '.join(FORMATS)})")
    lines = _content_lines(text, source)
    if not lines:
        raise InputError("no hosts in the file (only blank lines and comments)", source=source)
    chosen = detect_format(text, source) if fmt == "auto" else fmt
    hosts: list[Host] = []
    seen: dict[tuple[str, int | None], int] = {}
    for line in lines:
        line.detected = chosen if fmt == "auto" else ""
        for host in _PARSERS[chosen](line):
            key = (host.name, host.port)
            if key in seen:
                label = Host(host.name, port=host.port).target
                message = f"duplicate host {label} (also on line {seen[key]})"
                raise InputError(message, source=source, line=line.number)
            seen[key] = line.number
            hosts.append(host)
    return hosts


def load_hosts(path: Path, fmt: str = "auto") -> list[Host]:
    """Read and parse a hosts file; every problem with it is an ``InputError`` naming the file."""
    source = str(path)
    if fmt not in FORMATS:
        raise InputError(f"unknown hosts format {fmt!r} (choose from {', '.join(FORMATS)})")
    if path.is_dir():
        raise InputError("is a directory, not a hosts file", source=source)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError("hosts file not found", source=source) from None
    except UnicodeDecodeError:
        raise InputError("not a text file (not UTF-8)", source=source) from None
    except OSError as exc:
        raise InputError(f"cannot read hosts file: {exc.strerror or exc}", source=source) from None
    return parse_hosts(text, source, fmt)
