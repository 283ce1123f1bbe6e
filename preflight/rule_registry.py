"""The registry behind ``@rule(id, title)`` in the file-judging commands (``preflight
requirements``, ``preflight config``): rule id -> (title, function), in registration order, and
the ``Located`` outcome (``file:line`` + outcome) their rules yield."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from preflight.findings import Outcome


class Located(NamedTuple):
    """A rule's outcome at ``file:line`` (a named tuple: cheaper to define than a dataclass in a hook)."""

    where: str
    outcome: Outcome


class Rules(dict):
    """rule id -> (title, function); :meth:`rule` is the decorator that fills it."""

    def rule(self, rule_id: str, title: str) -> Callable[[Any], Any]:
        def wrap(func: Any) -> Any:
            self[rule_id] = (title, func)
            return func

        return wrap
