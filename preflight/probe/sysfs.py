"""Tiny readers for /proc and /sys text files, shared by the probe's fact readers."""

from __future__ import annotations

from typing import Optional


def read_text(path: str) -> Optional[str]:
    """The stripped contents of a small text file, or None when it cannot be read."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def read_int(path: str) -> Optional[int]:
    text = read_text(path)
    if text is None:
        return None
    try:
        return int(text, 0) if text.startswith("0x") else int(text)
    except ValueError:
        return None


def parse_key_values(text: str, sep: str = ":") -> dict:
    """``Key: value`` lines (``/proc/meminfo``, ``/etc/os-release`` with sep='=') into a dict.

    >>> parse_key_values("MemTotal:       263836420 kB\\nSwapTotal: 0 kB")
    {'MemTotal': '263836420 kB', 'SwapTotal': '0 kB'}
    """
    out = {}
    for line in text.splitlines():
        key, found, value = line.partition(sep)
        if found:
            out[key.strip()] = value.strip().strip('"')
    return out
