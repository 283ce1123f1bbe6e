"""One record against its schema: keys, types, nulls, empty fields and the order of chat turns.

Returns the record's texts as a :class:`Sample` (what the later checks read) and its problems as
``(rule id, detail)`` pairs. A record too broken to read a sample from returns ``None``.
Written for speed: the common, clean record costs a handful of dict lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from preflight.data.formats import Schema

Problem = tuple[str, str]  # (rule id, detail)
_MISSING = object()
_ROLE_NAMES = {"U": "user", "A": "assistant", "C": "tool call", "T": "tool result", "S": "system"}


@dataclass(slots=True)
class Sample:
    """The texts of one record: ``prompt`` is everything before the final answer (system,
    earlier turns), ``answer`` the final assistant turn (the whole text for plain text data);
    ``user`` the user turns only (the key for train/eval leakage); ``turns`` user+assistant turns."""

    prompt: str
    answer: str
    user: str
    turns: int

    @property
    def full(self) -> str:
        return f"{self.prompt}\n{self.answer}" if self.prompt else self.answer


def _type(value: Any) -> str:
    return "null" if value is None else {dict: "object", list: "array", str: "string", bool: "boolean",
                                         int: "number", float: "number"}.get(type(value), type(value).__name__)


def _string(record: dict, key: str, required: bool, problems: list[Problem]) -> str | None:
    value = record.get(key, _MISSING)
    if value.__class__ is str:
        return value
    if value is _MISSING:
        if required:
            problems.append(("data.missing_key", f"no {key!r}"))
            return None
        return ""
    if value is None:
        if required:
            problems.append(("data.null_value", f"{key!r} is null"))
            return None
        return ""
    problems.append(("data.wrong_type", f"{key!r} is {_type(value)}, expected a string"))
    return None


def check_record(record: Any, schema: Schema, problems: list[Problem]) -> Sample | None:
    """Problems of ``record`` appended to ``problems``; its sample, or None when unreadable."""
    if record.__class__ is not dict:
        problems.append(("data.wrong_type", f"a record is {_type(record)}, expected an object"))
        return None
    fmt = schema.format
    if fmt == "alpaca":
        sample = _alpaca(record, schema, problems)
    elif fmt == "text":
        sample = _text(record, schema, problems)
    else:
        sample = _chat(record, schema, problems)
    if not schema.known_keys.issuperset(record):
        extra = record.keys() - schema.known_keys
        problems.append(("data.unexpected_key", ", ".join(sorted(repr(str(k)) for k in extra)[:5])))
    return sample


def _alpaca(record: dict, s: Schema, problems: list[Problem]) -> Sample | None:
    instruction, output = record.get(s.prompt), record.get(s.response)
    query, system = record.get(s.query, ""), record.get(s.system, "")
    if (instruction.__class__ is str and output.__class__ is str and query.__class__ is str
            and system.__class__ is str and not record.get(s.history)):  # the common record, fast
        user = f"{instruction}\n{query}" if query else instruction
        if not output or output.isspace():
            problems.append(("data.empty_answer", f"{s.response!r} is empty" if not output else
                             f"{s.response!r} is only whitespace"))
        if not user or user.isspace():
            problems.append(("data.empty_prompt", f"{s.prompt!r} and {s.query!r} are empty"))
        return Sample(f"{system}\n{user}" if system else user, output, user, 2)
    instruction = _string(record, s.prompt, True, problems)
    query = _string(record, s.query, False, problems)
    output = _string(record, s.response, True, problems)
    system = _string(record, s.system, False, problems)
    history = record.get(s.history)
    earlier = ""
    turns = 2
    if history:
        if history.__class__ is not list or not all(
            h.__class__ in (list, tuple) and len(h) == 2 and all(x.__class__ is str for x in h) for h in history
        ):
            problems.append(("data.wrong_type", f"{s.history!r} must be a list of [prompt, response] pairs"))
            return None
        earlier = "\n".join(f"{q}\n{a}" for q, a in history)
        turns += 2 * len(history)
    if instruction is None or output is None or query is None or system is None:
        return None
    user = f"{instruction}\n{query}" if query else instruction
    if not user.strip():
        problems.append(("data.empty_prompt", f"{s.prompt!r}" + (f" and {s.query!r} are" if query is not None else " is")
                         + " empty"))
    if not output.strip():
        problems.append(("data.empty_answer", f"{s.response!r} is empty" if not output else
                         f"{s.response!r} is only whitespace"))
    prompt = "\n".join(p for p in (system, earlier, user) if p)
    return Sample(prompt, output, user, turns)


def _text(record: dict, s: Schema, problems: list[Problem]) -> Sample | None:
    text = _string(record, s.text, True, problems)
    if text is None:
        return None
    if not text.strip():
        problems.append(("data.empty_answer", f"{s.text!r} is empty"))
    return Sample("", text, text, 1)


def _content(message: dict, s: Schema, cls: str, index: int, problems: list[Problem]) -> str | None:
    content = message.get(s.content, _MISSING)
    if content.__class__ is str:
        return content
    calls = cls in ("A", "C") and (message.get("tool_calls") or message.get("function_call"))
    if content is _MISSING or content is None:
        if calls:
            return ""  # an assistant turn that only calls a tool has no content (OpenAI format)
        if content is _MISSING:
            problems.append(("data.missing_key", f"turn {index} has no {s.content!r}"))
        else:
            problems.append(("data.null_value", f"turn {index} {s.content!r} is null"))
        return None
    if content.__class__ is list:
        text = _parts_text(content)
        if text is not None:
            return text
        problems.append(("data.wrong_type", f"turn {index} {s.content!r} has a part that is neither "
                                            "{'type': 'text', 'text': ...} nor a typed media part"))
        return None
    problems.append(("data.wrong_type", f"turn {index} {s.content!r} is {_type(content)}, expected a string"))
    return None


def _parts_text(parts: list) -> str | None:
    """The text of OpenAI / Hugging Face content parts (``[{"type": "text", "text": ...},
    {"type": "image_url", ...}]``): the text parts joined; media parts (any other ``type``:
    ``image``, ``image_url``, ``input_audio``, ``video``, ``file``) carry no text. None when a
    part is not an object with a string ``type``, or a text part's ``text`` is not a string."""
    texts = []
    for part in parts:
        kind = part.get("type") if part.__class__ is dict else None
        if kind.__class__ is not str:
            return None
        if kind == "text":
            text = part.get("text")
            if text.__class__ is not str:
                return None
            texts.append(text)
    return "\n".join(texts)


