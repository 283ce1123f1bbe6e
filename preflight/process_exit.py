"""Ending the process without freeing a large result object by object.

``preflight logs`` on a million points holds lists of millions of floats: freeing them one by one
as the interpreter exits takes 0.15-0.2 s of the command's 2 s. A command that has written and
flushed everything it had to say may ask to skip that; the console script (``preflight.cli.entry``,
also ``python -m preflight``) then leaves through ``os._exit`` and the OS takes the memory back at
once. ``preflight.cli.main`` called in-process (tests, other programs) always returns normally.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import NoReturn

_console = False  # this process is the console script: leave() ends it
_skip = False
_kept: list[object] = []


def as_console() -> None:
    """Called by the console script before it runs the command."""
    global _console
    _console = True


def skip_teardown(*keep: object) -> None:
    """Ask that this process end without the interpreter's teardown (see the module docstring).
    ``keep`` stays referenced until then: freed when the command's frame returned, it would cost
    the same time before the exit instead of at it. In-process callers keep nothing."""
    global _skip
    if _console:
        _skip = True
        _kept.extend(keep)


def leave(code: int) -> NoReturn:
    """Exit with ``code``; through ``os._exit`` when a command asked to skip the teardown."""
    if _skip:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be written
                stream.flush()
        os._exit(code)
    sys.exit(code)
