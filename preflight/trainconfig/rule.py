"""The rule registry of ``preflight config``: ``@rule(id, title)`` on a function ``(job) ->
findings``. A rule yields ``Located`` outcomes (``file:line`` + outcome); a rule that yields
nothing passes once. Values are read leniently (``"true"``, ``"1e-4"``), because the frameworks
coerce strings from YAML and the command line the same way."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from preflight.rule_registry import Located, Rules
from preflight.trainconfig.job import Job

Rule = Callable[[Job], Iterator[Located]]
RULES = Rules()  # rule id -> (title, Rule)
rule = RULES.rule


RULE_MODULES = ("rules_batch", "rules_precision", "rules_schedule", "rules_method", "rules_eval", "rules_deepspeed",
                "rules_conflicts", "rules_keys")


def all_rules() -> dict[str, tuple[str, Rule]]:
    """Every rule, in module order (importing a rules module registers its rules)."""
    import importlib

    for name in RULE_MODULES:
        importlib.import_module(f"preflight.trainconfig.{name}")
    return RULES


def as_bool(value: Any) -> bool | None:
    """True/False from a YAML/JSON value; None for anything else (``auto``, null, numbers)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return None


def truthy(value: Any) -> bool:
    """Python truthiness as the frameworks' ``if data.get(key)`` sees a YAML value (0, ``false``,
    empty and null are off), with ``"false"``/``"no"`` strings off too."""
    flag = as_bool(value)
    return bool(value) if flag is None else flag


def as_number(value: Any) -> float | None:
    """A finite number from a YAML/JSON value (``"1e-4"`` included); None for ``auto`` and the rest."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def as_count(value: Any) -> int | None:
    """A whole number ≥ 0, or None."""
    number = as_number(value)
    if number is None or number < 0 or number != int(number):
        return None
    return int(number)


def is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == "auto"


def fmt(number: float) -> str:
    """``2e-05`` -> ``2e-5``; whole numbers without a fraction."""
    if number == int(number) and abs(number) < 1e6:
        return str(int(number))
    text = f"{number:.3g}"
    return text.replace("e-0", "e-").replace("e+0", "e+")
