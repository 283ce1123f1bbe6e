"""Slurm hostlist expressions (``gpu[01-04,07]``), expanded as ``scontrol show hostnames`` does.

Syntax (Slurm's hostlist docs, e.g. the ``Slurm::Hostlist`` man page): hostnames or bracketed
hostlists separated by ``,`` or whitespace; a bracket holds numbers and ``lo-hi`` ranges separated
by ``,``; a range keeps the zero padding of its low end (``[001-100]``); several brackets in one
name expand to their cartesian product, the leftmost varying slowest (``a[1-2]b[3-4]``). The old
BlueGene ``[123x456]`` prism form is not supported (it is an error, not a silent guess).
Written from the documented syntax; no code from other hostlist implementations.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping

from preflight.errors import InputError

MAX_HOSTS = 100_000
"""More hosts than this in one expression is a typo (``n[1-1000000]``), not a cluster."""

_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def _split_top(text: str) -> list[str]:
    """Split on commas and whitespace outside brackets; check the brackets pair up."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "[":
            if depth:
                raise ValueError(f"nested '[' in {text.strip()!r}")
            depth = 1
        elif char == "]":
            if not depth:
                raise ValueError(f"']' without '[' in {text.strip()!r}")
            depth = 0
        elif not depth and (char == "," or char.isspace()):
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    if depth:
        raise ValueError(f"unclosed '[' in {text.strip()!r}")
    items.append("".join(current))
    return [item for item in items if item]


def _numbers(inner: str, item: str) -> list[str]:
    out: list[str] = []
    for part in inner.split(","):
        match = _RANGE.fullmatch(part.strip())
        if not match:
            raise ValueError(f"malformed range {part!r} in {item!r} (expected N or LO-HI)")
        lo, hi = match[1], match[2] if match[2] is not None else match[1]
        if int(hi) < int(lo):
            raise ValueError(f"range {part!r} runs backwards in {item!r}")
        if int(hi) - int(lo) >= MAX_HOSTS:
            raise ValueError(f"{item!r} expands to more than {MAX_HOSTS} hosts")
        out.extend(str(n).zfill(len(lo)) for n in range(int(lo), int(hi) + 1))
    return out


def _expand_one(item: str) -> list[str]:
    pieces = re.split(r"\[([^\]]*)\]", item)  # literal, bracket, literal, bracket, ..., literal
    choices = [[piece] if i % 2 == 0 else _numbers(piece, item) for i, piece in enumerate(pieces)]
    total = 1
    for choice in choices:
        total *= len(choice)
    if total > MAX_HOSTS:
        raise ValueError(f"{item!r} expands to more than {MAX_HOSTS} hosts")
    return ["".join(parts) for parts in itertools.product(*choices)]


def expand_nodelist(text: str, *, source: str | None = None, line: int | None = None) -> list[str]:
    """Every host name in a Slurm hostlist expression, in order (duplicates kept).

    >>> expand_nodelist("gpu[01-04,07]")
    ['gpu01', 'gpu02', 'gpu03', 'gpu04', 'gpu07']
    >>> expand_nodelist("a[1-2]b[3-4]")
    ['a1b3', 'a1b4', 'a2b3', 'a2b4']
    >>> expand_nodelist("a[1-3],b5,c[07-09]")
    ['a1', 'a2', 'a3', 'b5', 'c07', 'c08', 'c09']
    >>> expand_nodelist("node[098-101]")
    ['node098', 'node099', 'node100', 'node101']
    >>> expand_nodelist("gpu[04-01]")
    Traceback (most recent call last):
    ...
    preflight.errors.InputError: range '04-01' runs backwards in 'gpu[04-01]'

    Errors are ``InputError`` naming ``source`` (and ``line``) when given.
    """
    try:
        hosts: list[str] = []
        for item in _split_top(text):
            hosts.extend(_expand_one(item))
            if len(hosts) > MAX_HOSTS:
                raise ValueError(f"{text.strip()!r} expands to more than {MAX_HOSTS} hosts")
        return hosts
    except ValueError as exc:
        raise InputError(str(exc), source=source, line=line) from None


def nodelist_from_env(environ: Mapping[str, str]) -> list[str]:
    """The job's hosts from ``SLURM_JOB_NODELIST`` (else ``SLURM_NODELIST``); [] outside Slurm.

    >>> nodelist_from_env({"SLURM_JOB_NODELIST": "dgx[1-2]", "SLURM_NODELIST": "old"})
    ['dgx1', 'dgx2']
    >>> nodelist_from_env({"SLURM_NODELIST": "n7"})
    ['n7']
    >>> nodelist_from_env({})
    []
    """
    for name in ("SLURM_JOB_NODELIST", "SLURM_NODELIST"):
        value = environ.get(name, "").strip()
        if value:
            return expand_nodelist(value, source=name)
    return []
