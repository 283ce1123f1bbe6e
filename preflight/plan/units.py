"""Sizes and bandwidths as users write them: the unit is required and means what it says
(GiB = 2^30, GB = 10^9; Gb/s bits, GB/s bytes), because the two readings differ by 7 % and 8x."""

from __future__ import annotations

import re

from preflight.errors import InputError

_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str, flag: str = "--gpu-mem") -> int:
    """``80GiB`` (2^30) or ``80GB`` (10^9): the unit is required, because the two differ by 7 %."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]i?B|B)\s*", text, re.IGNORECASE)
    if not match:
        raise InputError(f"{flag}: expected a size with its unit, like 80GiB or 80GB, got {text!r}")
    value = float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if value <= 0:
        raise InputError(f"{flag}: expected more than 0, got {text!r}")
    return int(value)


def parse_bandwidth(text: str, flag: str) -> float:
    """``400Gb/s`` or ``400Gbit/s`` (bits), ``50GB/s`` (bytes), ``50GiB/s``; returns bytes/s."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z/]+)\s*", text)
    unit = match.group(2) if match else ""
    scale = {"Gb/s": 1e9 / 8, "Gbit/s": 1e9 / 8, "Gbps": 1e9 / 8, "Mb/s": 1e6 / 8,
             "GB/s": 1e9, "GiB/s": 2**30, "MB/s": 1e6}.get(unit)
    if not match or scale is None:
        raise InputError(f"{flag}: expected a bandwidth like 400Gb/s (bits) or 50GB/s (bytes), got {text!r}")
    value = float(match.group(1)) * scale
    if value <= 0:
        raise InputError(f"{flag}: expected more than 0, got {text!r}")
    return value
