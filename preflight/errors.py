"""The one error type that crosses a boundary: bad input from the user."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the hook's start-up does not import json for an annotation
    import json


class InputError(Exception):
    """Input the user gave us is wrong: a file, a flag, a config key.

    The CLI prints ``str(error)`` as one line and exits 2. The message names the file (and line,
    or JSON path, where there is one) and what is wrong with it.
    """

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None) -> None:
        where = source or ""
        if source and line is not None:
            where = f"{source}:{line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.line = line

    @classmethod
    def from_json(cls, exc: json.JSONDecodeError, source: str) -> InputError:
        """A file that is not valid JSON, at the line and column the parser stopped."""
        return cls(f"invalid JSON at column {exc.colno}: {exc.msg}", source=source, line=exc.lineno)
