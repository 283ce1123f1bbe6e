"""TOML parsing for settings, pyproject.toml and the compatibility data, with the parser imported
only when a TOML file is actually read (a pre-commit hook with no config never pays for it)."""

from __future__ import annotations

import re
import sys
from typing import Any


class TomlError(ValueError):
    """Invalid TOML; ``line`` when the parser said where."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


def parse_toml(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise TomlError(message, int(match.group(1)) if match else None) from None
