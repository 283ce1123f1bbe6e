"""argparse value types the commands share. A value that does not fit becomes argparse's own usage
error: exit 2, one line naming the option and what was wrong."""

from __future__ import annotations

import argparse


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"expected {least} or more, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number, 0 or more."""
    return _whole(text, 0)


def count(text: str) -> int:
    """A whole number, 1 or more (ranks, sizes, degrees, items shown)."""
    return _whole(text, 1)


def port(text: str) -> int:
    value = _whole(text, 0)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535, got {value}")
    return value


def seconds(text: str) -> float:
    """A duration in seconds, more than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected more than 0 seconds, got {value}")
    return value
