"""The rich console every report writes to.

rich's default reaction to a closed pipe (``preflight node | head``) is ``SystemExit(1)``, which
would read as "a check failed"; here the rest of the output is discarded instead, and the command
still exits with its verdict.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console


class ReportConsole(Console):
    def on_broken_pipe(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, (sys.stderr if self.stderr else sys.stdout).fileno())


def make_console(*, stderr: bool = False) -> Console:
    return ReportConsole(stderr=stderr)