def _has_media(message: dict, content_key: str) -> bool:
    """A turn whose content parts include media (an image-only question is not empty)."""
    content = message.get(content_key)
    return content.__class__ is list and any(p.get("type") != "text" for p in content)


def _chat(record: dict, s: Schema, problems: list[Problem]) -> Sample | None:
    messages = record.get(s.messages, _MISSING)
    if messages.__class__ is not list:
        if messages is _MISSING:
            problems.append(("data.missing_key", f"no {s.messages!r}"))
        elif messages is None:
            problems.append(("data.null_value", f"{s.messages!r} is null"))
        else:
            problems.append(("data.wrong_type", f"{s.messages!r} is {_type(messages)}, expected a list of turns"))
        return None
    if s.completion is not None:  # TRL prompt-completion: the completion's turns follow the prompt's
        completion = record.get(s.completion, _MISSING)
        if completion is _MISSING:
            problems.append(("data.missing_key", f"no {s.completion!r}"))
            return None
        if completion.__class__ is not list:
            problems.append(("data.wrong_type", f"{s.completion!r} is {_type(completion)}, expected a list of turns"))
            return None
        messages = messages + completion
    if not messages:
        problems.append(("data.no_assistant_turn", f"{s.messages!r} is an empty list"))
        return None
    system = _string(record, s.system, False, problems)
    roles, role_key, keys = s.roles, s.role, s.message_keys
    texts: list[str] = [system] if system else []
    classes: list[str] = []
    user: list[str] = []
    ok = system is not None
    order_problem = ""
    prev = ""
    for i, m in enumerate(messages):
        if m.__class__ is not dict:
            problems.append(("data.wrong_type", f"turn {i} is {_type(m)}, expected an object"))
            ok = False
            continue
        role = m.get(role_key, _MISSING)
        if role is _MISSING:
            problems.append(("data.missing_key", f"turn {i} has no {role_key!r}"))
            ok = False
            continue
        cls = roles.get(role) if role.__class__ is str else None
        if cls is None:
            known = ", ".join(roles)
            problems.append(("data.unknown_role", f"turn {i} {role_key} {role!r} (known: {known})"))
            ok = False
            continue
        if len(m) > 2 and m.keys() - keys:
            extra = ", ".join(sorted(repr(str(k)) for k in m.keys() - keys)[:3])
            problems.append(("data.unexpected_key", f"turn {i}: {extra}"))
        text = _content(m, s, cls, i, problems)
        if text is None:
            ok = False
            continue
        if not order_problem:
            order_problem = _order(prev, cls, i)
        prev = cls
        classes.append(cls)
        texts.append(text)
        if cls == "U":
            user.append(text)
            if not text.strip() and not _has_media(m, s.content):
                problems.append(("data.empty_prompt", f"turn {i} ({role}) is empty"))
        elif (cls == "A" and not text.strip() and not (m.get("tool_calls") or m.get("function_call"))
              and not _has_media(m, s.content)):
            problems.append(("data.empty_answer", f"turn {i} ({role}) is empty"))
    if not ok:
        return None
    if order_problem:
        problems.append(("data.turn_order", order_problem))
    dialogue = [c for c in classes if c != "S"]
    if "A" not in dialogue and "C" not in dialogue:
        problems.append(("data.no_assistant_turn", f"{len(dialogue)} turn(s), none from the assistant"))
    elif dialogue and dialogue[-1] != "A":
        problems.append(("data.last_turn_not_assistant",
                         f"the last turn ({len(classes) - 1}) is {_ROLE_NAMES[dialogue[-1]]}"))
    last_answer = max((i for i, c in enumerate(classes) if c == "A"), default=-1)
    offset = len(texts) - len(classes)
    answer = texts[offset + last_answer] if last_answer >= 0 else ""
    prompt = "\n".join(texts[: offset + last_answer] if last_answer >= 0 else texts)
    return Sample(prompt, answer, "\n".join(user), sum(1 for c in dialogue if c in "UA"))


def _order(prev: str, cls: str, index: int) -> str:
    """Why turn ``index`` (of class ``cls``) cannot follow one of class ``prev``, or ``""``.

    Sources: LLaMA-Factory's converter (ShareGPT: human/observation at odd positions, gpt/function
    at even ones, else "Invalid role tag" and the example is emptied); OpenAI chat format (system
    first, assistant replies to user or tool)."""
    if cls == "S":
        return "" if prev == "" else f"a system turn at position {index}, after the conversation started"
    allowed = {"U": ("", "A"), "A": ("U", "T"), "C": ("U", "T"), "T": ("A", "C", "T")}[cls]
    if prev in allowed or (prev == "S" and cls == "U"):
        return ""
    if prev in ("", "S"):
        return f"the conversation starts with {_a(cls)} turn (turn {index})"
    if prev == cls or (prev in "AC" and cls in "AC"):
        return f"two {_ROLE_NAMES[cls]} turns in a row (turns {index - 1} and {index})"
    return f"{_a(cls)} turn right after {_a(prev)} turn (turn {index})"


def _a(cls: str) -> str:
    name = _ROLE_NAMES[cls]
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"
