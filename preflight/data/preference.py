"""Preference pairs (DPO, ORPO, SimPO, reward models): a prompt with a ``chosen`` and a ``rejected``
answer. The chosen answer is read as the sample's answer (its length, duplicates, leakage); the
rejected one is checked for the same defects: missing, null, of the wrong type, not from the
assistant, empty.

Shapes (sources: LLaMA-Factory ``data/README.md``, "Preference Dataset", ``ranking: true``; TRL's
dataset formats page, "Preference"):

- strings: alpaca ``instruction``/``input`` or TRL's ``prompt``, with ``chosen``/``rejected``;
- LLaMA-Factory ShareGPT: ``conversations`` ending with the user's turn, ``chosen`` and
  ``rejected`` one turn each (``{"from": "gpt", "value": ...}``);
- TRL conversational: ``prompt`` a list of turns, ``chosen``/``rejected`` lists of assistant turns;
- TRL implicit prompt: ``chosen`` and ``rejected`` each the whole conversation.
"""

from __future__ import annotations

from typing import Any

from preflight.data.fields import MISSING, Problem, content_text, string_field, type_name

CHOSEN, REJECTED = "chosen", "rejected"


def is_pair(record: dict) -> bool:
    return CHOSEN in record and REJECTED in record


def reply_turns(record: dict, key: str, problems: list[Problem]) -> list | None:
    """The turns under ``key`` (a list of turns, or one turn as an object), or None with the problem."""
    value = record.get(key, MISSING)
    if value.__class__ is list:
        return value
    if value.__class__ is dict:
        return [value]
    if value is MISSING:
        problems.append(("data.missing_key", f"no {key!r}"))
    elif value is None:
        problems.append(("data.null_value", f"{key!r} is null"))
    else:
        problems.append(("data.wrong_type", f"{key!r} is {type_name(value)}, expected a turn or a list of turns"))
    return None


def check_rejected_text(record: dict, key: str, problems: list[Problem]) -> str | None:
    """The rejected answer of a string pair: present, a string, not empty. Returns its text."""
    text = string_field(record, key, True, problems)
    if text is not None and not text.strip():
        problems.append(("data.empty_answer", f"{key!r} is empty"))
    return text


def check_rejected_turn(record: dict, key: str, role_key: str, content_key: str, roles: dict[str, str],
                        problems: list[Problem]) -> str | None:
    """The rejected answer of a chat pair: its last turn is the assistant's, with content.
    Returns that turn's text."""
    turns = reply_turns(record, key, problems)
    if turns is None:
        return None
    if not turns:
        problems.append(("data.empty_answer", f"{key!r} is an empty list"))
        return None
    turn: Any = turns[-1]
    if turn.__class__ is not dict:
        problems.append(("data.wrong_type", f"{key!r} turn is {type_name(turn)}, expected an object"))
        return None
    role = turn.get(role_key, MISSING)
    cls = roles.get(role) if role.__class__ is str else None
    if role is MISSING:
        problems.append(("data.missing_key", f"{key!r} turn has no {role_key!r}"))
        return None
    if cls not in ("A", "C"):
        known = ", ".join(r for r, c in roles.items() if c in ("A", "C"))
        problems.append(("data.unknown_role", f"{key!r} turn {role_key} {role!r} (expected {known})"))
        return None
    text = content_text(turn, content_key, cls, len(turns) - 1, problems)
    if text is not None and not text.strip() and not (turn.get("tool_calls") or turn.get("function_call")):
        problems.append(("data.empty_answer", f"{key!r} is empty"))
    return text
